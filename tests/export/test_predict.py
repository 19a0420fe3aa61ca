"""`adaptflow predict`: an exported model alone classifies files the way evaluation scores them."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from adaptflow.data.images import DECODING, load_image
from adaptflow.entry.command import main
from adaptflow.entry.predict_command import predict_command
from adaptflow.export.onnx import PREPROCESSING_KEY, export_onnx, metadata
from adaptflow.export.predict import MAX_PIXELS, find_images, load_model
from adaptflow.models.classifier import Classifier
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
