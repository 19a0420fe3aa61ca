"""Stage evaluate: the only stage that reads target test labels; source-only vs adapted."""

from adaptflow import paths
from adaptflow.cli import run_entry_point
from adaptflow.data.pools import load_pool
from adaptflow.devices import resolve_device
from adaptflow.evaluate import evaluate_run, log_plots, render_report
from adaptflow.io import read_json, write_json, write_text
from adaptflow.live import live_logger
from adaptflow.models import load_classifier
from adaptflow.params import load_params


def main() -> None:
    params = load_params()
    source_model, _ = load_classifier(paths.SOURCE_MODEL)
    adapted_model, _ = load_classifier(paths.ADAPTED_MODEL)
    selection = read_json(paths.CANDIDATES / "selection.json")
    files = {choice["file"] for choice in selection["by_validator"].values()}
    files |= set(selection.get("candidates", {}).values())  # auto: every portfolio candidate
    candidates = {name: load_classifier(paths.CANDIDATES / name)[0] for name in sorted(files)}
    metrics, adapted, source_only = evaluate_run(
        source_model,
        adapted_model,
        candidates,
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
    write_text(paths.REPORTS / "evaluate.md", render_report(metrics))


if __name__ == "__main__":
    run_entry_point(main)
