"""ONNX export of a model trained on the GPU, checked against PyTorch with onnxruntime.

onnx, onnxscript and onnxruntime are not in the GPU bundle (about 45 MB more per Python
version): where they are missing this test is skipped with that reason.
"""

from __future__ import annotations

import pytest

from adaptflow.core import paths
from adaptflow.core.params import ExportParams
from adaptflow.data.pools import load_pool

from .toy import adapt_in, make_params, working_directory, write_project

pytestmark = pytest.mark.cuda


@pytest.fixture
def onnx_stack() -> None:
    for module in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(module, reason=f"{module} is not installed (not in the GPU bundle)")


def test_a_model_trained_on_the_gpu_exports_to_onnx_with_parity(
    onnx_stack, tmp_path, scale, device, report
):
    from adaptflow.export.onnx import check_parity, export_onnx, metadata, parity

    project = write_project(tmp_path, scale)
    params = make_params(scale, "adapt", method="dann", epochs=1, steps_per_epoch=2)
    model = adapt_in(project, params, device).adapted_model
    path = tmp_path / "model.onnx"
    export_onnx(model, path, ExportParams().opset, metadata(model, {"method": "dann"}))
    with working_directory(project):
        target = load_pool(paths.TARGET_TRAIN, "target train", labeled=False)
    result = parity(path, model, target)
    report(**result)
    check_parity(result, ExportParams().atol)
    assert result["top1_agreement"] >= 0.99
