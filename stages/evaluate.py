"""Stage evaluate: the only stage that reads target test labels; source-only vs adapted."""

from adaptflow.core import paths
from adaptflow.core.devices import resolve_device
from adaptflow.core.io import read_json, write_json, write_text
from adaptflow.core.live import live_logger
from adaptflow.core.params import load_params
from adaptflow.data.pools import load_pool
from adaptflow.entry.stage import run_entry_point
from adaptflow.evaluation.metrics import chooser, evaluate_run
from adaptflow.evaluation.plots import log_plots
from adaptflow.evaluation.report import render_evaluation_report
from adaptflow.models.classifier import load_classifier


def main() -> None:
    params = load_params()
    source_model, _ = load_classifier(paths.SOURCE_MODEL)
    adapted_model, _ = load_classifier(paths.ADAPTED_MODEL)
    selection = read_json(paths.SELECTION_RECORD)
    files = {choice["file"] for choice in selection[f"by_{chooser(selection)}"].values()}
    files |= set(selection.get("models", {}).values())  # auto: every model the rules scored
    chosen_among = {file: load_classifier(paths.SELECTION / file)[0] for file in sorted(files)}
    metrics, adapted, source_only = evaluate_run(
        source_model,
        adapted_model,
        chosen_among,
        selection,
        target_test=load_pool(paths.TARGET_TEST, "target test", labeled=True),
        source_test=load_pool(paths.SOURCE_TEST, "source test", labeled=True),
        device=resolve_device(params.device),
        batch_size=params.evaluate.batch_size,
        ece_bins=params.evaluate.ece_bins,
    )
    with live_logger("evaluate") as live:
        log_plots(live, source_model.spec.classes, adapted, source_only)
    write_json(paths.metrics_file("evaluate"), metrics)
    write_text(paths.REPORTS / "evaluate.md", render_evaluation_report(metrics))


if __name__ == "__main__":
    run_entry_point(main)
