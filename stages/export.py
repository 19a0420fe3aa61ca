"""Stage export: the adapted model to ONNX, checked against PyTorch with onnxruntime."""

from adaptflow.core import paths
from adaptflow.core.io import atomic_path, write_json
from adaptflow.core.params import load_params
from adaptflow.data.pools import load_pool
from adaptflow.entry.stage import run_entry_point
from adaptflow.export.onnx import check_parity, export_onnx, latency, metadata, parity
from adaptflow.models.classifier import load_classifier


def main() -> None:
    params = load_params().export
    model, info = load_classifier(paths.ADAPTED_MODEL)
    target_test = load_pool(paths.TARGET_TEST, "target test", labeled=True)
    with atomic_path(paths.ONNX_MODEL) as onnx_file:  # renamed into place only if parity holds
        export_onnx(model, onnx_file, params.opset, metadata(model, info))
        agreement = parity(onnx_file, model, target_test)
        check_parity(agreement, params.atol)
        timings = latency(onnx_file, model, params.latency_batch_sizes, params.latency_repeats)
    write_json(paths.metrics_file("export"), {**agreement, "atol": params.atol, "latency": timings})


if __name__ == "__main__":
    run_entry_point(main)
