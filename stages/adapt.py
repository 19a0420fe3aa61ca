"""Stage adapt: adapt the source model to the target with `adapt.method`, no target labels.

`adapt.method: auto` trains nothing here: it picks among the portfolio members the
adapt_member stages adapted, with the label-free rule `adapt.portfolio.rule`.
"""

import logging
from functools import partial

from adaptflow import paths
from adaptflow.adaptation import adapt, candidate_file, selection_record, summary_metrics
from adaptflow.checkpoints import discard_checkpoints
from adaptflow.cli import run_entry_point
from adaptflow.devices import resolve_device
from adaptflow.diagnostics import adaptation_warnings
from adaptflow.io import atomic_dir, write_json
from adaptflow.live import live_logger
from adaptflow.models import save_classifier
from adaptflow.params import AUTO_METHOD, Params, load_params
from adaptflow.portfolio import auto_metrics, choose, log_scores
from adaptflow.portfolio import candidate_file as portfolio_file
from adaptflow.portfolio import selection_record as portfolio_record
from adaptflow.training_run import run_training

log = logging.getLogger("adapt")


def one_method(params: Params) -> None:
    method = params.adapt.method
    result = run_training(params, "adapt", __file__, partial(adapt, params))
    if result is None:  # torchrun workers ran it, or this is a rank other than 0: nothing to write
        return
    warnings = adaptation_warnings(result, params)
    with atomic_dir(paths.CANDIDATES) as directory:
        for epoch, model in result.candidates.items():
            save_classifier(directory / candidate_file(epoch), model, {"epoch": epoch})
        write_json(
            directory / "selection.json",
            {**selection_record(result, method), "warnings": warnings},
        )
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


def portfolio(params: Params) -> None:
    choice = choose(params, resolve_device(params.device))
    with live_logger("adapt") as live:
        log_scores(live, choice)
    with atomic_dir(paths.CANDIDATES) as directory:
        for name, model in choice.models.items():
            save_classifier(directory / portfolio_file(name), model, {"candidate": name})
        write_json(directory / "selection.json", portfolio_record(choice))
    info = {"stage": "adapt", "method": AUTO_METHOD, "chosen": choice.chosen}
    save_classifier(paths.ADAPTED_MODEL, choice.models[choice.chosen], info)
    write_json(paths.metrics_file("adapt"), auto_metrics(choice))
    log.info("%s picked %s among %s", choice.rule, choice.chosen, ", ".join(choice.models))
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
