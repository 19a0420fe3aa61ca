"""The measured figures of README.md and docs/ are rendered from the committed results files,
and agree with them: render every page in memory from results/ and compare it with the file.
The pages' links hold too: MkDocs builds docs/ with --strict, and the README's links resolve."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from adaptflow.bench.docs import REGIONS, Region, pages, render, render_pages, stale_regions
from adaptflow.core.errors import AdaptflowError
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
README_LINES = 250  # a quickstart; the manual is docs/


def page_of(name: str) -> Path:
    """The page that shows region `name`."""
    return next(p for p in pages(ROOT) if f"<!-- results: {name} -->" in p.read_text())


def committed_results() -> list[Path]:
    """The results files git tracks (or, outside a git checkout, every one under results/)."""
    listed = subprocess.run(
        ["git", "ls-files", "results"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    files = [ROOT / name for name in listed] or list((ROOT / "results").rglob("*"))
    return [path for path in files if path.suffix == ".json"]


def test_the_figures_of_every_page_are_the_ones_the_results_files_hold():
    for path, (text, rendered) in render_pages(ROOT).items():
        stale = stale_regions(text, rendered)
        assert rendered == text, f"{path}: run `make results-docs`; stale regions: {stale}"


def test_every_committed_results_file_is_shown_in_the_docs():
    shown = {path for region in REGIONS.values() for path in region.files(ROOT)}
    assert committed_results() and set(committed_results()) <= shown


def test_the_readme_is_a_quickstart_and_its_links_resolve():
    assert len(README.splitlines()) <= README_LINES
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    local = [link for link in links if "://" not in link]
    assert local, "the README links to the manual"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def mkdocs_build(cwd: Path, site: Path) -> subprocess.CompletedProcess:
    """`mkdocs build --strict` of the manual in `cwd` (what `make docs` runs)."""
    command = [str(Path(sys.executable).parent / "mkdocs"), "build", "--strict"]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [*command, "--site-dir", str(site)], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_the_manual_builds_with_every_link_and_anchor_checked(tmp_path):
    result = mkdocs_build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "architecture" / "index.html").is_file()


def test_a_broken_anchor_fails_the_build(tmp_path):
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path)
    with (tmp_path / "docs" / "index.md").open("a") as page:
        page.write("\n[a section that is not there](results.md#no-such-section)\n")
    result = mkdocs_build(tmp_path, tmp_path / "site")
    assert result.returncode != 0 and "no-such-section" in result.stderr


# per region, one figure its file holds and its page shows: the planted bug changes it (for a
# region of several files, in each file that holds it)
PLANTED = {
    "summary": ("metrics", "evaluate", "target_accuracy"),
    "demo": ("metrics", "evaluate", "target_accuracy"),
    "methods": ("rows", 0, "target_accuracy"),
    "rank": ("taus", 0, "p"),
    "stage-timings": ("stages", 0, "seconds"),
    "throughput": ("engine_images_per_second",),
    "predict": ("batches", 0, "predict_images_per_second"),
    "ddp": ("cases", 0, "max_weight_diff"),
    "shifts": ("shifts", "demo", "seeds", "0", "target_accuracy", "source_only"),
    "shifts-longer": ("shifts", "demo", "seeds", "0", "target_accuracy", "source_only"),
    "rungs": ("shifts", "demo", "0", "budgeted", "regret"),
    "rungs-longer": ("shifts", "demo", "0", "budgeted", "regret"),
    "labels": ("mean_regret", "active", 3),
    "warnings": ("warnings", "portfolio_agreement", "in_use", "all", "false_alarms"),
}


def test_every_region_has_a_planted_figure():
    assert set(PLANTED) == set(REGIONS)


@pytest.mark.parametrize("name", sorted(REGIONS))
def test_a_changed_figure_makes_its_region_stale(name, tmp_path):
    """The planted bug for the agreement test: one figure changed behind the page's back."""
    shutil.copytree(ROOT / "results", tmp_path / "results")
    *parents, leaf = PLANTED[name]
    planted = 0
    for path in REGIONS[name].files(tmp_path):
        results = json.loads(path.read_text())
        node = results
        try:
            for key in parents:
                node = node[key]
        except (KeyError, IndexError):
            continue  # a region of several files: the figure is in one of them
        node[leaf] = node[leaf] / 2 + 0.1234
        path.write_text(json.dumps(results))
        planted += 1
    assert planted
    page = page_of(name).read_text()
    assert name in stale_regions(page, render(page, tmp_path))


@pytest.mark.parametrize("name", sorted(REGIONS))
def test_a_changed_run_record_makes_its_region_stale(name, tmp_path):
    """The provenance a region shows comes from its file too (or says it was not recorded)."""
    shutil.copytree(ROOT / "results", tmp_path / "results")
    for path in REGIONS[name].files(tmp_path):
        results = json.loads(path.read_text())
        if results.get("run") is None:  # the region says so; recording one must change it
            results["run"] = json.loads((ROOT / "results/rank.json").read_text())["run"]
        results["run"]["date"] = "1999-12-31T00:00:00+00:00"
        path.write_text(json.dumps(results))
    page = page_of(name).read_text()
    assert name in stale_regions(page, render(page, tmp_path))


def region_body(name: str) -> str:
    page = page_of(name).read_text()
    start = page.index(f"<!-- results: {name} -->")
    return page[start : page.index("<!-- /results -->", start)]


def test_the_shift_regions_headline_regret_is_the_files_worked_by_hand():
    """An independent reading of results/shifts.json: the default auto's mean regret within
    its portfolio, computed here from the raw per-seed records, is the one the docs show."""
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
    page = "intro 7.0\n<!-- results: a -->\nold 2.0\n<!-- /results -->\nend\n"
    rendered = render(page, tmp_path, fake_regions(tmp_path))
    assert rendered == "intro 7.0\n<!-- results: a -->\nfigure 1.5\n<!-- /results -->\nend\n"
    assert stale_regions(page, rendered) == ["a"] and stale_regions(rendered, rendered) == []


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ("<!-- results: b -->\nx\n<!-- /results -->\n", "no renderer in adaptflow/bench/docs"),
        ("<!-- results: a -->\nx\n", "marker without its pair"),
    ],
)
def test_a_region_without_a_renderer_or_a_pair_is_an_error(tmp_path, page, message):
    with pytest.raises(AdaptflowError, match=message):
        render(page, tmp_path, fake_regions(tmp_path))


@pytest.mark.parametrize(
    ("readme", "manual", "message"),
    [
        ("nothing here\n", "nor here\n", "registered regions in no page: a"),
        (
            "<!-- results: a -->\n<!-- /results -->\n",
            "<!-- results: a -->\n<!-- /results -->\n",
            "written more than once: a",
        ),
    ],
)
def test_each_region_is_in_exactly_one_page(tmp_path, readme, manual, message):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(readme)
    (tmp_path / "docs" / "index.md").write_text(manual)
    with pytest.raises(AdaptflowError, match=message):
        render_pages(tmp_path, fake_regions(tmp_path))


def test_a_missing_results_file_is_named(tmp_path):
    regions = {"a": Region("results/none.json", str), "b": Region("results/*.json", str)}
    for name in regions:
        with pytest.raises(AdaptflowError, match="results/(none|\\*).json"):
            regions[name].load(tmp_path)


def test_the_command_rewrites_stale_figures_and_check_then_passes(tmp_path):
    shutil.copytree(ROOT / "results", tmp_path / "results")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "README.md", tmp_path)
    results_page = tmp_path / "docs" / "results.md"
    fresh = results_page.read_text(encoding="utf-8")
    stale = fresh.replace("<!-- results: methods -->\n", "<!-- results: methods -->\nstale\n")
    results_page.write_text(stale, encoding="utf-8")

    def docs_command(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "adaptflow.bench.docs", "--root", str(tmp_path)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.run([*command, *args], capture_output=True, text=True, env=env)

    checked = docs_command("--check")
    assert checked.returncode == 1 and "docs/results.md: methods;" in checked.stdout
    assert docs_command().returncode == 0
    assert results_page.read_text(encoding="utf-8") == fresh
    assert docs_command("--check").returncode == 0


@pytest.mark.parametrize("path", committed_results(), ids=lambda p: p.name)
def test_every_results_file_records_its_command_date_machine_and_commit(path):
    run = json.loads(path.read_text())["run"]
    assert run["command"].startswith(("python ", "adaptflow ")), run["command"]
    assert run["date"].endswith("+00:00") and run["machine"] and run["seconds"] > 0
    assert len(run["commit"]) == 40 and isinstance(run["uncommitted_changes"], bool)
