"""Stage adapt: adapt the source model to the target with `adapt.method` (no target test labels).

`adapt.method: auto`: the adapt_member stages trained every member to the first rung of the
budget; here the label-free rule `adapt.portfolio.rule` (or labeled target images, when the
user gave some) halves them, the survivors train on (each through its member script), and the
rule (or the labels) keeps the last survivor or the source model.
"""

import logging
from functools import partial
from pathlib import Path

from adaptflow.adapt.diagnostics import adaptation_warnings
from adaptflow.adapt.label_finetune import chosen_by_labels
from adaptflow.adapt.members import SURVIVORS, train_on
from adaptflow.adapt.one_method import adapt, selection_record, summary_metrics
from adaptflow.adapt.portfolio import (
    auto_metrics,
    auto_selection_record,
    choose,
    log_scores,
    model_file,
)
from adaptflow.core import paths
from adaptflow.core.devices import resolve_device
from adaptflow.core.io import atomic_dir, write_json
from adaptflow.core.live import live_logger
from adaptflow.core.params import AUTO_METHOD, Params, load_params
from adaptflow.entry.stage import run_entry_point
from adaptflow.models.classifier import save_classifier
from adaptflow.training.checkpoints import discard_checkpoints, snapshot_file
from adaptflow.training.job import run_training

log = logging.getLogger("adapt")


def one_method(params: Params) -> None:
    method = params.adapt.method
    result = run_training(params, "adapt", __file__, partial(adapt, params))
    if result is None:  # torchrun workers ran it, or this is a rank other than 0: nothing to write
        return
    warnings = adaptation_warnings(result, params)
    with atomic_dir(paths.SELECTION) as directory:
        for epoch, model in result.snapshots.items():
            save_classifier(directory / snapshot_file(epoch), model, {"epoch": epoch})
        record = {**selection_record(result, method), "warnings": warnings}
        write_json(directory / paths.SELECTION_RECORD.name, record)
    info = {
        "stage": "adapt",
        "method": method,
        "selected_epoch": result.selected_epoch,
        "fell_back_to_source": result.fell_back_to_source,
    }
    save_classifier(paths.ADAPTED_MODEL, result.adapted_model, info)
    write_json(
        paths.metrics_file("adapt"), {**summary_metrics(result, method), "warnings": warnings}
    )
    discard_checkpoints("adapt")  # only now: a failure above resumes after the last epoch
    for warning in warnings:
        log.warning("%s", warning)


MEMBER_SCRIPT = str(Path(__file__).with_name("adapt_member.py"))  # survivors train on through it


def portfolio(params: Params) -> None:
    survivors = partial(train_on, params, script=MEMBER_SCRIPT)
    choice = choose(params, resolve_device(params.device), survivors)
    with live_logger("adapt") as live:
        log_scores(live, choice)
    with atomic_dir(paths.SELECTION) as directory:
        for name, model in choice.models.items():
            save_classifier(directory / model_file(name), model, {"model": name})
        write_json(directory / paths.SELECTION_RECORD.name, auto_selection_record(choice))
    info = {"stage": "adapt", "method": AUTO_METHOD, "chosen": choice.chosen}
    save_classifier(paths.ADAPTED_MODEL, choice.models[choice.chosen], info)
    write_json(paths.metrics_file("adapt"), auto_metrics(choice))
    log.info("%s picked %s among %s", choice.rule, choice.chosen, ", ".join(choice.models))
    if choice.labeled:
        labeled, best = choice.labeled, chosen_by_labels(choice.labeled)
        log.info(
            "with %d target labels: %s is best with probability %.2f (the rule picked %s); kept %s",
            labeled["labels"],
            best,
            labeled["p_best"][best],
            labeled["label_free_pick"],
            labeled["kept"],
        )
    discard_checkpoints(SURVIVORS)  # the survivors' later rungs, read above
    for warning in choice.warnings:
        log.warning("%s", warning)


def main() -> None:
    params = load_params()
    if params.adapt.method == AUTO_METHOD:
        portfolio(params)
    else:
        one_method(params)


if __name__ == "__main__":
    run_entry_point(main)
