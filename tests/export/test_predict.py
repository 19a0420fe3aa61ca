"""`adaptflow predict`: an exported model alone classifies files the way evaluation scores them."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from adaptflow.data.images import DECODING, load_image
from adaptflow.entry.command import main
from adaptflow.entry.predict_command import predict_command, usable_cpus
from adaptflow.export import predict as predict_module
from adaptflow.export.onnx import PREPROCESSING_KEY, export_onnx, metadata
from adaptflow.export.predict import MAX_PIXELS, find_images, load_model
from adaptflow.models.classifier import Classifier
from tests.helpers import ROOT
from tests.helpers.mounts import needs_mounts
from tests.helpers.toy import toy_spec, write_image


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Classifier, Path]:
    torch.manual_seed(0)
    model = Classifier(toy_spec(bottleneck_dim=8, mean=0.4)).eval()
    path = tmp_path_factory.mktemp("model") / "model.onnx"
    export_onnx(model, path, opset=18, props=metadata(model, {"method": "x"}))
    return model, path


@pytest.fixture
def folder(tmp_path) -> Path:
    """An ImageFolder tree of the model's classes, in sizes and modes that need converting."""
    root = tmp_path / "images"
    for i in range(6):
        write_image(root / "left" / f"{i}.png", seed=i, size=16 + 4 * i, mode=("L", "RGB")[i % 2])
        write_image(root / "right" / f"{i}.png", seed=50 + i, size=24, mode=("RGBA", "L")[i % 2])
    return root


def torch_predictions(model: Classifier, files: list[Path]) -> list[str]:
    """What evaluate computes: the pipeline's decoding, then the PyTorch model."""
    spec = model.spec
    pixels = [load_image(f.read_bytes(), spec.channels, spec.image_size, MAX_PIXELS) for f in files]
    images = torch.from_numpy(np.stack(pixels)).float() / 255
    with torch.inference_mode():
        return [spec.classes[i] for i in model(images).argmax(1).tolist()]


def predict(capsys, *args: str) -> tuple[str, str]:
    predict_command(list(args), "adaptflow predict")
    captured = capsys.readouterr()
    return captured.out, captured.err


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_model_file_records_classes_in_output_order_and_the_whole_preprocessing(exported):
    _, path = exported
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    recipe = json.loads(props[PREPROCESSING_KEY])
    assert json.loads(props["classes"]) == ["left", "right"]
    assert recipe["decoding"] == DECODING and recipe["channels"] == 1 and recipe["size"] == 16
    assert "bilinear" in recipe["resize"] and "centre crop" in recipe["resize"]
    assert "grey" in recipe["colour"] and "onto black" in recipe["alpha"]
    assert "EXIF" in recipe["decoder"] and "inside the graph" in recipe["normalisation"]


def test_predictions_match_pytorch_on_the_pipelines_decoding_and_give_accuracy(
    exported, folder, capsys
):
    model, path = exported
    out, err = predict(capsys, str(folder), "-m", str(path), "-b", "5", "-k", "2")
    predicted = rows(out)
    files = sorted(folder.rglob("*.png"))
    assert [Path(r["path"]) for r in predicted] == files
    expected = torch_predictions(model, files)
    assert [r["predicted"] for r in predicted] == expected
    assert all(r["label"] == f.parent.name for r, f in zip(predicted, files, strict=True))
    correct = sum(e == f.parent.name for e, f in zip(expected, files, strict=True))
    assert f"accuracy {correct / len(files):.4f} ({correct} of 12 images in class folders)" in err
    for r in predicted:
        top = [pair.split(":") for pair in r["top_k"].split()]
        assert [name for name, _ in top][0] == r["predicted"] and len(top) == 2
        assert sum(float(p) for _, p in top) == pytest.approx(1.0, abs=1e-3)
        assert float(r["confidence"]) == pytest.approx(float(top[0][1]), abs=1e-4)
    assert "img/s" in err


def test_unreadable_files_are_listed_and_the_rest_still_predicted(exported, folder, capsys):
    _, path = exported
    whole = write_image(folder / "left" / "broken.png", seed=99, size=40).read_bytes()
    (folder / "left" / "broken.png").write_bytes(whole[: len(whole) // 3])  # truncated
    (folder / "right" / "empty.jpg").write_bytes(b"")
    out, err = predict(capsys, str(folder), "-m", str(path))
    by_path = {Path(r["path"]).relative_to(folder).as_posix(): r for r in rows(out)}
    assert len(by_path) == 14 and by_path["left/broken.png"]["predicted"] == ""
    assert "cannot be decoded" in by_path["left/broken.png"]["error"]
    assert by_path["right/empty.jpg"]["error"] == "empty file (0 bytes)"
    assert sum(bool(r["predicted"]) for r in by_path.values()) == 12
    assert "2 files could not be read" in err and "left/broken.png: cannot be decoded" in err
    assert "of 12 images in class folders" in err  # unreadable files are not scored


def test_json_output_is_written_atomically_with_the_summary(exported, folder, tmp_path, capsys):
    _, path = exported
    output = tmp_path / "out" / "predictions.json"
    out, err = predict(
        capsys,
        str(folder / "left"),
        str(folder / "right" / "0.png"),
        "-m",
        str(path),
        "-o",
        str(output),
    )
    document = json.loads(output.read_text())
    assert out == "" and f"written to {output}" in err
    assert document["images"] == 7 and document["unreadable"] == 0
    assert document["accuracy"] is None  # a folder of loose images: no class folders, no labels
    first = document["predictions"][0]
    assert set(first) == {"path", "predicted", "confidence", "top_k", "label", "error"}
    assert [t["class"] for t in first["top_k"]][0] == first["predicted"]
    assert list(output.parent.iterdir()) == [output]


def test_globs_folders_and_files_are_collected_once_each(folder):
    classes = ["left", "right"]
    found = find_images(
        [str(folder / "left" / "*.png"), str(folder / "left" / "1.png"), str(folder)], classes
    )
    assert len(found) == 12 and len({f.path for f in found}) == 12
    assert all(f.label == f.path.parent.name for f in found)  # the folder named their classes
    inside = find_images([str(folder / "*")], classes)  # a glob matching the class folders:
    assert len(inside) == 12 and {f.label for f in inside} == {None}  # loose images each
    with pytest.raises(Exception, match=r"nothing\*\.png: no image files there"):
        find_images([str(folder / "nothing*.png")], classes)


def user_error(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as stopped:
        predict_command(list(args), "adaptflow predict")
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("adaptflow error: ")
    return err[0]


def test_bad_input_stops_with_one_line_and_writes_nothing(exported, folder, tmp_path, capsys):
    _, path = exported
    output = tmp_path / "p.csv"
    assert "no such model file" in user_error(capsys, str(folder), "-m", "missing.onnx")
    assert "no image files there" in user_error(capsys, "no/such/dir", "-m", str(path))
    assert "name a .csv or .json file" in user_error(
        capsys, str(folder), "-m", str(path), "-o", str(tmp_path / "p.txt")
    )
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"nope")
    message = user_error(capsys, str(junk), "-m", str(path), "-o", str(output))
    assert "none of the 1 files could be read" in message and not output.exists()


def test_a_model_without_adaptflow_metadata_or_with_other_preprocessing_is_refused(
    exported, folder, tmp_path, capsys
):
    model, path = exported
    bare = tmp_path / "bare.onnx"
    export_onnx(model, bare, opset=18, props={})
    assert "has no adaptflow class names or preprocessing" in user_error(
        capsys, str(folder), "-m", str(bare)
    )
    graph = onnx.load(str(path))
    props = {p.key: p.value for p in graph.metadata_props}
    recipe = json.loads(props[PREPROCESSING_KEY])
    recipe["decoding"] = "someone-else/2"  # e.g. a later version that resizes differently
    onnx.helper.set_model_props(graph, {**props, PREPROCESSING_KEY: json.dumps(recipe)})
    other = tmp_path / "other.onnx"
    onnx.save(graph, str(other))
    with pytest.raises(Exception, match="another preprocessing \\('someone-else/2'"):
        load_model(other)


def test_a_copy_of_the_model_file_alone_is_enough(exported, folder, tmp_path, capsys):
    _, path = exported
    alone = tmp_path / "elsewhere" / "m.onnx"
    alone.parent.mkdir()
    shutil.copy(path, alone)
    out, _ = predict(capsys, str(folder), "-m", str(alone))
    assert len(rows(out)) == 12


def test_the_predict_benchmark_prints_img_per_second_per_batch_size(exported, folder, capsys):
    _, path = exported
    main(
        ["bench", "predict", "--model", str(path), "--images", str(folder)]
        + ["--batch", "1", "5", "--repeats", "1"]
    )
    out = capsys.readouterr().out
    rates = re.findall(r"batch +(\d+): predict +(\d+) img/s .* onnxruntime alone +(\d+) img/s", out)
    assert [batch for batch, _, _ in rates] == ["1", "5"]
    assert all(int(whole) > 0 and int(alone) > 0 for _, whole, alone in rates)
    assert "12 files from" in out and "device: CPU" in out


# ---- the robustness of `adaptflow predict`: one line, exit status 2, nothing half-written ----


def with_metadata(path: Path, copy: Path, classes: list[str] | None = None, **recipe) -> Path:
    """A copy of the exported model whose metadata says other classes or preprocessing."""
    graph = onnx.load(str(path))
    props = {p.key: p.value for p in graph.metadata_props}
    props[PREPROCESSING_KEY] = json.dumps({**json.loads(props[PREPROCESSING_KEY]), **recipe})
    if classes is not None:
        props["classes"] = json.dumps(classes)
    onnx.helper.set_model_props(graph, props)
    onnx.save(graph, str(copy))
    return copy


def test_a_model_whose_metadata_disagrees_with_its_graph_is_refused_saying_which(
    exported, folder, tmp_path, capsys
):
    _, path = exported  # its graph takes (batch, 1, 16, 16) and scores 2 classes
    reexport = "; re-export it with `dvc repro export`"
    cases = {
        "size.onnx": ({"size": 32}, "its metadata says 32x32 images but its graph takes 16x16"),
        "rgb.onnx": (
            {"channels": 3},
            "its metadata says 3-channel images but its graph takes 1-channel ones",
        ),
        "classes.onnx": (
            {"classes": ["a", "b", "c"]},
            "its metadata names 3 classes but its graph scores 2",
        ),
    }
    for name, (changes, says) in cases.items():
        model = with_metadata(path, tmp_path / name, **changes)
        message = user_error(capsys, str(folder), "-m", str(model))
        assert message == f"adaptflow error: {model}: {says}{reexport}"


def predict_process(*args: str, cwd: Path, prefix: tuple[str, ...] = ()):
    """`python -m adaptflow predict ARGS` as a user runs it, after `prefix` (a sandbox); a hang
    fails the test after two minutes instead of blocking the suite."""
    command = [*prefix, sys.executable, "-m", "adaptflow", "predict", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("adaptflow error: ") and "Traceback" not in result.stderr
    return lines[0]


def test_fifos_sockets_and_devices_are_listed_unopened_whether_named_globbed_or_in_a_folder(
    exported, folder, monkeypatch
):
    _, path = exported
    os.mkfifo(folder / "left" / "pipe.png")
    monkeypatch.chdir(folder / "left")  # a socket's path must be short: bind it relative
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("sock.png")
    model = ("-m", str(path))
    root = folder.parent

    alone = predict_process("images/left/pipe.png", *model, cwd=root)
    assert one_error_line(alone) == (
        "adaptflow error: none of the 1 files could be read as an image (first: "
        "images/left/pipe.png: a FIFO (named pipe), not a regular file; skipped without opening it)"
    )

    for inputs in (["images/left/*.png", "/dev/null"], ["images"]):
        mixed = predict_process(*inputs, *model, "-o", "out.csv", cwd=root)
        assert mixed.returncode == 0, mixed.stderr
        errors = {r["path"]: r["error"] for r in rows((root / "out.csv").read_text())}
        special = {
            "images/left/pipe.png": "a FIFO (named pipe)",
            "images/left/sock.png": "a socket",
            **({"/dev/null": "a character device"} if "/dev/null" in inputs else {}),
        }
        assert {p for p, e in errors.items() if e} == set(special)
        for file, kind in special.items():
            assert errors[file] == f"{kind}, not a regular file; skipped without opening it"
            assert f"  {file}: {kind}, not a regular file" in mixed.stderr  # the summary's list
        assert f"{len(special)} files could not be read" in mixed.stderr


def test_an_output_that_is_a_folder_or_under_a_file_is_refused_before_the_model_loads(
    exported, folder, tmp_path, capsys, monkeypatch
):
    _, path = exported
    monkeypatch.setattr(predict_module, "load_model", lambda *a: pytest.fail("model loaded"))
    (tmp_path / "taken.csv").mkdir()
    (tmp_path / "file").write_text("a file, not a folder")
    before = sorted(tmp_path.rglob("*"))
    folder_output, under_file = tmp_path / "taken.csv", tmp_path / "file" / "sub" / "p.csv"
    assert user_error(capsys, str(folder), "-m", str(path), "-o", str(folder_output)) == (
        f"adaptflow error: -o {folder_output}: is a folder; name a .csv or .json file to write"
    )
    assert user_error(capsys, str(folder), "-m", str(path), "-o", str(under_file)) == (
        f"adaptflow error: -o {under_file}: {tmp_path / 'file'} is not a folder; pass another -o"
    )
    assert sorted(tmp_path.rglob("*")) == before


def without_root_override() -> tuple[str, ...]:
    """A prefix under which permissions apply: root drops its capability to override them."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("root without setpriv: chmod cannot forbid writing")
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all")


def test_a_forbidden_output_folder_is_one_line_naming_the_output(exported, folder):
    _, path = exported
    locked = folder.parent / "locked"
    locked.mkdir(mode=0o555)
    forbidden = without_root_override()
    result = predict_process(
        "images", "-m", str(path), "-o", "locked/p.csv", cwd=folder.parent, prefix=forbidden
    )
    assert one_error_line(result) == (
        "adaptflow error: -o locked/p.csv: permission denied; give the user running the "
        "pipeline access to it, then rerun"
    )
    assert list(locked.iterdir()) == []


def in_mount_namespace(script: str) -> tuple[str, ...]:
    """A prefix running the command after `script` (mounts), in a private mount namespace;
    stdout gets `ls -A out` as the namespace saw it, the status is the command's."""
    return ("unshare", "-m", "sh", "-c", f'{script} && "$@"; s=$?; ls -A out; exit $s', "sh")


@needs_mounts
def test_a_read_only_output_folder_is_refused_before_inference(exported, folder):
    _, path = exported
    (folder.parent / "out").mkdir()
    read_only = in_mount_namespace("mount --bind out out && mount -o remount,ro,bind out out")
    result = predict_process(
        "images", "-m", str(path), "-o", "out/p.csv", cwd=folder.parent, prefix=read_only
    )
    assert one_error_line(result) == (
        "adaptflow error: -o out/p.csv: the file system is read-only; make it writable "
        "(or run in a writable copy)"
    )
    assert result.stdout == ""  # `ls -A out`: nothing written, not even the check's probe


@needs_mounts
def test_a_disk_that_fills_up_while_writing_the_output_leaves_no_partial_file(exported, folder):
    _, path = exported
    (folder.parent / "out").mkdir()
    full = in_mount_namespace(
        "mount -t tmpfs -o size=64k tmpfs out && "
        "{ dd if=/dev/zero of=out/filler bs=4k 2>/dev/null; true; }"
    )  # empty files still fit (the check before inference passes); the predictions do not
    result = predict_process(
        "images", "-m", str(path), "-o", "out/p.csv", cwd=folder.parent, prefix=full
    )
    assert one_error_line(result).startswith(
        "adaptflow error: -o out/p.csv: no space left on the device"
    )
    assert result.stdout == "filler\n"  # no p.csv, no temporary


def test_threads_above_the_cpu_count_are_refused_naming_the_bound(exported, folder, capsys):
    _, path = exported
    cpus = usable_cpus()
    for threads, says in [
        (cpus + 1, f"must be at most {cpus} (the CPUs this process may use), not {cpus + 1}"),
        (100000, f"must be at most {cpus} (the CPUs this process may use), not 100000"),
        (0, "must be at least 1, not 0"),
        ("many", "must be a whole number, not 'many'"),
    ]:
        with pytest.raises(SystemExit) as stopped:
            predict_command([str(folder), "-m", str(path), "--threads", str(threads)], "predict")
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert f"predict: error: argument --threads: {says}" in err and "Traceback" not in err
    out, _ = predict(capsys, str(folder), "-m", str(path), "--threads", str(cpus))
    assert len(rows(out)) == 12
