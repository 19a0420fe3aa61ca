"""Stage validate: scan both domains into a manifest, run the great-expectations suite, and
check the user's target labels (labels/target.csv) against the manifest.

On failure: the report and metrics say what failed, no output is written, and the stage exits
non-zero so DVC runs nothing downstream.
"""

from pathlib import Path

from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import write_csv, write_json, write_text
from adaptflow.core.params import load_params
from adaptflow.data.checks import conversions, render_checks_report, validate_manifest
from adaptflow.data.labels import train_files, validated_labels
from adaptflow.data.manifest import scan_domains, write_manifest
from adaptflow.entry.stage import run_entry_point

REPORT = paths.REPORTS / "validate.md"


def main() -> None:
    params = load_params()
    data = params.data
    target = Path(data.target)
    scan = scan_domains(Path(data.source), target, params.validate.max_pixels)
    manifest = scan.manifest()
    outcome = validate_manifest(manifest, scan.class_folders, params.validate)
    converted = conversions(manifest, data.image_size, data.channels)
    write_text(REPORT, render_checks_report(outcome, converted))
    failed = {c.name: c.failure_count for c in outcome.failed()}
    summary = {"success": outcome.success, **outcome.summary, "failed_checks": failed}
    write_json(paths.metrics_file("validate"), summary)
    labels = validated_labels(manifest, target)  # a bad row: one line naming it
    if not outcome.success:
        raise AdaptflowError(outcome.error_line(str(REPORT)))
    write_manifest(manifest, paths.MANIFEST)
    write_csv(paths.TARGET_LABELS, labels)
    write_csv(paths.TARGET_TRAIN_FILES, train_files(manifest, target))


if __name__ == "__main__":
    run_entry_point(main)
