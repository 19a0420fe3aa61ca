"""Markdown for the benchmarks' results files: what they print and what the docs show.

Each function takes a results file's content (the JSON a benchmark wrote) and returns
Markdown; nothing here measures or reads files, so the docs and a benchmark's own output
are the same text from the same figures. Imports no torch: rendering runs anywhere.
"""

from __future__ import annotations

import statistics
import textwrap

from adaptflow.core.params import SOURCE_ONLY

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
    """Sentences as one paragraph wrapped at 100 characters, as the docs' prose is."""
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
    start, end = run.get("load_average_start"), run.get("load_average_end")
    busy = f", load average {start[0]:.1f} at the start" if start else ""
    busy += f", {end[0]:.1f} at the end" if start and end else ""  # other work on the machine
    return (
        f"Measured by `{run['command']}` on {run['machine']} ({run['cpu_count']} cores{busy}), "
        f"{run['date'][:10]}, commit {commit}, in {_duration(run['seconds'])}."
    )


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


# ---- python -m adaptflow.bench methods: results/methods.json ----


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
    heading = paragraph(
        f"{results['benchmark']}: candidates, their scores, and the target accuracy after "
        f"adaptation with `{results['settings']['method']}`" + _overrides(results["settings"])
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
    best = max(rows, key=lambda r: r["adapted"])
    gaps = [r["domain_gap"] for r in rows]
    summary = paragraph(
        f"Kendall's tau of each estimator's order with the target accuracy the candidates "
        f"reached (1: the same order, -1: reversed), over {len(rows)} candidates; the best "
        f"adapted candidate is {best['candidate']} ({100 * best['adapted']:.1f}%).",
        _firsts(results["taus"]),
        _significance(results["taus"]),
        f"The domain gap ranges from {min(gaps):.3f} to {max(gaps):.3f}.",
    )
    return (
        f"{paragraph(provenance(results['run']))}\n\n{rank_table(results)}\n\n"
        f"{summary}\n\n{tau_table(results)}"
    )


def _firsts(taus: list[dict]) -> str:
    """Which candidate each estimator puts first, grouped: `LogME and LEEP put x first; ...`."""
    by_first: dict[str, list[str]] = {}
    for entry in taus:
        if entry["outcome"] == "adapted":
            by_first.setdefault(entry["first"], []).append(ESTIMATOR_NAMES[entry["estimator"]])
    if len(by_first) == 1:
        return f"Every estimator puts {next(iter(by_first))} first."
    groups = [
        f"{', '.join(names[:-1])} and {names[-1]} put {first} first"
        if len(names) > 1
        else f"{names[0]} puts {first} first"
        for first, names in by_first.items()
    ]
    text = "; ".join(groups)
    return f"{text[0].upper()}{text[1:]}."


def _significance(taus: list[dict]) -> str:
    """The range of the p-values against the adapted accuracy, and how many are below 0.05."""
    ps = [e["p"] for e in taus if e["outcome"] == "adapted" and e["p"] is not None]
    if not ps:
        return ""
    below = sum(p < 0.05 for p in ps)
    verdict = "none is below 0.05" if not below else f"{below} of {len(ps)} below 0.05"
    return f"Against the adapted accuracy, p ranges from {min(ps):.2f} to {max(ps):.2f}: {verdict}."


# ---- python -m adaptflow.bench demo-run: results/stage_timings.json ----


def run_configuration(results: dict) -> str:
    """`adapt.method: shot, params.yaml of commit 978326e64a`: what the timed demo run ran."""
    method = results["metrics"]["evaluate"]["method"]
    overrides = results["overrides"]
    commit = (results["run"].get("commit") or "unknown")[:10]
    where = f"params.yaml of commit `{commit}`"
    if overrides:
        where += f" with overrides `{' '.join(overrides)}`"
    return f"`adapt.method: {method}`, {where}"


def _kept(selection: dict) -> str:
    """What a run's label-free selection kept, and by which rule (auto) or validator."""
    chooser = selection.get("rule") or selection["validator"]  # older records: `validator`
    if "chosen" in selection:  # adapt.method: auto
        return f"{selection['chosen']} kept by the rule `{chooser}`"
    return f"checkpoint selected by `{chooser}`"


def demo_headline(results: dict) -> str:
    """The timed demo run's figures (from its metrics), and the configuration it ran."""
    evaluation = results["metrics"]["evaluate"]
    kept = _kept(evaluation["selection"])
    warnings = evaluation.get("warnings")  # recorded since the label-free warnings exist
    warned = "" if warnings is None else f", {len(warnings) or 'no'} label-free warning(s)"
    return paragraph(
        f"**Timed demo run ({run_configuration(results)}; {kept}): target test accuracy "
        f"{evaluation['target_accuracy']:.3f}** (macro-F1 {evaluation['target_macro_f1']:.3f}, "
        f"ECE {evaluation['target_ece']:.3f}), against "
        f"{evaluation['source_only_target_accuracy']:.3f} for the source-only model{warned}, "
        f"with no target label used for training or selection. On the *source* test split the "
        f"adapted model scores {evaluation['source_test_accuracy']:.3f} and the source-only "
        f"model {evaluation['source_only_source_test_accuracy']:.3f}. From the run timed below "
        f"(`results/stage_timings.json`, {results['run']['date'][:10]})."
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
    head = paragraph(
        provenance(results["run"]),
        f"Each stage ran as `{results['stage_command']}` in a fresh copy of the repository, "
        f"with {run_configuration(results)}.",
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
            "–" if run["peak_memory_mb"] is None else f"{run['peak_memory_mb'] / 1024:.1f}",
            f"{run['run']['date'][:10]}, `{(run['run']['commit'] or 'unknown')[:10]}`, "
            f"torch {run['torch']}",
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
        "peak GPU memory (GiB)",
        "measured",
    ]
    loads = ", ".join(f"{(r['run']['load_average_start'] or [0])[0]:.1f}" for r in runs)
    return f"{table(header, rows, right={4, 5, 6, 7})}\n\n" + paragraph(
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


# ---- python -m adaptflow.bench ddp: results/ddp_agreement.json ----


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


# ---- python -m adaptflow.bench shifts: results/shifts.json ----

GAINED = 0.01  # a one-method run "gained" when it beat source-only by more than 1 point
TARGET_REGRET = 2.0  # points: the bar set for the default auto's mean regret
SCOPES = {
    "suite": "choosing among all methods",
    "portfolio": "choosing within the default portfolio (adapt.portfolio.members + source_only)",
}


def _mean(values: list[float]) -> float:
    return statistics.mean(values) if values else float("nan")


def _seeds(shift: dict) -> list[dict]:
    return list(shift["seeds"].values())


def shift_rules(results: dict) -> list[str]:
    """The cross-method rules the file scored, in the order the benchmark ran them."""
    return results["settings"]["rules"]


def _gain(run: dict, scope: str, rule: str) -> float:
    accuracy = run["target_accuracy"]
    return 100 * (accuracy[run[scope]["rules"][rule]["pick"]] - accuracy[SOURCE_ONLY])


def rule_figures(results: dict, scope: str) -> dict[str, tuple[list[float], float, float]]:
    """Per rule: its mean regret (points) on each shift, over the suite, and its worst mean
    gain over source-only on a shift; among all methods (`suite`) or the default portfolio."""
    figures = {}
    for rule in shift_rules(results):
        regrets, gains = [], []
        for shift in results["shifts"].values():
            regrets.append(_mean([100 * s[scope]["rules"][rule]["regret"] for s in _seeds(shift)]))
            gains.append(_mean([_gain(s, scope, rule) for s in _seeds(shift)]))
        figures[rule] = (regrets, _mean(regrets), min(gains))
    return figures


def shift_rules_table(results: dict, scope: str) -> str:
    """Mean regret of every rule per shift and over the suite, and its worst mean gain."""
    rows = [
        [
            f"**{rule}** (default)" if rule == results["default_rule"] else rule,
            *(f"{regret:.1f}" for regret in regrets),
            f"{mean:.1f}",
            f"{worst:+.1f}",
        ]
        for rule, (regrets, mean, worst) in rule_figures(results, scope).items()
    ]
    header = ["rule", *results["shifts"], "mean regret", "worst gain vs source-only"]
    return table(header, rows, right=set(range(1, len(header))))


def method_accuracies(results: dict, shift: dict) -> dict[str, list[float]]:
    """Each method's target accuracy (%, the oracle) on one shift, per seed."""
    return {
        method: [100 * s["target_accuracy"][method] for s in _seeds(shift)]
        for method in results["settings"]["methods"]
    }


def shift_methods_table(results: dict) -> str:
    """Target accuracy (oracle) of every method on every shift, mean ± std over seeds."""
    by_shift = [method_accuracies(results, shift) for shift in results["shifts"].values()]
    rows = [
        [method, *(mean_std([v / 100 for v in shift[method]]) for shift in by_shift)]
        for method in results["settings"]["methods"]
    ]
    return table(["method", *results["shifts"]], rows, right=set(range(1, len(by_shift) + 1)))


def _share_warned(runs: list[dict], methods: list[str], gained: bool) -> tuple[int, int]:
    """Of the one-method runs that did (not) gain over source-only: how many warned, of how
    many."""
    warned = [
        bool(s["methods"][m]["warnings"])
        for s in runs
        for m in methods
        if (s["target_accuracy"][m] > s["target_accuracy"][SOURCE_ONLY] + GAINED) == gained
    ]
    return sum(warned), len(warned)


def warning_counts(results: dict) -> dict[str, tuple[tuple[int, int], ...]]:
    """Per shift: the default auto runs warned, and one-method runs warned among those that
    gained at most 1 point and those that gained more (each `(warned, runs)`)."""
    rule = results["default_rule"]
    methods = [m for m in results["settings"]["methods"] if m != SOURCE_ONLY]
    counts = {}
    for name, shift in results["shifts"].items():
        runs = _seeds(shift)
        auto = sum(bool(s["portfolio"]["rules"][rule]["warnings"]) for s in runs), len(runs)
        counts[name] = (auto, *(_share_warned(runs, methods, gained) for gained in (False, True)))
    return counts


def shift_warnings_table(results: dict) -> str:
    """How often runs carry a warning, per shift: the default auto run, and one-method runs
    split by whether the method gained over source-only (a warning is then a false alarm) or
    not (a warning is deserved)."""
    rows = [
        [name, *(f"{warned}/{runs}" for warned, runs in counts)]
        for name, counts in warning_counts(results).items()
    ]
    header = [
        "shift",
        "default auto: runs warned",
        "one-method runs that gained ≤ 1 point: warned",
        "one-method runs that gained more: warned",
    ]
    return table(header, rows, right={1, 2, 3})


def default_figures(results: dict) -> dict[str, dict[str, float]]:
    """Per shift, mean over seeds (%): source-only, the default auto's pick, and the best of
    its portfolio and of all methods (oracles)."""
    rule = results["default_rule"]
    picks = {
        "source": lambda s: SOURCE_ONLY,
        "picked": lambda s: s["portfolio"]["rules"][rule]["pick"],
        "portfolio": lambda s: s["portfolio"]["oracle"],
        "all": lambda s: s["suite"]["oracle"],
    }
    return {
        name: {
            key: _mean([100 * s["target_accuracy"][pick_of(s)] for s in _seeds(shift)])
            for key, pick_of in picks.items()
        }
        for name, shift in results["shifts"].items()
    }


def shift_default_table(results: dict) -> str:
    """The default `adapt.method: auto` per shift, against source-only and the oracles."""
    rows = []
    for name, a in default_figures(results).items():
        figures = (a["source"], a["picked"], a["portfolio"], a["all"])
        regrets = (a["portfolio"] - a["picked"], a["all"] - a["picked"])
        rows.append([name, *(f"{value:.1f}" for value in (*figures, *regrets))])
    portfolio, overall = _default_regrets(results)
    rows.append(["**mean**", "", "", "", "", f"**{portfolio:.1f}**", f"**{overall:.1f}**"])
    header = [
        "shift",
        "source-only",
        "auto (default)",
        "best in portfolio (oracle)",
        "best of all methods (oracle)",
        "regret vs portfolio",
        "regret vs all",
    ]
    return table(header, rows, right=set(range(1, 7)))


def _lowest_regret(figures: dict) -> tuple[str, float]:
    """The rule with the lowest mean regret in `rule_figures` of one scope, and that regret."""
    rule = min(figures, key=lambda name: figures[name][1])
    return rule, figures[rule][1]


def held_out_rule_regrets(figures: dict, shifts: list[str]) -> dict[str, tuple[str, float]]:
    """Per shift: the rule with the lowest mean regret on the other shifts, and its regret on
    this one; how well choosing the rule from the suite carries to a shift it has not seen.
    `figures` is what `rule_figures` gives for one scope, `shifts` the names in its order."""
    regrets = {rule: per_shift for rule, (per_shift, _, _) in figures.items()}
    held_out = {}
    for index, shift in enumerate(shifts):
        others = [i for i in range(len(shifts)) if i != index]
        chosen = min(regrets, key=lambda rule: _mean([regrets[rule][i] for i in others]))
        held_out[shift] = (chosen, regrets[chosen][index])
    return held_out


def _default_regrets(results: dict) -> tuple[float, float]:
    """The default auto's mean regret (points) within its portfolio and against all methods."""
    figures = default_figures(results).values()
    return (
        _mean([a["portfolio"] - a["picked"] for a in figures]),
        _mean([a["all"] - a["picked"] for a in figures]),
    )


def guard_figures(results: dict) -> tuple[int, int, list[float]]:
    """One-method runs whose validator preferred the unadapted source model to every adapted
    epoch: how many, how many of them fell back to it, and for the others the adapted model's
    gain over source-only (points), which says whether falling back would have been right."""
    suspected = [
        (s, m)
        for shift in results["shifts"].values()
        for s in _seeds(shift)
        for m, record in s["methods"].items()
        if record["negative_transfer_suspected"]
    ]
    kept_adapted = [(s, m) for s, m in suspected if not s["methods"][m]["fell_back"]]
    gains = [
        100 * (s["target_accuracy"][m] - s["target_accuracy"][SOURCE_ONLY]) for s, m in kept_adapted
    ]
    return len(suspected), len(suspected) - len(kept_adapted), gains


def guard_sentence(results: dict) -> str:
    """`guard_figures` in one sentence, for the shifts regions."""
    suspected, fell_back, gains = guard_figures(results)
    if not suspected:
        return "No one-method run's validator preferred the unadapted source model."
    said = (
        f"In {suspected} one-method runs the validator preferred the unadapted source model "
        "to every adapted epoch"
    )
    if fell_back:
        said += f"; {fell_back} of them fell back to it (`adapt.fallback_to_source`)"
    if not gains:
        return said + "."
    better = sum(gain > 0 for gain in gains)
    return (
        f"{said}. Of the {len(gains)} that kept the adapted model, it beat source-only in "
        f"{better} (mean gain {_mean(gains):+.1f} points)."
    )


def unanimity_figures(results: dict) -> dict[str, tuple[float, float]]:
    """Per shift (%): the mean share of target test images to which every adapted member of
    the default portfolio gives the same label, and how often that label is right over all
    seeds' such images (oracle). A shift's seeds share one test set, so weighting each seed's
    rate by its share pools the images; a seed where they agree on two images counts for two."""
    figures = {}
    for name, shift in results["shifts"].items():
        checks = [s["portfolio"]["unanimity"] for s in _seeds(shift)]
        agreed = sum(c["coverage"] for c in checks)
        right = sum(c["coverage"] * c["accuracy"] for c in checks if c["accuracy"] is not None)
        pooled = 100 * right / agreed if agreed else float("nan")
        figures[name] = (100 * agreed / len(checks), pooled)
    return figures


def unanimity_sentence(results: dict) -> str:
    """`unanimity_figures` in one sentence; empty for a file recorded before they were."""
    if not all(
        "unanimity" in s["portfolio"] for sh in results["shifts"].values() for s in _seeds(sh)
    ):
        return ""
    shares = "; ".join(
        f"{name} {coverage:.0f}% ({right:.0f}%)"
        for name, (coverage, right) in unanimity_figures(results).items()
    )
    return (
        "How far the adapted members' consensus can be trusted (oracle check): the share of "
        "target test images on which every adapted member of the default portfolio gives the "
        "same label (mean over seeds), and in brackets how often that label is right (over "
        f"all seeds' such images): {shares}."
    )


def _beyond_the_bar(results: dict, shift: str, regret: float) -> str:
    """Whether one shift's regret alone rules out the bar, whatever the others reach."""
    allowed = TARGET_REGRET * len(results["shifts"])
    if regret <= allowed:
        return ""
    return (
        f"On {shift} alone the regret against all methods is more than the {allowed:.0f} points "
        f"that a mean of {TARGET_REGRET:.0f} over {len(results['shifts'])} shifts allows."
    )


def shifts_summary(results: dict) -> str:
    """What the tables say, in sentences built from the same figures."""
    best = {
        name: max(accuracies.items(), key=lambda item: _mean(item[1]))
        for name, accuracies in (
            (name, method_accuracies(results, shift)) for name, shift in results["shifts"].items()
        )
    }
    leaders = ", ".join(f"{m} on {name} ({_mean(v):.1f})" for name, (m, v) in best.items())
    portfolio, overall = _default_regrets(results)
    figures = default_figures(results)
    regret_vs_all = {name: a["all"] - a["picked"] for name, a in figures.items()}
    worst = max(regret_vs_all, key=regret_vs_all.get)
    by_scope = {scope: rule_figures(results, scope) for scope in SCOPES}
    lowest = {scope: _lowest_regret(figures_of) for scope, figures_of in by_scope.items()}
    default_gain = by_scope["portfolio"][results["default_rule"]][2]
    held_out = held_out_rule_regrets(by_scope["portfolio"], list(results["shifts"]))
    chosen_per_shift = ", ".join(
        f"{r} for {name} ({v:.1f} there)" for name, (r, v) in held_out.items()
    )
    counts = list(warning_counts(results).values())
    quiet, gained = ([sum(c[i][j] for c in counts) for j in (0, 1)] for i in (1, 2))
    return paragraph(
        f"Best method per shift (mean target accuracy, %): {leaders}.",
        f"The default auto's mean regret is {portfolio:.1f} points within its portfolio and "
        f"{overall:.1f} against the best of all {len(results['settings']['methods'])} methods "
        f"(the target is at most {TARGET_REGRET:.0f}: "
        f"{'met' if overall <= TARGET_REGRET else 'not met'}), worst on {worst} "
        f"({figures[worst]['portfolio'] - figures[worst]['picked']:.1f} and "
        f"{regret_vs_all[worst]:.1f}); its worst mean gain over "
        f"source-only on a shift is {default_gain:+.1f} points.",
        _beyond_the_bar(results, worst, regret_vs_all[worst]),
        f"Lowest mean regret within the default portfolio: {lowest['portfolio'][0]} "
        f"({lowest['portfolio'][1]:.1f}); among all methods: {lowest['suite'][0]} "
        f"({lowest['suite'][1]:.1f}).",
        "A rule chosen from this table is flattered by it. Chosen for each shift from the "
        "other shifts alone (lowest mean regret within the portfolio), the rule is "
        f"{chosen_per_shift}: a mean regret of "
        f"{_mean([regret for _, regret in held_out.values()]):.1f} points on the shift left "
        f"out, against {portfolio:.1f} for the default chosen from all of them.",
        f"One-method runs that gained more than {100 * GAINED:.0f} point over source-only: "
        f"{gained[0]} of {gained[1]} warned; those that gained at most that: {quiet[0]} of "
        f"{quiet[1]} warned.",
        guard_sentence(results),
        unanimity_sentence(results),
    )


def _in_suite_order(results: dict) -> dict:
    """The file's keys are sorted; settings keep the order the benchmark ran the shifts in."""
    return {
        **results,
        "shifts": {name: results["shifts"][name] for name in results["settings"]["shifts"]},
    }


def _effective(overrides: list[str]) -> str:
    """KEY=VALUE overrides as they apply: a later one replaces an earlier one of the same key."""
    settings: dict[str, str] = {}
    for override in overrides:
        key, value = override.split("=", 1)
        settings[key] = value
    return " ".join(f"{key}={value}" for key, value in settings.items())


def _suite_head(results: dict) -> str:
    settings = results["settings"]
    return paragraph(
        provenance(results["run"]),
        f"{len(results['shifts'])} shifts x {len(settings['seeds'])} seeds "
        f"({' '.join(map(str, settings['seeds']))}) x {len(settings['methods'])} methods; "
        f"settings `{_effective(settings['overrides'])}`. Target test accuracy (%) is the oracle "
        "here: it judges the choices, it never makes them.",
    )


def _default_auto_heading(results: dict) -> str:
    return (
        f"**The default `adapt.method: auto`** (rule `{results['default_rule']}`, default "
        "portfolio), mean over seeds:"
    )


def shifts_region(results: dict) -> str:
    """The hard-shift section's figures: the default auto, every method, every rule's regret
    (among all methods and within the portfolio), the warnings, and their summary."""
    results = _in_suite_order(results)
    parts = [
        _suite_head(results),
        _default_auto_heading(results),
        shift_default_table(results),
        "Every method's target accuracy, mean ± std over seeds:",
        shift_methods_table(results),
        paragraph(
            "Regret (points) of each label-free rule choosing among **all methods** (mean over "
            "seeds), and its worst mean gain over source-only on a shift:"
        ),
        shift_rules_table(results, "suite"),
        "The same, choosing within the **default portfolio** (its members and source_only):",
        shift_rules_table(results, "portfolio"),
        "How often a run carries at least one label-free warning:",
        shift_warnings_table(results),
        shifts_summary(results),
    ]
    return "\n\n".join(parts)


def shifts_longer_region(results: dict) -> str:
    """The suite recorded again with longer training: the default auto and every rule's regret
    within the portfolio, to set beside the main tables."""
    results = _in_suite_order(results)
    portfolio, overall = _default_regrets(results)
    lowest, lowest_regret = _lowest_regret(rule_figures(results, "portfolio"))
    parts = [
        _suite_head(results),
        _default_auto_heading(results),
        shift_default_table(results),
        "Regret (points) of each label-free rule choosing within the default portfolio:",
        shift_rules_table(results, "portfolio"),
        paragraph(
            f"With this training the default auto's mean regret is {portfolio:.1f} points within "
            f"its portfolio and {overall:.1f} against all methods; the rule with the lowest mean "
            f"regret within the portfolio is {lowest} ({lowest_regret:.1f}).",
            guard_sentence(results),
            unanimity_sentence(results),
        ),
    ]
    return "\n\n".join(parts)


# ---- README.md's summary: results/stage_timings.json, methods.json and shifts.json ----


def summary_region(results: list[dict]) -> str:
    """The README's results at a glance: the default on the demo and what its run took, each
    method alone on the demo, and the default on the hard shifts, each with when it was run."""
    timings, methods, shifts, rungs, rungs_longer = results
    evaluation = timings["metrics"]["evaluate"]
    accuracy = {
        method: statistics.mean(
            r["target_accuracy"] for r in methods["rows"] if r["method"] == method
        )
        for method in methods["settings"]["methods"]
        if method != SOURCE_ONLY
    }
    best, worst = max(accuracy, key=accuracy.get), min(accuracy, key=accuracy.get)
    figures = default_figures(shifts)
    portfolio, overall = _default_regrets(shifts)
    below = [name for name, a in figures.items() if a["picked"] < a["source"]]
    rows = [
        [
            f"demo, `adapt.method: {evaluation['method']}`",
            f"target accuracy **{100 * evaluation['target_accuracy']:.1f}%**, source-only "
            f"{100 * evaluation['source_only_target_accuracy']:.1f}%; "
            f"{_kept(evaluation['selection'])}",
            _recorded(timings["run"]),
        ],
        [
            f"demo run, every stage, {timings['run']['cpu_count']} CPU cores",
            f"{timings['total_seconds']:.0f} s; a `dvc repro` with nothing to do "
            f"{timings['noop_seconds']:.1f} s",
            _recorded(timings["run"]),
        ],
        [
            f"demo, each method alone ({len(methods['settings']['seeds'])} seeds)",
            f"best {best} {100 * accuracy[best]:.1f}%, worst {worst} {100 * accuracy[worst]:.1f}%",
            _recorded(methods["run"]),
        ],
        [
            f"{len(figures)} hard shifts x {len(shifts['settings']['seeds'])} seeds, `auto` "
            "with every member to the end",
            f"mean regret {portfolio:.1f} points within its portfolio, {overall:.1f} against the "
            f"best of all methods; below source-only on "
            f"{', '.join(below) if below else 'no shift'}",
            _recorded(shifts["run"]),
        ],
        [
            "the same shifts and seeds, default `auto` (budget 2.5x one method, successive "
            "halving) against every member to the end, trained again",
            budget_summary(rungs),
            _recorded(rungs["run"]),
        ],
        [
            "the same with `adapt.epochs=10` (the default's epochs)",
            budget_summary(rungs_longer),
            _recorded(rungs_longer["run"]),
        ],
    ]
    return table(["", "measured", "recorded"], rows)


def _recorded(run: dict) -> str:
    """When and at which commit a results file was measured."""
    return f"{run['date'][:10]}, `{(run.get('commit') or 'unknown')[:10]}`"


# ---- python -m adaptflow.bench rungs: results/rungs.json ----


def rungs_figures(results: dict) -> dict[str, dict[str, float]]:
    """Per shift: the mean regret (points) of the full and the budgeted portfolio's pick, and
    the mean compute of each as a multiple of one method's member-epochs."""
    figures = {}
    for name, seeds in results["shifts"].items():
        runs = list(seeds.values())
        one = runs[0]["single_method_epochs"]
        figures[name] = {
            f"{kind}_{figure}": _mean([scale * r[kind][key] for r in runs])
            for kind in ("full", "budgeted")
            for figure, key, scale in (
                ("regret", "regret", 100),
                ("compute", "member_epochs", 1 / one),
            )
        }
    return figures


def _over_shifts(figures: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each figure's mean over the shifts."""
    keys = next(iter(figures.values()))
    return {key: _mean([f[key] for f in figures.values()]) for key in keys}


def rungs_table(results: dict) -> str:
    """Per shift, and in the mean: each portfolio's picks, regret and compute."""
    figures = rungs_figures(results)
    rows = []
    for name, seeds in results["shifts"].items():
        runs, f = list(seeds.values()), figures[name]
        rows.append(
            [
                name,
                ", ".join(r["full"]["pick"] for r in runs),
                f"{f['full_regret']:.1f}",
                ", ".join(r["budgeted"]["pick"] for r in runs),
                f"{f['budgeted_regret']:.1f}",
                f"{f['budgeted_compute']:.1f} (full {f['full_compute']:.0f})",
            ]
        )
    means = _over_shifts(figures)
    rows.append(
        [
            "**mean**",
            "",
            f"**{means['full_regret']:.1f}**",
            "",
            f"**{means['budgeted_regret']:.1f}**",
            f"{means['budgeted_compute']:.1f} (full {means['full_compute']:.0f})",
        ]
    )
    header = [
        "shift",
        "full: picks",
        "regret",
        "budgeted: picks",
        "regret",
        "compute (x one method)",
    ]
    return table(header, rows, {2, 4, 5})


def rungs_region(results: dict) -> str:
    """The budgeted portfolio against the full one on the suite, and where early scores misled."""
    settings = results["settings"]
    figures = rungs_figures(results)
    misled = [
        f"{name} (+{f['budgeted_regret'] - f['full_regret']:.1f} points)"
        for name, f in figures.items()
        if f["budgeted_regret"] - f["full_regret"] > 0.5
    ]
    return "\n\n".join(
        [
            paragraph(
                provenance(results["run"]),
                f"Note: {results['note']}." if results.get("note") else "",
                f"{len(results['shifts'])} shifts x {len(settings['seeds'])} seeds; settings "
                f"`{' '.join(settings['overrides'])}`; rule {settings['rule']}, "
                f"`adapt.portfolio.budget: {settings['budget']}`. Regret (points): the best "
                "member's target test accuracy (oracle) minus the pick's, mean over seeds.",
            ),
            rungs_table(results),
            "Early scores misled (budgeted regret more than 0.5 point above the full "
            f"portfolio's) on: {', '.join(misled) if misled else 'no shift'}.",
        ]
    )


def budget_summary(results: dict) -> str:
    """One line for the README: both portfolios' mean regret and compute."""
    mean = _over_shifts(rungs_figures(results))
    return (
        f"mean regret {mean['budgeted_regret']:.1f} points at {mean['budgeted_compute']:.1f}x "
        f"one method's training; the full portfolio {mean['full_regret']:.1f} at "
        f"{mean['full_compute']:.0f}x"
    )


def labels_region(results: dict) -> str:
    """Regret of the labeled choice by number of labels, active against random queries."""
    budgets = results["budgets"]
    regret = results["mean_regret"]
    rows = [
        [strategy, *(f"{value:.1f}" for value in regret[strategy])]
        for strategy in ("active", "random")
    ]
    per_shift = []
    at = budgets.index(24) if 24 in budgets else len(budgets) - 1
    for name, seeds in results["shifts"].items():
        row = [name]
        for strategy, budget in (("active", at), ("random", at), ("active", 0)):
            values = [user[budget]["regret"] for s in seeds.values() for user in s[strategy]]
            row.append(f"{sum(values) / len(values):.1f}")
        per_shift.append(row)
    coverage = results["interval_coverage"]
    return "\n\n".join(
        [
            paragraph(
                provenance(results["run"]),
                f"{len(results['shifts'])} shifts x {len(results['settings']['seeds'])} seeds x "
                f"{results['settings']['users']} simulated users; "
                f"settings `{' '.join(results['settings']['overrides'])}`; candidates: "
                f"{', '.join(results['candidates'])}. Mean regret (points) of the model kept "
                f"with that many target train labels (0: the rule {results['rule']} alone), "
                "against the best candidate on target test.",
            ),
            table(["queries", *(f"{b} labels" for b in budgets)], rows, set(range(1, 6))),
            table(
                ["shift", f"active, {budgets[at]}", f"random, {budgets[at]}", "no labels"],
                per_shift,
                {1, 2, 3},
            ),
            paragraph(
                f"The 95% interval of the kept model's accuracy from the labels covered its test "
                f"accuracy in {100 * coverage['active']:.0f}% of the runs with active queries and "
                f"{100 * coverage['random']:.0f}% with random ones (all budgets above 0)."
            ),
            _finetune_paragraph(results),
        ]
    ).rstrip()


def _finetune_paragraph(results: dict) -> str:
    """The labels put to work (`--finetune-epochs`): did the fine-tuned model gain?"""
    tuned = results.get("finetune")
    if not tuned:
        return ""
    runs = tuned["runs"]
    return paragraph(
        f"Fine-tuned on the first simulated user's {tuned['at_labels']} active labels "
        f"(`adapt.portfolio.finetune_on_labels`, {results['settings']['finetune_epochs']} epochs, "
        f"half the labels held out), the kept model gained {tuned['mean_gain']:+.1f} points of "
        f"target test accuracy on average over {runs} runs (it helped in {tuned['helped']}); "
        f"the held-out labels kept the fine-tuned model in {tuned['kept']} of {runs}, which "
        f"delivered {tuned['mean_delivered_gain']:+.1f} points on average."
    )


def _share(count: int, total: int) -> str:
    return f"{count}/{total}" if total else "-"


def _held_out(signal: str, found: dict) -> str:
    thresholds = ", ".join(f"{t:.2f}" for t in found["thresholds"].values())
    return (
        f"`{signal}` {_share(found['false_alarms'], found['not_poor'])} false alarms and "
        f"{_share(found['misses'], found['poor'])} misses (thresholds {thresholds})"
    )


def warnings_region(results: dict) -> str:
    """The disagreement warnings' false alarms and misses on the suite, at the thresholds in use
    and at the best, and with the threshold chosen on the other shifts."""
    warned = results["warnings"].items()
    rows = []
    for signal, found in warned:
        for which in ("in_use", "best"):
            default, everywhere = found[which]["default"], found[which]["all"]
            rows.append(
                [
                    f"`{signal}` ({'in use' if which == 'in_use' else 'fewest errors'})",
                    f"{default['threshold']:.2f}",
                    _share(default["false_alarms"], default["not_poor"]),
                    _share(default["misses"], default["poor"]),
                    _share(everywhere["false_alarms"], everywhere["not_poor"]),
                    _share(everywhere["misses"], everywhere["poor"]),
                ]
            )
    held_out = [_held_out(signal, found["leave_one_shift_out"]) for signal, found in warned]
    return "\n\n".join(
        [
            paragraph(
                provenance(results["run"]),
                f"{len(results['shifts'])} shifts x {len(results['settings']['seeds'])} seeds; "
                f"settings `{' '.join(results['settings']['overrides'])}`; the rule "
                f"{results['rule']} keeps a model in each of {results['portfolios']} portfolios "
                "(the default one and every subset of two or more of its members, each with the "
                f"source model). A run is poor when the kept model is under "
                f"{100 * results['poor_below']:.0f}% on target test.",
            ),
            table(
                [
                    "warning",
                    "threshold",
                    "false alarms, default",
                    "misses, default",
                    "false alarms, all",
                    "misses, all",
                ],
                rows,
                {1, 2, 3, 4, 5},
            ),
            paragraph(
                "With the threshold chosen on three shifts and checked on the fourth: "
                + "; ".join(held_out)
                + "."
            ),
        ]
    )
