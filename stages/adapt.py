"""Stage adapt: adapt the source model to the target with `adapt.method`, no target labels."""

import logging
from functools import partial

from adaptflow import paths
from adaptflow.adaptation import adapt, candidate_file, selection_record, summary_metrics
from adaptflow.checkpoints import discard_checkpoints
from adaptflow.cli import run_entry_point
from adaptflow.io import atomic_dir, write_json
from adaptflow.models import save_classifier
from adaptflow.params import load_params
from adaptflow.run_report import negative_transfer_sentence
from adaptflow.training_run import run_training


def main() -> None:
    params = load_params()
    method = params.adapt.method
    result = run_training(params, "adapt", __file__, partial(adapt, params))
    if result is None:  # torchrun workers ran it, or this is a rank other than 0: nothing to write
        return
    with atomic_dir(paths.CANDIDATES) as directory:
        for epoch, model in result.candidates.items():
            save_classifier(directory / candidate_file(epoch), model, {"epoch": epoch})
        write_json(directory / "selection.json", selection_record(result, method))
    info = {
        "stage": "adapt",
        "method": method,
        "selected_epoch": result.selected_epoch,
        "fell_back_to_source": result.fell_back_to_source,
    }
    save_classifier(paths.ADAPTED_MODEL, result.adapted_model, info)
    summary = summary_metrics(result, method)
    write_json(paths.metrics_file("adapt"), summary)
    discard_checkpoints("adapt")  # only now: a failure above resumes after the last epoch
    if warning := negative_transfer_sentence(summary):
        logging.getLogger("adapt").warning(warning)


if __name__ == "__main__":
    run_entry_point(main)
