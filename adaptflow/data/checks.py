"""The great-expectations suite over the image manifest, and its human-readable report.

Checks run in an ephemeral GX context (code-first, nothing written by GX itself) over two
batches: the manifest (one row per file) and the per-class image counts. Each failed check
keeps the files (or classes) that broke it, so the report and the one-line error can name them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from adaptflow.core.params import ValidateParams
from adaptflow.data.images import colour_name, pil_mode
from adaptflow.data.manifest import source_classes

SHOWN_VALUES = 3  # sizes and modes named per domain in the conversion table, most common first
SHOWN_PER_CHECK = 5  # offending items named in the one-line error; the report lists up to 50
LISTED_IN_REPORT = 50
# a classifier needs two classes: to learn from (source train) and to be scored on (target test)
NEEDS_TWO_CLASSES = (("source", "train"), ("target", "test"))


@dataclass
class CheckResult:
    name: str  # what the user reads: "every image decodes"
    expectation: str  # the GX expectation type
    success: bool
    checked: int
    failures: list[str] = field(default_factory=list)  # "path: reason" or "domain/split/class: n"
    failure_count: int = 0


@dataclass
class ValidationOutcome:
    checks: list[CheckResult]
    summary: dict[str, Any]

    @property
    def success(self) -> bool:
        return all(check.success for check in self.checks)

    def failed(self) -> list[CheckResult]:
        return [check for check in self.checks if not check.success]

    def error_line(self, report_path: str) -> str:
        """One line naming each failed check and its first offending files."""
        parts = []
        for check in self.failed():
            shown = "; ".join(check.failures[:SHOWN_PER_CHECK])
            more = check.failure_count - min(SHOWN_PER_CHECK, len(check.failures))
            parts.append(
                f"'{check.name}' failed for {shown}" + (f" (+{more} more)" if more else "")
            )
        return (
            f"validation failed: {' | '.join(parts)}. Fix or remove these files "
            f"(or adjust the validate.* params); full report: {report_path}"
        )


def class_counts(manifest: pd.DataFrame, class_folders: list[tuple[str, str, str]]) -> pd.DataFrame:
    """Readable images per (domain, split, class), including empty class folders (count 0)."""
    readable = manifest[manifest["readable"] & (manifest["label"] != "")]
    counts = readable.groupby(["domain", "split", "label"]).size().rename("images")
    folders = pd.MultiIndex.from_tuples(class_folders, names=["domain", "split", "label"])
    everything = counts.index.union(folders) if len(folders) else counts.index
    table = counts.reindex(everything, fill_value=0).reset_index()
    table["key"] = table["domain"] + "/" + table["split"] + "/" + table["label"]
    return table.sort_values("key").reset_index(drop=True)


def split_classes(counts: pd.DataFrame) -> pd.DataFrame:
    """For each split that must tell classes apart: how many classes have images, and which."""
    rows = []
    for domain, split in NEEDS_TWO_CLASSES:
        held = counts[(counts["domain"] == domain) & (counts["split"] == split)]
        names = held.loc[held["images"] > 0, "label"].tolist()
        rows.append({"key": f"{domain}/{split}", "classes": len(names), "names": ", ".join(names)})
    return pd.DataFrame(rows, columns=["key", "classes", "names"])


def _expectations(manifest: pd.DataFrame, params: ValidateParams) -> tuple[list, list, list]:
    """(name, expectation) pairs for the image rows, the class-count rows and the split rows."""
    import great_expectations.expectations as gxe

    classes = source_classes(manifest)
    train_hashes = sorted(set(manifest.loc[manifest["split"] == "train", "sha256"]) - {""})
    pandas_rows = {"condition_parser": "pandas"}
    image_checks = [
        (
            "every image decodes",
            gxe.ExpectColumnValuesToBeInSet(column="readable", value_set=[True]),
        ),
        (
            "every class is a class of the source train split",
            gxe.ExpectColumnValuesToBeInSet(
                column="label",
                value_set=classes,
                row_condition=(
                    'readable and label != "" and not (domain == "source" and split == "train")'
                ),
                **pandas_rows,
            ),
        ),
        (
            "no image is in both a train and a test split (leakage)",
            gxe.ExpectColumnValuesToNotBeInSet(
                column="sha256",
                value_set=train_hashes,
                row_condition='readable and split == "test"',
                **pandas_rows,
            ),
        ),
        *[
            (
                f"image {side} within validate.min_side..max_side",
                gxe.ExpectColumnValuesToBeBetween(
                    column=side,
                    min_value=params.min_side,
                    max_value=params.max_side,
                    row_condition="readable",
                    **pandas_rows,
                ),
            )
            for side in ("width", "height")
        ],
    ]
    count_checks = [
        (
            "each class has at least validate.min_per_class images",
            gxe.ExpectColumnValuesToBeBetween(
                column="images",
                min_value=params.min_per_class,
                # target train labels are never used for training, so they need no minimum
                row_condition='not (domain == "target" and split == "train")',
                **pandas_rows,
            ),
        ),
    ]
    split_checks = [
        (
            "the source train and target test splits each hold at least two classes",
            gxe.ExpectColumnValuesToBeBetween(column="classes", min_value=2),
        ),
    ]
    return image_checks, count_checks, split_checks


def _run_suite(name: str, frame: pd.DataFrame, checks: list, id_column: str) -> list[Any]:
    """Run one GX suite over a DataFrame; return the per-expectation results in order."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = context.data_sources.add_pandas(name).add_dataframe_asset(name)
    suite = context.suites.add(gx.ExpectationSuite(name=name))
    for _, expectation in checks:
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(
            name=name, data=batch.add_batch_definition_whole_dataframe(name), suite=suite
        )
    )
    result = definition.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [id_column]},
    )
    return list(result.results)


def _check_result(name: str, result: Any, describe: dict[str, str], id_column: str) -> CheckResult:
    if result.exception_info and result.exception_info.get("raised_exception"):
        message = result.exception_info.get("exception_message")
        return CheckResult(name, result.expectation_config.type, False, 0, [f"error: {message}"], 1)
    details = result.result
    rows = details.get("unexpected_index_list") or []
    failures = [describe.get(row[id_column], row[id_column]) for row in rows[:LISTED_IN_REPORT]]
    return CheckResult(
        name=name,
        expectation=result.expectation_config.type,
        success=bool(result.success),
        checked=int(details.get("element_count") or 0),
        failures=failures,
        failure_count=int(details.get("unexpected_count") or 0),
    )


def _keyed(keys: pd.Series, texts: pd.Series) -> dict[str, str]:
    return dict(zip(keys, texts, strict=True))


def _descriptions(manifest: pd.DataFrame, images: pd.DataFrame) -> list[dict[str, str]]:
    """For each image check, how to name a failing file (with the reason, class or size)."""
    path = manifest["path"]
    train = manifest[(manifest["split"] == "train") & (manifest["sha256"] != "")]
    train_file = train.drop_duplicates("sha256").set_index("sha256")["path"]
    twin = manifest["sha256"].map(train_file).fillna("")
    size = images["width"].astype(str) + "x" + images["height"].astype(str)
    sized = _keyed(path, path + " (" + size + ")")
    return [
        _keyed(path, path + ": " + manifest["error"]),
        _keyed(path, path + " (class '" + manifest["label"] + "')"),
        _keyed(path, path + " (same bytes as " + twin + ")"),
        sized,
        sized,
    ]


def validate_manifest(
    manifest: pd.DataFrame, class_folders: list[tuple[str, str, str]], params: ValidateParams
) -> ValidationOutcome:
    """Run every check; the outcome lists each check with the items that failed it."""
    counts = class_counts(manifest, class_folders)
    splits = split_classes(counts)
    image_checks, count_checks, split_checks = _expectations(manifest, params)
    # the GX pandas engine wants plain columns; empty sizes become 0 and only matter if readable
    images = manifest.fillna({"width": 0, "height": 0, "bytes": 0}).astype(
        {"width": int, "height": int, "bytes": int}
    )
    counted = _keyed(counts["key"], counts["key"] + ": " + counts["images"].astype(str) + " images")
    held = {
        row.key: f"{row.key}: {row.classes} class(es) with images ({row.names or 'none'}); "
        "a classifier needs at least two"
        for row in splits.itertuples()
    }
    suites = [
        ("images", images, image_checks, "path", _descriptions(manifest, images)),
        ("classes", counts, count_checks, "key", [counted] * len(count_checks)),
        ("splits", splits, split_checks, "key", [held] * len(split_checks)),
    ]
    checks = [
        _check_result(name, result, describe, id_column)
        for suite, frame, named, id_column, descriptions in suites
        for (name, _), result, describe in zip(
            named, _run_suite(suite, frame, named, id_column), descriptions, strict=True
        )
    ]
    summary = {
        "images": int(len(manifest)),
        "unreadable": int((~manifest["readable"]).sum()),
        "classes": sorted(set(manifest.loc[manifest["domain"] == "source", "label"]) - {""}),
        "per_split": {
            f"{d}/{s}": int(n) for (d, s), n in manifest.groupby(["domain", "split"]).size().items()
        },
    }
    return ValidationOutcome(checks=checks, summary=summary)


def _most_common(values: pd.Series) -> str:
    counts = values.value_counts(sort=True)
    shown = ", ".join(f"{value} ({n})" for value, n in counts.head(SHOWN_VALUES).items())
    return shown + (f", +{len(counts) - SHOWN_VALUES} more" if len(counts) > SHOWN_VALUES else "")


def conversions(manifest: pd.DataFrame, image_size: int, channels: int) -> list[dict[str, str]]:
    """Per domain: the sizes and modes of its readable images, and what `prepare` makes of
    them (every image is decoded once to data.image_size and data.channels)."""
    size, mode = f"{image_size}x{image_size}", pil_mode(channels)
    becomes = f"{size} {colour_name(channels)}"
    rows = []
    for domain, images in manifest[manifest["readable"]].groupby("domain", sort=True):
        sizes = images["width"].astype(str) + "x" + images["height"].astype(str)
        steps = []
        if (sizes != size).any():
            steps.append(f"resized to {size} (centre crop to a square, bilinear)")
        if (images["mode"] != mode).any():
            steps.append(f"converted to {colour_name(channels)} (transparency onto black)")
        rows.append(
            {
                "domain": domain,
                "sizes": _most_common(sizes),
                "modes": _most_common(images["mode"]),
                "becomes": becomes,
                "how": "; ".join(steps) or "as found",
            }
        )
    return rows


def _conversion_lines(rows: list[dict[str, str]]) -> list[str]:
    lines = [
        "",
        "## What the pipeline converts",
        "",
        "Sizes and PIL modes found (images of each), and what `prepare` decodes them to.",
        "",
        "| domain | sizes found | modes found | becomes | how |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['domain']} | {r['sizes']} | {r['modes']} | {r['becomes']} | {r['how']} |"
        for r in rows
    ]
    return lines


def render_checks_report(
    outcome: ValidationOutcome, converted: list[dict[str, str]] | None = None
) -> str:
    """The Markdown report: a table of checks, what decoding converts (per domain, when
    given: see `conversions`), then every failure listed under its check."""
    status = "PASSED" if outcome.success else "FAILED"
    lines = [
        f"# Data validation: {status}",
        "",
        f"{outcome.summary['images']} image files; classes: "
        f"{', '.join(outcome.summary['classes']) or '(none)'}.",
        "",
        "| split | images |",
        "|---|---:|",
        *[f"| {split} | {n} |" for split, n in outcome.summary["per_split"].items()],
        "",
        "| check | expectation | result | checked | failing |",
        "|---|---|---|---:|---:|",
    ]
    for check in outcome.checks:
        mark = "pass" if check.success else "**FAIL**"
        lines.append(
            f"| {check.name} | `{check.expectation}` | {mark} | {check.checked} | "
            f"{check.failure_count} |"
        )
    if converted:
        lines += _conversion_lines(converted)
    for check in outcome.failed():
        lines += ["", f"## FAIL: {check.name}", ""]
        lines += [f"- `{item}`" for item in check.failures]
        if check.failure_count > len(check.failures):
            lines.append(f"- ... and {check.failure_count - len(check.failures)} more")
    return "\n".join(lines) + "\n"
