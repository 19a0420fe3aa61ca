"""README.md's measured figures are rendered from the committed results files, and agree with
them: render the README in memory from results/ and compare it with the file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from adaptflow.bench.readme import REGIONS, Region, render, stale_regions
from adaptflow.errors import AdaptflowError

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def committed_results() -> list[Path]:
    """The results files git tracks (or, outside a git checkout, every one under results/)."""
    listed = subprocess.run(
        ["git", "ls-files", "results"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    files = [ROOT / name for name in listed] or list((ROOT / "results").rglob("*"))
    return [path for path in files if path.suffix == ".json"]


def test_the_readme_figures_are_the_ones_the_results_files_hold():
    rendered = render(README, ROOT)
    stale = stale_regions(README, rendered)
    assert rendered == README, f"run `make results-readme`; stale regions: {stale}"


def test_every_committed_results_file_is_shown_in_the_readme():
    shown = {path for region in REGIONS.values() for path in ROOT.glob(region.source)}
    assert committed_results() and set(committed_results()) <= shown


# per region, one figure its file holds and README.md shows: the planted bug changes it
PLANTED = {
    "demo": ("metrics", "evaluate", "target_accuracy"),
    "methods": ("rows", 0, "target_accuracy"),
    "rank": ("taus", 0, "p"),
    "stage-timings": ("stages", 0, "seconds"),
    "throughput": ("engine_images_per_second",),
    "predict": ("batches", 0, "predict_images_per_second"),
    "ddp": ("cases", 0, "max_weight_diff"),
    "shifts": ("shifts", "demo", "seeds", "0", "target_accuracy", "source_only"),
    "shifts-longer": ("shifts", "demo", "seeds", "0", "target_accuracy", "source_only"),
}


def test_every_region_has_a_planted_figure():
    assert set(PLANTED) == set(REGIONS)


@pytest.mark.parametrize("name", sorted(REGIONS))
def test_a_changed_figure_makes_its_region_stale(name, tmp_path):
    """The planted bug for the agreement test: one figure changed behind the README's back."""
    shutil.copytree(ROOT / "results", tmp_path / "results")
    files = sorted(tmp_path.glob(REGIONS[name].source))
    assert files, REGIONS[name].source
    *parents, leaf = PLANTED[name]
    for path in files:
        results = json.loads(path.read_text())
        node = results
        for key in parents:
            node = node[key]
        node[leaf] = node[leaf] / 2 + 0.1234
        path.write_text(json.dumps(results))
    assert name in stale_regions(README, render(README, tmp_path))


@pytest.mark.parametrize("name", sorted(REGIONS))
def test_a_changed_run_record_makes_its_region_stale(name, tmp_path):
    """The provenance a region shows comes from its file too (or says it was not recorded)."""
    shutil.copytree(ROOT / "results", tmp_path / "results")
    for path in sorted(tmp_path.glob(REGIONS[name].source)):
        results = json.loads(path.read_text())
        if results.get("run") is None:  # the region says so; recording one must change it
            results["run"] = json.loads((ROOT / "results/rank.json").read_text())["run"]
        results["run"]["date"] = "1999-12-31T00:00:00+00:00"
        path.write_text(json.dumps(results))
    assert name in stale_regions(README, render(README, tmp_path))


def region_body(name: str) -> str:
    start = README.index(f"<!-- results: {name} -->")
    return README[start : README.index("<!-- /results -->", start)]


def test_the_shift_regions_headline_regret_is_the_files_worked_by_hand():
    """An independent reading of results/shifts.json: the default auto's mean regret within
    its portfolio, computed here from the raw per-seed records, is the one README.md shows."""
    results = json.loads((ROOT / "results/shifts.json").read_text())
    rule, per_shift = results["default_rule"], []
    for shift in results["shifts"].values():
        regrets = []
        for seed in shift["seeds"].values():
            accuracy, portfolio = seed["target_accuracy"], seed["portfolio"]
            regrets.append(
                accuracy[portfolio["oracle"]] - accuracy[portfolio["rules"][rule]["pick"]]
            )
        per_shift.append(100 * sum(regrets) / len(regrets))
    mean = sum(per_shift) / len(per_shift)
    body = region_body("shifts")
    assert f"| **{mean:.1f}** |" in body
    assert f"mean regret is {mean:.1f} points within its portfolio" in " ".join(body.split())


def fake_regions(tmp_path: Path) -> dict[str, Region]:
    (tmp_path / "a.json").write_text(json.dumps({"figure": 1.5}))
    return {"a": Region("a.json", lambda results: f"figure {results['figure']}")}


def test_a_region_body_is_replaced_and_the_rest_kept(tmp_path):
    readme = "intro 7.0\n<!-- results: a -->\nold 2.0\n<!-- /results -->\nend\n"
    rendered = render(readme, tmp_path, fake_regions(tmp_path))
    assert rendered == "intro 7.0\n<!-- results: a -->\nfigure 1.5\n<!-- /results -->\nend\n"
    assert stale_regions(readme, rendered) == ["a"] and stale_regions(rendered, rendered) == []


@pytest.mark.parametrize(
    ("readme", "message"),
    [
        ("<!-- results: b -->\nx\n<!-- /results -->\n", "no renderer in adaptflow/bench/readme"),
        ("nothing here\n", "registered regions missing from README.md: a"),
        ("<!-- results: a -->\nx\n", "marker without its pair"),
        ("<!-- results: a -->\n<!-- /results -->\n" * 2, "written more than once: a"),
    ],
)
def test_a_region_without_a_file_or_a_renderer_is_an_error(tmp_path, readme, message):
    with pytest.raises(AdaptflowError, match=message):
        render(readme, tmp_path, fake_regions(tmp_path))


def test_a_missing_results_file_is_named(tmp_path):
    regions = {"a": Region("results/none.json", str), "b": Region("results/*.json", str)}
    for name in regions:
        with pytest.raises(AdaptflowError, match="results/(none|\\*).json"):
            regions[name].load(tmp_path)


def test_the_command_rewrites_stale_figures_and_check_then_passes(tmp_path):
    shutil.copytree(ROOT / "results", tmp_path / "results")
    stale = README.replace("<!-- results: methods -->\n", "<!-- results: methods -->\nstale\n")
    (tmp_path / "README.md").write_text(stale, encoding="utf-8")

    def readme_command(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "adaptflow.bench.readme", "--root", str(tmp_path)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.run([*command, *args], capture_output=True, text=True, env=env)

    checked = readme_command("--check")
    assert checked.returncode == 1 and "stale in: methods;" in checked.stdout
    assert readme_command().returncode == 0
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == README
    assert readme_command("--check").returncode == 0


@pytest.mark.parametrize("path", committed_results(), ids=lambda p: p.name)
def test_every_results_file_records_its_command_date_machine_and_commit(path):
    run = json.loads(path.read_text())["run"]
    assert run["command"].startswith(("python ", "adaptflow ")), run["command"]
    assert run["date"].endswith("+00:00") and run["machine"] and run["seconds"] > 0
    assert len(run["commit"]) == 40 and isinstance(run["uncommitted_changes"], bool)
