"""Markdown for the benchmarks' results files: what they print and what README.md shows.

Each function takes a results file's content (the JSON a benchmark wrote) and returns
Markdown; nothing here measures or reads files, so the README and a benchmark's own output
are the same text from the same figures. Imports no torch: rendering runs anywhere.
"""

from __future__ import annotations

import statistics
import textwrap

ESTIMATOR_NAMES = {
    "logme": "LogME",
    "leep": "LEEP",
    "nce": "NCE",
    "hscore": "H-score",
    "domain_gap": "domain gap",
}


def table(header: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    """A Markdown table; the columns in `right` are right-aligned (figures)."""
    align = ["---:" if i in right else "---" for i in range(len(header))]
    lines = [header, align, *rows]
    return "\n".join(f"| {' | '.join(cells)} |" for cells in lines)


def paragraph(*sentences: str) -> str:
    """Sentences as one paragraph wrapped at 100 characters, as README.md's prose is."""
    text = " ".join(s for s in sentences if s)
    return textwrap.fill(text, 100, break_long_words=False, break_on_hyphens=False)


def mean_std(values: list[float]) -> str:
    """Percent mean ± std of fractions."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * spread:.1f}"


def provenance(run: dict) -> str:
    """One sentence: the command, the machine and its load, the date, the commit, the time."""
    commit = f"`{run['commit'][:10]}`" if run.get("commit") else "unknown"
    if run.get("uncommitted_changes"):
        changed = run.get("changed_files")  # recorded since the first results were measured
        commit += f" with uncommitted changes{' to ' + ', '.join(changed) if changed else ''}"
    load = run.get("load_average_start")
    busy = f", load average {load[0]:.1f} at the start" if load else ""
    return (
        f"Measured by `{run['command']}` on {run['machine']} ({run['cpu_count']} cores{busy}), "
        f"{run['date'][:10]}, commit {commit}, in {_duration(run['seconds'])}."
    )


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


# ---- bench/methods.py: results/methods.json ----


def methods_table(results: dict) -> str:
    """Every method's mean ± std over seeds: target accuracy, macro-F1, gain, time."""
    settings = results["settings"]
    rows = []
    for method in settings["methods"]:
        runs = [r for r in results["rows"] if r["method"] == method]
        gains = [r["target_accuracy"] - r["source_only"] for r in runs]
        rows.append(
            [
                method,
                mean_std([r["target_accuracy"] for r in runs]),
                mean_std([r["target_macro_f1"] for r in runs]),
                f"{100 * statistics.mean(gains):+.1f}",
                f"{statistics.mean(r['seconds'] for r in runs):.0f}",
            ]
        )
    heading = (
        f"{results['benchmark']}, {len(settings['seeds'])} seed(s) "
        f"({' '.join(map(str, settings['seeds']))}), checkpoints selected by "
        f"{settings['validator']}" + _overrides(settings)
    )
    header = [
        "method",
        "target accuracy (%)",
        "macro-F1 (%)",
        "gain vs source-only (points)",
        "time (s)",
    ]
    return heading + "\n\n" + table(header, rows, right={1, 2, 3, 4})


def _overrides(settings: dict) -> str:
    overrides = settings.get("overrides") or []
    return f"; params overrides `{' '.join(overrides)}`" if overrides else ""


def methods_region(results: dict) -> str:
    fell_back = sorted({r["method"] for r in results["rows"] if r["fell_back"]})
    note = (
        f"The label-free guard kept the source model in some run of: {', '.join(fell_back)}."
        if fell_back
        else ""
    )
    return (
        f"{paragraph(provenance(results['run']))}\n\n{methods_table(results)}\n\n{paragraph(note)}"
    )


# ---- python -m adaptflow.bench rank: results/rank.json ----


def rank_table(results: dict) -> str:
    """Each candidate's scores and the target accuracy it reached, best adapted first."""
    estimators = list(ESTIMATOR_NAMES)
    rows = [
        [
            row["candidate"],
            *(f"{row[e]:.3f}" for e in estimators),
            f"{100 * row['source_only']:.1f}",
            f"{100 * row['adapted']:.1f}",
        ]
        for row in sorted(results["rows"], key=lambda r: -r["adapted"])
    ]
    header = [
        "candidate",
        *ESTIMATOR_NAMES.values(),
        "source-only (%)",
        "adapted (%)",
    ]
    heading = (
        f"{results['benchmark']}: candidates, their scores, and the target accuracy after "
        f"{results['settings']['method']}" + _overrides(results["settings"])
    )
    return heading + "\n\n" + table(header, rows, right=set(range(1, len(header))))


def tau_table(results: dict) -> str:
    """Kendall's tau (p) of each estimator's order with the target accuracy, and its pick."""
    by_estimator: dict[str, dict] = {}
    for entry in results["taus"]:
        by_estimator.setdefault(entry["estimator"], {})[entry["outcome"]] = entry
    rows = []
    for estimator, entries in by_estimator.items():
        adapted, source_only = entries["adapted"], entries["source_only"]
        order = "higher first" if adapted["higher_is_better"] else "smaller first"
        rows.append(
            [
                f"{ESTIMATOR_NAMES[estimator]} ({order})",
                adapted["first"],
                _tau(adapted),
                _tau(source_only),
            ]
        )
    header = ["estimator", "ranks first", "tau with adapted accuracy", "tau with source-only"]
    return table(header, rows, right={2, 3})


def _tau(entry: dict) -> str:
    """`+0.55 (p = 0.13)`, or n/a where every value is tied."""
    if entry["tau"] is None:
        return "n/a"
    return f"{entry['tau']:+.2f} (p = {entry['p']:.2f})"


def rank_region(results: dict) -> str:
    rows = results["rows"]
    best = max(rows, key=lambda r: r["adapted"])["candidate"]
    gaps = [r["domain_gap"] for r in rows]
    summary = paragraph(
        f"Kendall's tau of each estimator's order with the target accuracy the candidates "
        f"reached (1: the same order, -1: reversed), over {len(rows)} candidates; the best "
        f"adapted candidate is {best}. The domain gap ranges from {min(gaps):.3f} to "
        f"{max(gaps):.3f}."
    )
    return (
        f"{paragraph(provenance(results['run']))}\n\n{rank_table(results)}\n\n"
        f"{summary}\n\n{tau_table(results)}"
    )


# ---- bench/demo_run.py: results/stage_timings.json ----


def demo_headline(results: dict) -> str:
    """The default configuration's figures, from the metrics of the timed demo run."""
    evaluation = results["metrics"]["evaluate"]
    return paragraph(
        f"**Default configuration (`make demo`, `adapt.method: {evaluation['method']}`, "
        f"selected by `{evaluation['selection']['validator']}`): target test accuracy "
        f"{evaluation['target_accuracy']:.3f}** (macro-F1 {evaluation['target_macro_f1']:.3f}, "
        f"ECE {evaluation['target_ece']:.3f}), against "
        f"{evaluation['source_only_target_accuracy']:.3f} for the source-only model, with no "
        f"target label used for training or selection. On the *source* test split the adapted "
        f"model scores {evaluation['source_test_accuracy']:.3f} and the source-only model "
        f"{evaluation['source_only_source_test_accuracy']:.3f}; the report shows both. "
        f"From the run timed below (`results/stage_timings.json`, {results['run']['date'][:10]})."
    )


def stage_timings_region(results: dict) -> str:
    """Wall time per stage of a fresh run, the no-op rerun, and the export's parity check."""
    rows = [[s["stage"], f"{s['seconds']:.1f}"] for s in results["stages"]]
    rows.append(["**all stages**", f"**{results['total_seconds']:.1f}**"])
    rows.append(["`dvc repro` again, nothing to do", f"{results['noop_seconds']:.1f}"])
    parity = results["metrics"]["export"]  # export.json: parity figures and latency per batch
    latency = "; ".join(
        f"{batch.replace('_', ' ')}: onnxruntime {figures['onnxruntime_ms']:.2f} ms, PyTorch "
        f"eager {figures['torch_eager_ms']:.2f} ms"
        for batch, figures in parity["latency"].items()
    )
    overrides = results["overrides"]
    settings = f"params overrides `{' '.join(overrides)}`" if overrides else "default params.yaml"
    head = paragraph(
        provenance(results["run"]),
        f"Each stage ran as `{results['stage_command']}` in a fresh copy of the repository, "
        f"{settings}.",
    )
    export_line = paragraph(
        f"ONNX export of that run: max |Δlogit| {parity['max_abs_logit_diff']:.1e} against "
        f"PyTorch over {parity['images']} target test images, top-1 agreement "
        f"{parity['top1_agreement']:.3f}; median latency {latency}."
    )
    return f"{head}\n\n{table(['stage', 'wall time (s)'], rows, right={1})}\n\n{export_line}"


# ---- python -m adaptflow.bench throughput: results/throughput/*.json ----


def throughput_region(runs: list[dict]) -> str:
    """One row per results file: both loops' img/s and their ratio, where and when."""
    rows = [
        [
            run["device"],
            run["backbone"],
            run["method"] + (" (both domains counted)" if run["method"] != "source_only" else ""),
            f"{run['batch_per_domain']}, {run['size']} px{', compiled' if run['compile'] else ''}",
            f"{run['engine_images_per_second']:,.0f}",
            f"{run['plain_images_per_second']:,.0f}",
            f"{run['ratio']:.2f}",
            f"{run['run']['date'][:10]}, `{(run['run']['commit'] or 'unknown')[:10]}`",
        ]
        for run in runs
    ]
    header = [
        "device",
        "backbone",
        "method",
        "batch/domain, size",
        "adaptflow loop (img/s)",
        "plain PyTorch (img/s)",
        "ratio",
        "measured",
    ]
    loads = ", ".join(f"{(r['run']['load_average_start'] or [0])[0]:.1f}" for r in runs)
    return f"{table(header, rows, right={4, 5, 6})}\n\n" + paragraph(
        f"Best of {', '.join(str(r['repeats']) for r in runs)} interleaved repeats of "
        f"{', '.join(str(r['steps']) for r in runs)} steps; load average at the start: {loads}. "
        "One file per row in `results/throughput/` (command, machine, commit)."
    )


# ---- python -m adaptflow.bench predict: results/predict.json ----


def predict_region(results: dict) -> str:
    settings = results["settings"]
    rows = [
        [
            str(b["batch"]),
            f"{b['predict_images_per_second']:,.0f}",
            f"{b['onnxruntime_images_per_second']:,.0f}",
        ]
        for b in results["batches"]
    ]
    header = ["batch", "`adaptflow predict` (img/s)", "onnxruntime alone (img/s)"]
    head = paragraph(
        provenance(results["run"]),
        f"{settings['files']} files of `{settings['images']}`, model `{settings['model']}`, "
        f"best of {settings['repeats']}.",
    )
    return f"{head}\n\n{table(header, rows, right={1, 2})}"


# ---- bench/ddp_agreement.py: results/ddp_agreement.json ----


def ddp_table(results: dict) -> str:
    """Per method: how far two gloo processes end from one (weights, losses, scores)."""
    tolerance = results["settings"]["tolerance"]
    rows = []
    for case in results["cases"]:
        if "error" in case:
            cells = [f"failed: {case['error']}", "", "", ""]
        else:
            worst = max(case["max_weight_diff"], case["max_loss_diff"], case["max_score_diff"])
            cells = [
                f"{case['max_weight_diff']:.1e}",
                f"{case['max_loss_diff']:.1e}",
                f"{case['max_score_diff']:.1e}",
                "yes" if worst <= tolerance else "no",
            ]
        setting = f"{case['loader']}, accumulate {case['grad_accum_steps']}"
        rows.append([case["method"], setting, *cells])
    header = [
        "method",
        "loader, grad. accumulation",
        "weights: max abs. diff.",
        "epoch losses: max abs. diff.",
        "validator scores: max abs. diff.",
        f"all within {tolerance:.0e}",
    ]
    return table(header, rows, right={2, 3, 4})


def ddp_region(results: dict) -> str:
    head = paragraph(provenance(results["run"]), results["settings"]["summary"])
    return f"{head}\n\n{ddp_table(results)}"
