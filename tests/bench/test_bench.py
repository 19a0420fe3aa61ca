"""The benchmarks run on tiny settings and print figures consistent with what they record, so a
broken benchmark fails the suite (the figures themselves are not judged here)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.stats import kendalltau

from tests.helpers import ROOT
from tests.helpers.toy import prepare_project

TINY = {
    "device": "cpu",
    "data": {"source": "src", "target": "tgt", "image_size": 8},
    "pretrain": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 8},
    "adapt": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 8},
    "selection": {"max_samples": 32},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A tiny prepared project (decoded caches of 8x8 images) with params for a few steps."""
    root = tmp_path_factory.mktemp("bench")
    prepare_project(root, scramble=False)
    (root / "params.yaml").write_text(yaml.safe_dump(TINY))
    return root


def bench(project: Path | None, *args: str) -> str:
    """Run a benchmark command in `project` (or anywhere); its stdout."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [sys.executable, *args], cwd=project, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def table_rows(output: str) -> dict[str, list[str]]:
    """The Markdown table a benchmark printed: first cell -> the other cells."""
    rows = [line.strip("|").split("|") for line in output.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


@pytest.mark.parametrize("method", ["source_only", "dann"])
def test_the_throughput_benchmark_prints_both_loops_and_their_ratio(method):
    output = bench(
        None,
        *["-m", "adaptflow.bench", "throughput", "--method", method, "--batch", "8"],
        *["--steps", "3", "--warmup", "1", "--repeats", "1", "--device", "cpu"],
    )
    engine = float(re.search(r"adaptflow loop : +([\d.]+) img/s", output).group(1))
    plain = float(re.search(r"plain PyTorch  : +([\d.]+) img/s", output).group(1))
    ratio = float(re.search(r"ratio +: +([\d.]+)", output).group(1))
    assert engine > 0 and plain > 0
    assert ratio == pytest.approx(engine / plain, rel=1e-2)
    assert f"method {method}" in output and "device: CPU" in output


def test_the_methods_benchmark_tabulates_what_it_records(project, tmp_path):
    record = tmp_path / "methods.json"
    output = bench(
        project,
        *["-m", "adaptflow.bench", "methods", "--methods", "source_only", "adabn", "--seeds", "0"],
        *["--json", str(record)],
    )
    recorded = json.loads(record.read_text())
    runs = {row["method"]: row for row in recorded["rows"]}
    assert set(runs) == {"source_only", "adabn"}
    assert recorded["settings"]["seeds"] == [0]
    assert "bench methods --methods source_only adabn" in recorded["run"]["command"]
    # source_only leaves the source model as it is: the same target accuracy, no gain
    assert runs["source_only"]["target_accuracy"] == runs["source_only"]["source_only"]
    table = table_rows(output)
    for method, row in runs.items():
        accuracy, _, gain, _ = table[method]
        assert accuracy.startswith(f"{100 * row['target_accuracy']:5.1f}".strip())
        assert float(gain) == pytest.approx(
            100 * (row["target_accuracy"] - row["source_only"]), abs=0.06
        )


def test_the_rank_benchmark_tabulates_the_scores_it_ranked_by(project, tmp_path):
    record = tmp_path / "rank.json"
    output = bench(
        project,
        *["-m", "adaptflow.bench", "rank", "--candidates", "small_cnn", "small_cnn_20steps"],
        *["--json", str(record)],
    )
    recorded = json.loads(record.read_text())
    rows = {row["candidate"]: row for row in recorded["rows"]}
    assert set(rows) == {"small_cnn", "small_cnn_20steps"}
    table = table_rows(output)
    for name, row in rows.items():
        scores = recorded["rank"]["candidates"][name]
        assert (
            row["logme"] == scores["source"]["logme"] and row["domain_gap"] == scores["domain_gap"]
        )
        assert table[name][0] == f"{row['logme']:.3f}"
        assert table[name][-1] == f"{100 * row['adapted']:.1f}"
    # the taus are Kendall's over the recorded rows, each estimator ordered best first
    taus = {(t["estimator"], t["outcome"]): t for t in recorded["taus"]}
    for estimator in ("logme", "leep", "nce", "hscore", "domain_gap"):
        sign = 1 if estimator != "domain_gap" else -1
        for outcome in ("adapted", "source_only"):
            expected = kendalltau(
                [sign * r[estimator] for r in rows.values()], [r[outcome] for r in rows.values()]
            ).statistic
            recorded_tau = taus[estimator, outcome]["tau"]
            assert (recorded_tau is None) == bool(np.isnan(expected))
            assert recorded_tau is None or recorded_tau == pytest.approx(expected)
        best = max(rows.values(), key=lambda r: sign * r[estimator])["candidate"]
        assert taus[estimator, "adapted"]["first"] == best
    names = {"logme": "LogME", "leep": "LEEP", "nce": "NCE", "hscore": "H-score"}
    for estimator, name in {**names, "domain_gap": "domain gap"}.items():
        tau = taus[estimator, "adapted"]["tau"]
        printed = table[f"{name} ({'smaller' if estimator == 'domain_gap' else 'higher'} first)"]
        assert printed[1].startswith("n/a" if tau is None else f"{tau:+.2f}")


def test_the_demo_run_times_each_stage_in_a_fresh_copy_and_records_the_commit(tmp_path):
    record = tmp_path / "stage_timings.json"
    output = bench(
        ROOT,
        *["-m", "adaptflow.bench", "demo-run", "--stages", "demo_data", "--json", str(record)],
        *["--set", "demo.source_limit=50", "demo.target_limit=50"],
    )
    recorded = json.loads(record.read_text())
    [stage] = recorded["stages"]
    assert stage["stage"] == "demo_data" and stage["status"] == "ran" and stage["seconds"] > 0
    assert recorded["noop_seconds"] > 0 and recorded["total_seconds"] == stage["seconds"]
    assert table_rows(output)["demo_data"] == [f"{stage['seconds']:.1f}"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    assert recorded["run"]["commit"] == (head.stdout.strip() if head.returncode == 0 else None)


def test_the_ddp_agreement_benchmark_records_the_largest_differences(tmp_path):
    record = tmp_path / "ddp.json"
    output = bench(
        tmp_path,
        *["-m", "adaptflow.bench", "ddp"],
        "--methods",
        "finetune",
        "--json",
        str(record),
    )
    [case] = json.loads(record.read_text())["cases"]
    assert case["method"] == "finetune" and "error" not in case
    # finetune is one of the methods tests/training/test_distributed.py holds to 1e-4
    assert 0 <= case["max_weight_diff"] <= 1e-4 and 0 <= case["max_loss_diff"] <= 1e-4
    assert table_rows(output)["finetune"][1] == f"{case['max_weight_diff']:.1e}"


def demo_shift_bench(tmp_path: Path, epochs: int, *command: str) -> tuple[str, dict]:
    """A suite benchmark (`-m adaptflow.bench <name> ...`) on the demo shift, seed 0, a few
    steps of `epochs` epochs; what it printed and the results file it wrote."""
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    record = tmp_path / "results.json"
    tiny = ["pretrain.epochs=1", "pretrain.steps_per_epoch=2", f"adapt.epochs={epochs}"]
    tiny += ["adapt.steps_per_epoch=2", "selection.max_samples=32"]
    output = bench(
        tmp_path,
        *[*command, "--shifts", "demo", "--seeds", "0", "--set", *tiny],
        *["--work", str(tmp_path / "work"), "--json", str(record)],
    )
    return output, json.loads(record.read_text())


def test_the_shifts_benchmark_records_its_run_and_prints_the_tables_the_docs_show(tmp_path):
    """One shift, one seed, two methods, a few steps: the file records the run, and what the
    benchmark prints is what the `shifts` region of docs/results.md renders from that file."""
    from adaptflow.bench.tables import shift_default_table, shift_methods_table

    command = ["-m", "adaptflow.bench", "shifts", "--methods", "source_only", "adabn"]
    output, recorded = demo_shift_bench(tmp_path, 1, *command)
    assert recorded["run"]["command"].startswith("python -m adaptflow.bench shifts")
    assert set(recorded["shifts"]["demo"]["seeds"]["0"]["target_accuracy"]) == {
        "source_only",
        "adabn",
    }
    assert shift_default_table(recorded) in output and shift_methods_table(recorded) in output
    check = recorded["shifts"]["demo"]["seeds"]["0"]["portfolio"]["unanimity"]
    assert check["voters"] == ["adabn"] and check["coverage"] == 1.0  # one voter agrees with itself
    assert check["accuracy"] == recorded["shifts"]["demo"]["seeds"]["0"]["target_accuracy"]["adabn"]


def test_the_rungs_benchmark_counts_the_compute_of_successive_halving(tmp_path):
    """One shift, one seed, two epochs on a budget of 4.5 methods: seven members to epoch 1,
    the rule keeps two for epoch 2 (9 member-epochs), against seven members to epoch 2 (14)."""
    command = ["-m", "adaptflow.bench", "rungs", "--budget", "4.5"]
    output, recorded = demo_shift_bench(tmp_path, 2, *command)
    seed = recorded["shifts"]["demo"]["0"]
    assert seed["full"]["member_epochs"] == 14 and seed["budgeted"]["member_epochs"] == 9
    [rung] = seed["rungs"]
    assert rung["epoch"] == 1 and len(rung["dropped"]) == 5 and len(rung["scores"]) == 8
    survivors = set(rung["scores"]) - {*rung["dropped"], "source_only"}
    assert seed["budgeted"]["pick"] in {*survivors, "source_only"}
    assert 0 <= seed["budgeted"]["regret"] <= 1 and 0 <= seed["full"]["regret"] <= 1
    assert "| demo |" in output and "compute (x one method)" in output


def test_a_run_record_names_the_commit_and_whether_tracked_files_changed(tmp_path):
    from adaptflow.bench.common import RunRecord

    def git(*args: str) -> str:
        command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True).stdout

    git("init", "-q")
    (tmp_path / "a.txt").write_text("one")
    git("add", "a.txt")
    git("commit", "-qm", "one")
    clean = RunRecord(tmp_path).finished()
    assert clean["commit"] == git("rev-parse", "HEAD").strip()
    assert clean["uncommitted_changes"] is False
    (tmp_path / "a.txt").write_text("two")
    dirty = RunRecord(tmp_path).finished()
    assert dirty["uncommitted_changes"] is True and dirty["changed_files"] == ["a.txt"]
    outside = RunRecord(tmp_path / "a.txt").finished()  # not a directory git can run in
    assert outside["commit"] is None and outside["date"].endswith("+00:00")
    assert outside["machine"].startswith("CPU") and outside["seconds"] >= 0


def test_the_held_out_rule_is_chosen_without_the_shift_it_is_judged_on():
    from adaptflow.bench.tables import held_out_rule_regrets, rule_figures

    # rule "fits" is best on shifts a and b but fails on c; "steady" is never best nor bad
    regrets = {"fits": [0.00, 0.00, 0.20], "steady": [0.02, 0.02, 0.02]}

    def seed(index: int) -> dict:
        accuracy = {"source_only": 0.1, **{r: 0.9 - regrets[r][index] for r in regrets}}
        rules = {r: {"pick": r, "regret": regrets[r][index]} for r in regrets}
        return {"target_accuracy": accuracy, "portfolio": {"rules": rules}}

    shifts = {name: {"seeds": {"0": seed(i)}} for i, name in enumerate("abc")}
    results = {"settings": {"rules": list(regrets)}, "shifts": shifts}
    held_out = held_out_rule_regrets(rule_figures(results, "portfolio"), list(shifts))
    # without a (or b), c's failure counts against "fits": "steady" is chosen; without c,
    # "fits" looks perfect, is chosen, and its regret on c is what the check reports
    assert held_out == {
        "a": ("steady", pytest.approx(2.0)),
        "b": ("steady", pytest.approx(2.0)),
        "c": ("fits", pytest.approx(20.0)),
    }


def test_the_guard_figures_judge_only_runs_that_kept_the_adapted_model():
    from adaptflow.bench.tables import guard_figures, guard_sentence

    def record(suspected: bool, fell_back: bool) -> dict:
        return {"negative_transfer_suspected": suspected, "fell_back": fell_back}

    seed = {
        "target_accuracy": {"source_only": 0.20, "adabn": 0.35, "tent": 0.15, "shot": 0.20},
        "methods": {
            "source_only": record(False, False),
            "adabn": record(True, False),  # the validator was wrong: +15 points
            "tent": record(True, False),  # right: -5 points
            "shot": record(True, True),  # fell back: its accuracy is the source model's
        },
    }
    results = {"shifts": {"corrupted": {"seeds": {"0": seed}}}}
    suspected, fell_back, gains = guard_figures(results)
    assert (suspected, fell_back) == (3, 1)
    assert gains == [pytest.approx(15.0), pytest.approx(-5.0)]
    assert "beat source-only in 1 (mean gain +5.0 points)" in guard_sentence(results)


def test_unanimity_counts_only_the_images_every_voter_labels_alike():
    import torch

    from adaptflow.bench.shifts import unanimity
    from adaptflow.bench.tables import unanimity_figures, unanimity_sentence
    from adaptflow.evaluation.metrics import Scores

    truth = torch.tensor([0, 1, 2, 3])

    def scores(*predicted: int) -> Scores:
        return Scores(0.0, 0.0, 0.0, {}, torch.tensor(predicted), truth)

    test_scores = {"a": scores(0, 1, 2, 0), "b": scores(0, 1, 1, 0), "c": scores(1, 0, 0, 1)}
    # a and b agree on images 0, 1 and 3; right on 0 and 1
    assert unanimity(["a", "b"], test_scores) == {
        "voters": ["a", "b"],
        "coverage": 0.75,
        "accuracy": pytest.approx(2 / 3),
    }
    never = unanimity(["a", "c"], test_scores)
    assert never["coverage"] == 0.0 and never["accuracy"] is None

    def seed(check: dict) -> dict:
        return {"portfolio": {"unanimity": check}}

    rarely = {"coverage": 0.25, "accuracy": 0.0}  # a third seed: agree on one image, wrongly
    seeds = {"0": seed(unanimity(["a", "b"], test_scores)), "1": seed(never), "2": seed(rarely)}
    shifts = {"hard": {"seeds": seeds}}
    # all seeds count in the share; how often they are right pools the images: 2 of 4
    assert unanimity_figures({"shifts": shifts}) == {
        "hard": (pytest.approx(100 / 3), pytest.approx(50.0))
    }
    assert "hard 33% (50%)" in unanimity_sentence({"shifts": shifts})
    assert unanimity_sentence({"shifts": {"old": {"seeds": {"0": {"portfolio": {}}}}}}) == ""


def test_the_summary_says_when_one_shift_alone_rules_out_the_regret_bar():
    from adaptflow.bench.tables import _beyond_the_bar

    two_shifts = {"shifts": {"easy": {}, "hard": {}}}  # a mean of 2 allows 4 points in all
    assert _beyond_the_bar(two_shifts, "hard", 4.0) == ""
    assert "On hard alone" in _beyond_the_bar(two_shifts, "hard", 4.5)
    assert "more than the 4 points that a mean of 2 over 2 shifts" in (
        _beyond_the_bar(two_shifts, "hard", 4.5)
    )


def test_the_labels_benchmark_answers_queries_and_records_the_regret_per_budget(tmp_path):
    """One shift, one seed, a few steps: every budget has a kept model and a regret for both
    strategies, 0 labels is the rule's pick, and the region renders from the file."""
    from adaptflow.bench.tables import labels_region

    command = ["-m", "adaptflow.bench", "labels", "--members", "adabn", "tent", "--users", "1"]
    output, recorded = demo_shift_bench(tmp_path, 1, *command, "--finetune-epochs", "1")
    assert recorded["candidates"] == ["source_only", "adabn", "tent"]
    assert recorded["budgets"] == [0, 8, 16, 24, 48]
    [runs] = recorded["shifts"]["demo"]["0"]["active"]  # one simulated user (--users 1)
    [random_runs] = recorded["shifts"]["demo"]["0"]["random"]
    for strategy, budgets in (("active", runs), ("random", random_runs)):
        assert [b["labels"] for b in budgets] == [0, 8, 16, 24, 48]
        assert all(0 <= b["regret"] <= 100 for b in budgets)
        assert budgets[0]["covered"] is None and budgets[1]["covered"] in (True, False)
        assert recorded["mean_regret"][strategy] == [round(b["regret"], 2) for b in budgets]
    assert runs[0] == random_runs[0]  # no labels: the same label-free pick
    check = recorded["shifts"]["demo"]["0"]["finetune"]  # the kept model at 24 labels, tuned
    assert check["kept"] == runs[3]["kept"] and 0 <= check["finetuned_test_accuracy"] <= 1
    assert recorded["finetune"]["runs"] == 1
    assert labels_region(recorded) in output and "Fine-tuned on the first simulated" in output


def test_the_warnings_benchmark_counts_false_alarms_and_misses_and_holds_a_shift_out():
    """Poor runs (kept model under 60%) should warn, fine ones not; the best threshold makes the
    fewest errors, and leaving a shift out scores it with a threshold chosen without it."""
    from adaptflow.bench.tables import warnings_region
    from adaptflow.bench.warnings import Run, best_threshold, leave_one_shift_out, rates, summarize

    def runs_of(shift: str, poor_agreement: float, fine_agreement: float) -> list[Run]:
        both = {"portfolio_agreement": 0.0, "kept_vs_consensus": 0.95}
        return [
            Run(shift, True, 0.4, {**both, "portfolio_agreement": poor_agreement}),
            Run(shift, False, 0.9, {**both, "portfolio_agreement": fine_agreement}),
        ]

    runs = runs_of("a", 0.50, 0.70) + runs_of("b", 0.55, 0.62) + runs_of("c", 0.64, 0.80)
    found = rates(runs, "portfolio_agreement", 0.65)  # warns on every poor run, and on b's fine
    assert (found["misses"], found["poor"], found["false_alarms"], found["not_poor"]) == (
        0,
        3,
        1,
        3,
    )
    assert best_threshold(runs[:4], "portfolio_agreement") == 0.56  # a and b alone: fewest errors
    held_out = leave_one_shift_out(runs, "portfolio_agreement")
    assert held_out["thresholds"]["c"] == 0.56 and held_out["misses"] == 1  # c's poor run: 0.64
    summary = summarize(runs)
    assert summary["kept_vs_consensus"]["in_use"]["all"]["misses"] == 3  # 0.95: never fires
    region = warnings_region(
        {
            "run": {
                "command": "python -m adaptflow.bench warnings",
                "machine": "CPU",
                "cpu_count": 2,
                "date": "2026-12-08",
                "seconds": 91,
            },
            "shifts": ["a", "b", "c"],
            "settings": {"overrides": ["adapt.epochs=5"], "seeds": [0]},
            "rule": "adapted_consensus",
            "portfolios": len(runs),
            "poor_below": 0.6,
            "warnings": summary,
        }
    )
    assert "| `portfolio_agreement` (fewest errors) |" in region and "1/3" in region
