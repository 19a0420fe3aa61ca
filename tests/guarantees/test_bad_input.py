"""Bad input stops the stage that meets it: one line naming the file or param and what to do,
exit status 2, and every previous output intact.

A small project is built once by running every stage; each case copies it, breaks one thing,
and runs the stage that must refuse it.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml
from PIL import Image

from adaptflow.core import paths
from adaptflow.core.io import save_torch, sha256_file
from adaptflow.entry.stage import run_entry_point
from tests.helpers import ROOT
from tests.helpers.mounts import needs_mounts
from tests.helpers.stages import STAGES as STAGE_SCRIPTS
from tests.helpers.stages import load_stage
from tests.helpers.toy import write_image

STAGES = ["validate", "prepare", "pretrain", "adapt", "evaluate", "export"]
PARAMS = {
    "data": {"source": "src", "target": "tgt", "image_size": 16, "channels": 1},
    "validate": {"min_per_class": 3},
    "pretrain": {"epochs": 1, "steps_per_epoch": 3, "batch_size": 8},
    "adapt": {"method": "finetune", "epochs": 1, "steps_per_epoch": 2, "batch_size": 8},
    "selection": {"max_samples": 32},
    "export": {"latency_repeats": 1, "latency_batch_sizes": [1]},
}
# what a failed validation rewrites on purpose: the report and metrics describe the failure
DESCRIBES_FAILURE = {"reports/validate.md", "metrics/validate.json"}


def outputs_of(folder: Path, name: str) -> dict[str, bytes]:
    """Each file below `folder` and its bytes, keyed as `name/...`."""
    return {
        f"{name}/{path.relative_to(folder).as_posix()}": path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def outputs(project: Path) -> dict[str, bytes]:
    """Every pipeline output file and its bytes."""
    found = {}
    for folder in ("data/cache", "models", "metrics", "reports"):
        found.update(outputs_of(project / folder, folder))
    found["data/manifest.csv"] = (project / "data/manifest.csv").read_bytes()
    return found


def run(name: str, capsys) -> tuple[int, str]:
    """Run a stage in-process; return its exit status and what it printed on stderr."""
    capsys.readouterr()
    try:
        run_entry_point(load_stage(name).main, parse_arguments=False)
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    return status, capsys.readouterr().err


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("built")
    seeds = iter(range(1, 10**6))
    for domain in ("src", "tgt"):
        for split, count in (("train", 8), ("test", 4)):
            for label in ("a", "b", "c"):
                for i in range(count):
                    write_image(project / domain / split / label / f"{i:03d}.png", next(seeds))
    (project / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    here = Path.cwd()
    os.chdir(project)
    try:
        for name in STAGES:
            run_entry_point(load_stage(name).main, parse_arguments=False)
    finally:
        os.chdir(here)
    return project


@pytest.fixture
def project(built, tmp_path, monkeypatch) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(built, copy, symlinks=True)
    monkeypatch.chdir(copy)
    return copy


def set_param(project: Path, section: str, **values) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params.setdefault(section, {}).update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params))


def set_top_param(project: Path, **values) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    (project / "params.yaml").write_text(yaml.safe_dump({**params, **values}))


def truncated(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16), dtype=np.uint8)).save(
        buffer, fmt
    )
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


def unreadable(project: Path, monkeypatch) -> None:
    # chmod 000 does not stop root (CI runs as root), so the read itself is made to fail
    victim = (project / "tgt/test/a/000.png").resolve()
    real = os.open

    def refusing_open(path, *args, **kwargs):
        if Path(path).resolve() == victim:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)


def huge(project: Path) -> None:
    Image.new("L", (9000, 8000)).save(project / "src/train/a/huge.png")  # 72 Mpx, a few KB


def bad_weights(project: Path) -> None:
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), project / "resnet18.pth")
    set_param(
        project,
        "pretrain",
        mode="torchvision",
        backbone="resnet18",
        weights_file="resnet18.pth",
        weights_sha256="0" * 64,
    )


def weights_not_a_state_dict(project: Path) -> None:
    """A whole pickled model (torch.save(model)), hashed by the user: the hash matches."""
    torch.save(torch.nn.Linear(2, 2), project / "resnet18.pth")
    set_param(
        project,
        "pretrain",
        mode="torchvision",
        backbone="resnet18",
        weights_file="resnet18.pth",
        weights_sha256=sha256_file(project / "resnet18.pth"),
    )


def weights_file_a_fifo(project: Path) -> None:
    bad_weights(project)
    replace_with_fifo(project / "resnet18.pth")


def single_class(project: Path) -> None:
    for folder in project.glob("*/*/[bc]"):
        shutil.rmtree(folder)


def remove_images(project: Path) -> None:
    for path in project.glob("*/*/*/*.png"):
        path.unlink()


def label_every_target_train_image(project: Path) -> None:
    folders = sorted((project / "tgt/train").iterdir())
    fewest = min(len(list(folder.iterdir())) for folder in folders)
    for folder in folders:  # as many in each class, all of them labeled
        for extra in sorted(folder.iterdir())[fewest:]:
            extra.unlink()
    set_param(project, "adapt", target_labeled_per_class=fewest)


def replace_with_fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)  # opened for reading, it would wait for a writer forever


Fault = Callable[[Path], None]
CASES: list[tuple[str, str, Fault, str]] = [
    # (case, stage, fault, expected in the one-line error)
    (
        "zero-byte image",
        "validate",
        lambda p: (p / "tgt/test/a/000.png").write_bytes(b""),
        "tgt/test/a/000.png: empty file",
    ),
    (
        "truncated PNG",
        "validate",
        lambda p: (p / "tgt/test/a/000.png").write_bytes(truncated("PNG")),
        "tgt/test/a/000.png: cannot be decoded",
    ),
    (
        "truncated JPEG",
        "validate",
        lambda p: (p / "tgt/test/a/x.jpg").write_bytes(truncated("JPEG")),
        "tgt/test/a/x.jpg: cannot be decoded",
    ),
    (
        "text file named .png",
        "validate",
        lambda p: (p / "src/train/b/notes.png").write_text("hello"),
        "src/train/b/notes.png: not an image",
    ),
    (
        "directory named like an image",
        "validate",
        lambda p: (p / "src/train/b/folder.jpg").mkdir(),
        "folder.jpg: a directory named like an image",
    ),
    (
        "symlink leaving the data root",
        "validate",
        lambda p: os.symlink(p / "params.yaml", p / "tgt/train/c/link.png"),
        "link.png: a symlink to",
    ),
    ("decompression bomb (72 Mpx)", "validate", huge, "over validate.max_pixels"),
    ("missing split", "validate", lambda p: shutil.rmtree(p / "tgt/test"), "tgt/test is missing"),
    (
        "empty class folder",
        "validate",
        lambda p: (p / "src/test/d").mkdir(),
        "source/test/d: 0 images",
    ),
    (
        "target class unknown to the source",
        "validate",
        lambda p: [write_image(p / "tgt/test/zebra" / f"{i}.png", 900 + i) for i in range(3)],
        "(class 'zebra')",
    ),
    (
        "class below validate.min_per_class",
        "validate",
        lambda p: [f.unlink() for f in sorted((p / "src/test/b").iterdir())[1:]],
        "source/test/b: 1 images",
    ),
    (
        "same image in train and test",
        "validate",
        lambda p: shutil.copy(p / "src/train/a/000.png", p / "tgt/test/b/dup.png"),
        "dup.png (same bytes as",
    ),
    ("no images at all", "validate", remove_images, "no images found"),
    (
        "a single class",
        "validate",
        single_class,
        "source/train: 1 class(es) with images (a); a classifier needs at least two",
    ),
    (
        "symlink loop inside a data folder",
        "validate",
        lambda p: os.symlink("loop.png", p / "src/train/a/loop.png"),
        "src/train/a/loop.png: a symlink loop",
    ),
    (
        "data root that does not exist",
        "validate",
        lambda p: set_param(p, "data", target="tgt-renamed"),
        "data.target: tgt-renamed does not exist",
    ),
    (
        "image replaced by a non-image after validate",
        "prepare",
        lambda p: (p / "src/train/a/000.png").write_text("hello"),
        "src/train/a/000.png: changed since validate checked it",
    ),
    (
        "image removed after validate",
        "prepare",
        lambda p: (p / "tgt/test/c/003.png").unlink(),
        "tgt/test/c/003.png: cannot be read (No such file or directory)",
    ),
    (
        "FIFO named like an image in a class folder",
        "validate",
        lambda p: replace_with_fifo(p / "src/train/a/fifo.png"),
        "src/train/a/fifo.png: a FIFO (named pipe), not a regular file",
    ),
    (
        "image replaced by a FIFO after validate",
        "prepare",
        lambda p: replace_with_fifo(p / "src/train/a/000.png"),
        "src/train/a/000.png: cannot be read (a FIFO (named pipe), not a regular file)",
    ),
    (
        "a byte in params.yaml that is not UTF-8",
        "validate",
        lambda p: (p / "params.yaml").write_bytes(
            b"# caf\xe9\n" + (p / "params.yaml").read_bytes()
        ),
        "params.yaml: byte 0xe9 on line 1 is not UTF-8; save the file as UTF-8",
    ),
    (
        "every target train image labeled",
        "prepare",
        label_every_target_train_image,
        "takes every target train image, leaving none unlabeled to adapt on; set it to at most",
    ),
    (
        "a seed numpy cannot take",
        "pretrain",
        lambda p: set_top_param(p, seed=2**70),
        "seed: input should be less than or equal to 4294967295",
    ),
    (
        "an epoch count without a sane end",
        "adapt",
        lambda p: set_param(p, "adapt", epochs=10**20),
        "adapt.epochs: input should be less than or equal to 10000",
    ),
    (
        "unknown params key",
        "adapt",
        lambda p: set_param(p, "adapt", learning_rate=0.1),
        "adapt.learning_rate: unknown key",
    ),
    (
        "wrong params type",
        "adapt",
        lambda p: set_param(p, "adapt", epochs="ten"),
        "adapt.epochs: input should be a valid integer",
    ),
    (
        "negative learning rate",
        "adapt",
        lambda p: set_param(p, "adapt", lr=-0.01),
        "adapt.lr: input should be greater than 0",
    ),
    (
        "unknown method",
        "adapt",
        lambda p: set_param(p, "adapt", method="magic"),
        "adapt.method: unknown method 'magic'",
    ),
    (
        "bad method option",
        "adapt",
        lambda p: set_param(p, "adapt", dann={"trade_off": -1}),
        "adapt.dann.trade_off",
    ),
    (
        "unknown backbone",
        "pretrain",
        lambda p: set_param(p, "pretrain", backbone="resnet19"),
        "pretrain.backbone: unknown backbone 'resnet19'",
    ),
    (
        "batch larger than the data",
        "adapt",
        lambda p: set_param(p, "adapt", batch_size=500),
        "adapt.batch_size=500 is larger than the source train split",
    ),
    (
        "weights file with the wrong hash",
        "pretrain",
        bad_weights,
        "/project/resnet18.pth has sha256",
    ),
    (
        "weights file that is a FIFO",
        "pretrain",
        weights_file_a_fifo,
        "/resnet18.pth: a FIFO (named pipe), not a regular file; give a regular file",
    ),
    (
        "weights file that is a pickled model, not a state_dict",
        "pretrain",
        weights_not_a_state_dict,
        "pretrain.weights_file should be a state_dict of resnet18",
    ),
    (
        "demo.root outside the project",
        "demo_data",
        lambda p: set_param(p, "demo", root="/tmp"),
        "demo.root: /tmp resolves to /tmp, outside",
    ),
    (
        "unknown validator",
        "adapt",
        lambda p: set_param(p, "selection", validator="oracle"),
        "selection.validator: unknown validator 'oracle'",
    ),
]


@pytest.mark.parametrize(("case", "stage", "fault", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_in_one_line_leaving_outputs_intact(
    project, capsys, case, stage, fault, expected
):
    before = outputs(project)
    fault(project)
    status, stderr = run(stage, capsys)
    lines = [line for line in stderr.splitlines() if line.startswith("adaptflow error:")]
    assert status == 2, stderr
    assert len(lines) == 1 and expected in lines[0], stderr
    after = outputs(project)
    changed = {name for name in before if before[name] != after.get(name)}
    assert changed <= (DESCRIBES_FAILURE if stage == "validate" else set())
    assert not list(project.rglob("*.tmp"))


def test_an_unreadable_file_is_named(project, capsys, monkeypatch):
    unreadable(project, monkeypatch)
    status, stderr = run("validate", capsys)
    assert status == 2 and "tgt/test/a/000.png: permission denied" in stderr


def test_mixed_modes_sizes_and_rotations_are_handled_not_refused(project, capsys):
    folder = project / "src/train/a"
    Image.new("RGB", (30, 20), (200, 10, 10)).save(folder / "rgb.png")
    Image.new("RGBA", (17, 17), (0, 0, 0, 0)).save(folder / "rgba.png")
    Image.new("P", (24, 24)).save(folder / "palette.gif")
    Image.fromarray(np.full((20, 20), 40000, dtype=np.uint16)).save(folder / "deep.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("L", (40, 16), 255).save(folder / "rotated.jpg", exif=exif)
    assert run("validate", capsys)[0] == 0
    assert run("prepare", capsys)[0] == 0
    cache = torch.load(project / "data/cache/source_train.pt", weights_only=True)
    assert cache["images"].shape[1:] == (1, 16, 16)


# ---- the resumable training state (adaptflow/training/checkpoints.py) ----


def test_a_corrupt_resume_checkpoint_is_set_aside_and_training_restarts(project, capsys, caplog):
    state = project / paths.CHECKPOINTS / "adapt/state.pt"
    save_torch(state, {"epoch": 1, "method": {"w": torch.zeros(1000)}})
    state.write_bytes(state.read_bytes()[:500])  # a disk that filled up, a copy cut short
    corrupt = state.read_bytes()
    with caplog.at_level(logging.WARNING):
        status, stderr = run("adapt", capsys)
    assert status == 0, stderr
    kept = list((project / paths.CHECKPOINTS).glob("adapt.unreadable-*/state.pt"))
    assert len(kept) == 1 and kept[0].read_bytes() == corrupt  # kept for inspection
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(kept[0].parent.relative_to(project)) in w for w in warnings), warnings
    assert (project / "models/adapted.pt").is_file() and not state.exists()


# ---- system errors: a real full or read-only file system, in a private mount namespace ----


def run_stage_script(project: Path, stage: str, inside: str = "") -> subprocess.CompletedProcess:
    """Run stages/<stage>.py as DVC does; with `inside`, in a mount namespace that shell
    prepares (`STAGE` runs the stage; the script's status is the shell's)."""
    stage_command = f"{sys.executable} {STAGE_SCRIPTS / f'{stage}.py'}"
    command = ["unshare", "-m", "sh", "-c", inside.replace("STAGE", stage_command)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ADAPTFLOW_LOG_LEVEL": "INFO"}
    return subprocess.run(
        command if inside else stage_command.split(),
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("adaptflow error:")]


@needs_mounts
def test_a_full_disk_while_writing_models_is_one_line_and_the_rerun_resumes(project, tmp_path):
    set_param(project, "adapt", epochs=2)
    before = outputs(project)
    shutil.copytree(project / "models", tmp_path / "models-before")
    full_models = (
        "mount -t tmpfs -o size=4m tmpfs models && cp -a {before}/. models/ && "
        "{{ dd if=/dev/zero of=models/filler bs=64k 2>/dev/null; true; }} && "
        "STAGE; status=$?; rm models/filler; cp -a models/. {after}; exit $status"
    ).format(before=tmp_path / "models-before", after=tmp_path / "models-after")
    failed = run_stage_script(project, "adapt", inside=full_models)
    lines = error_lines(failed.stderr)
    assert failed.returncode == 2 and len(lines) == 1, failed.stderr
    assert "models/selection/" in lines[0] and "no space left on the device" in lines[0]
    after = {**outputs(project), **outputs_of(tmp_path / "models-after", "models")}
    assert after == before  # the models the full disk held, and every other output

    rerun = run_stage_script(project, "adapt")  # space freed (outside the namespace)
    assert rerun.returncode == 0, rerun.stderr
    assert "adapt: resuming after epoch 2" in rerun.stderr  # the finished training is kept
    assert "adapt epoch" not in rerun.stderr  # and not one epoch trained again


@needs_mounts
def test_a_read_only_models_folder_is_one_line_naming_the_file(project):
    before = outputs(project)
    read_only = "mount --bind models models && mount -o remount,ro,bind models && STAGE"
    failed = run_stage_script(project, "export", inside=read_only)
    lines = error_lines(failed.stderr)
    assert failed.returncode == 2 and len(lines) == 1, failed.stderr
    assert lines[0].startswith("adaptflow error: models/model.onnx: the file system is read-only")
    assert outputs(project) == before
