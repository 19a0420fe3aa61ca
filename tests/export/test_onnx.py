"""ONNX export: dynamic batch, metadata, parity with PyTorch; a disagreeing export fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import save_torch, write_text
from adaptflow.export.onnx import export_onnx, latency, metadata, parity, session
from adaptflow.models.classifier import Classifier, save_classifier
from tests.helpers import ROOT
from tests.helpers.stages import load_stage
from tests.helpers.toy import bars_pool, toy_spec

EXPORT = """
import sys
from pathlib import Path
from adaptflow.export.onnx import export_onnx, metadata
from adaptflow.models.classifier import load_classifier
model, info = load_classifier(Path(sys.argv[1]))
export_onnx(model, Path(sys.argv[2]), opset=18, props=metadata(model, info))
"""


@pytest.fixture
def model():
    torch.manual_seed(0)
    return Classifier(toy_spec(bottleneck_dim=8, mean=0.4)).eval()


def test_the_onnx_graph_matches_pytorch_at_any_batch_size(tmp_path, model):
    path = tmp_path / "m.onnx"
    export_onnx(model, path, opset=18, props=metadata(model, {"method": "x"}))
    runtime = session(path)
    for batch in (1, 7):
        images = torch.rand(batch, 1, 16, 16)
        expected = model(images).detach().numpy()
        actual = runtime.run(None, {"images": images.numpy()})[0]
        assert actual.shape == (batch, 2) and np.abs(actual - expected).max() < 1e-4
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["classes"]) == ["left", "right"]
    assert json.loads(props["mean"]) == pytest.approx([0.4]) and "input_size" in props


def test_parity_and_latency_are_measured(tmp_path, model):
    path = tmp_path / "m.onnx"
    export_onnx(model, path, opset=18, props={})
    result = parity(path, model, bars_pool("t", 20))
    assert result["top1_agreement"] == 1.0 and result["max_abs_logit_diff"] < 1e-4
    timings = latency(path, model, [1, 4], repeats=2)
    assert set(timings) == {"batch_1", "batch_4"}
    assert all(v > 0 for t in timings.values() for v in t.values())


def test_an_export_that_disagrees_fails_and_keeps_the_previous_file(in_tmp, model, monkeypatch):
    save_classifier(paths.ADAPTED_MODEL, model)
    save_torch(
        paths.TARGET_TEST,
        {
            "images": bars_pool("t", 10).images,
            "sha256": ["x"] * 10,
            "labels": torch.zeros(10, dtype=torch.long),
            "classes": ["left", "right"],
        },
    )
    write_text(paths.PARAMS, "data: {source: s, target: t}\nexport: {latency_repeats: 1}\n")
    write_text(paths.ONNX_MODEL, "previous export")
    stage = load_stage("export")
    real_export = stage.export_onnx

    def export_a_different_model(m, path, opset, props):
        altered = Classifier(m.spec).eval()  # other weights: its outputs disagree
        real_export(altered, path, opset, props)

    monkeypatch.setattr(stage, "export_onnx", export_a_different_model)
    with pytest.raises(AdaptflowError, match=r"onnxruntime logits differ .* > export.atol=0.0001"):
        stage.main()
    assert paths.ONNX_MODEL.read_text() == "previous export"
    assert list(paths.ONNX_MODEL.parent.glob("*.tmp")) == []


def test_the_onnx_file_is_the_same_bytes_from_two_checkouts_and_names_no_local_path(
    tmp_path, model
):
    save_classifier(tmp_path / "adapted.pt", model, {"stage": "adapt"})
    exported = {}
    for name in ("one/adaptflow-checkout", "two/elsewhere/checkout"):
        checkout = tmp_path / name
        shutil.copytree(ROOT / "adaptflow", checkout / "adaptflow")
        onnx_file = tmp_path / f"{checkout.name}.onnx"
        subprocess.run(
            [sys.executable, "-c", EXPORT, str(tmp_path / "adapted.pt"), str(onnx_file)],
            cwd=checkout,
            env={**os.environ, "PYTHONPATH": str(checkout)},
            check=True,
        )
        exported[checkout] = onnx_file.read_bytes()
    first, second = exported.values()
    assert first == second
    machine = [*exported, ROOT, Path(sys.prefix), Path(sys.prefix).resolve()]
    for local in [*machine, Path(torch.__file__).parent]:
        assert str(local).encode() not in first, local
    assert b'File "/' not in first  # no stack trace of any path
