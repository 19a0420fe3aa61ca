"""The great-expectations suite catches each kind of bad data and names the files."""

from __future__ import annotations

import shutil

import pytest

from adaptflow.core.errors import AdaptflowError
from adaptflow.core.params import ValidateParams, parse_params
from adaptflow.data.checks import conversions, render_checks_report, validate_manifest
from adaptflow.data.manifest import check_data_roots, scan_domains
from tests.helpers.toy import write_image

PARAMS = ValidateParams(min_per_class=3, min_side=8, max_side=64, max_pixels=10_000_000)


@pytest.fixture
def domains(tmp_path, make_domain):
    return make_domain(tmp_path / "src"), make_domain(tmp_path / "tgt")


def run(source, target, params=PARAMS):
    scan = scan_domains(source, target, params.max_pixels)
    return validate_manifest(scan.manifest(), scan.class_folders, params)


def failed(outcome) -> dict[str, list[str]]:
    return {c.name: c.failures for c in outcome.failed()}


def test_clean_data_passes_every_check(domains):
    outcome = run(*domains)
    assert outcome.success, failed(outcome)
    assert len(outcome.checks) == 7
    assert "PASSED" in render_checks_report(outcome)


def test_a_single_class_dataset_fails_in_source_train_and_target_test(tmp_path, make_domain):
    source = make_domain(tmp_path / "src", classes=("a",))
    target = make_domain(tmp_path / "tgt", classes=("a",))
    assert failed(run(source, target)) == {
        "the source train and target test splits each hold at least two classes": [
            "source/train: 1 class(es) with images (a); a classifier needs at least two",
            "target/test: 1 class(es) with images (a); a classifier needs at least two",
        ]
    }


def test_an_unreadable_file_fails_decoding_and_is_named(domains):
    source, target = domains
    bad = target / "test" / "b" / "001.png"
    bad.write_bytes(bad.read_bytes()[:50])
    outcome = run(source, target)
    failures = failed(outcome)
    assert len(failures["every image decodes"]) == 1
    assert failures["every image decodes"][0].startswith(f"{bad}: cannot be decoded")
    line = outcome.error_line("reports/validate.md")
    assert str(bad) in line and "\n" not in line


def test_a_target_class_unknown_to_the_source_fails(domains):
    source, target = domains
    for i in range(3):
        write_image(target / "test" / "zebra" / f"{i}.png", seed=1000 + i)
    failures = failed(run(source, target))
    assert "every class is a class of the source train split" in failures
    assert all("zebra" in f for f in failures["every class is a class of the source train split"])


def test_an_image_in_train_and_test_is_leakage(domains):
    source, target = domains
    shutil.copy(source / "train" / "a" / "000.png", target / "test" / "a" / "copy.png")
    failures = failed(run(source, target))
    [leak] = failures["no image is in both a train and a test split (leakage)"]
    assert "copy.png" in leak and "same bytes as" in leak and "src/train/a/000.png" in leak


def test_too_few_images_per_class_and_empty_classes_fail(domains):
    source, target = domains
    (target / "test" / "empty").mkdir()
    for path in list((source / "test" / "c").iterdir())[1:]:
        path.unlink()
    failures = failed(run(source, target))
    named = failures["each class has at least validate.min_per_class images"]
    assert any("source/test/c: 1 images" in f for f in named)
    assert any("target/test/empty: 0 images" in f for f in named)


def test_target_train_needs_no_minimum_since_its_labels_are_unused(domains):
    source, target = domains
    for path in list((target / "train" / "a").iterdir())[1:]:
        path.unlink()
    assert run(source, target).success


def test_images_outside_the_size_bounds_fail(domains):
    source, target = domains
    write_image(source / "train" / "a" / "big.png", seed=5000, size=80)
    failures = failed(run(source, target))
    assert any(
        "big.png (80x80)" in f for f in failures["image width within validate.min_side..max_side"]
    )


def test_the_report_lists_every_failure_under_its_check(domains):
    source, target = domains
    for i in range(3):
        (target / "test" / "a" / f"zero{i}.png").write_bytes(b"")
    report = render_checks_report(run(source, target))
    assert "FAILED" in report and "## FAIL: every image decodes" in report
    assert report.count("empty file (0 bytes)") == 3


def test_the_check_before_dvc_names_a_missing_root_but_not_one_demo_data_writes(in_tmp):
    params = parse_params({"data": {"source": "data/demo/mnist", "target": "mine"}})
    with pytest.raises(AdaptflowError, match=r"^data.target: mine does not exist; point it at"):
        check_data_roots(params)
    (in_tmp / "mine").write_text("a file")
    with pytest.raises(AdaptflowError, match=r"^data.target: mine is not a directory"):
        check_data_roots(params)
    (in_tmp / "mine").unlink()
    (in_tmp / "mine").mkdir()
    check_data_roots(params)  # data/demo/mnist is missing, but the demo_data stage writes it


def test_the_report_says_what_each_domain_is_converted_to(tmp_path, make_domain):
    source = make_domain(tmp_path / "src", size=16)
    target = make_domain(tmp_path / "tgt", size=16)
    for i, path in enumerate(sorted((target / "train").rglob("*.png"))[:4]):
        write_image(path, seed=1000 + i, size=32, mode="RGBA")  # 4 of 18 target images
    scan = scan_domains(source, target, PARAMS.max_pixels)
    manifest = scan.manifest()
    rows = {row["domain"]: row for row in conversions(manifest, image_size=16, channels=1)}
    assert rows["source"] == {
        "domain": "source",
        "sizes": "16x16 (27)",
        "modes": "L (27)",
        "becomes": "16x16 grey",
        "how": "as found",
    }
    assert rows["target"]["sizes"] == "16x16 (23), 32x32 (4)"
    assert rows["target"]["modes"] == "L (23), RGBA (4)"
    assert "resized to 16x16" in rows["target"]["how"]
    assert "converted to grey" in rows["target"]["how"]
    outcome = validate_manifest(manifest, scan.class_folders, PARAMS)
    report = render_checks_report(outcome, conversions(manifest, image_size=24, channels=3))
    assert "| source | 16x16 (27) | L (27) | 24x24 RGB | resized to 24x24" in report
