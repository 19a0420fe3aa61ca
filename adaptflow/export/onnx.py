"""ONNX export, checked against PyTorch with onnxruntime, plus CPU latency of both.

The graph takes float32 images in [0, 1], shape (batch, C, H, W) with a dynamic batch, and
returns logits; normalisation is inside it. The metadata holds the class names in output
order and the full preprocessing (decoding, channel conversion, resize and crop), so the file
alone is enough to use the model (`adaptflow predict`). An export whose logits disagree with
PyTorch beyond `export.atol` fails.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adaptflow.core.errors import AdaptflowError
from adaptflow.data.images import decoding_recipe
from adaptflow.data.pools import ImagePool
from adaptflow.models.classifier import Classifier, ModelSpec

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
STACK_TRACE_KEY = "pkg.torch.onnx.stack_trace"  # node metadata naming the exporter's source files


def metadata(model: Classifier, info: dict[str, Any]) -> dict[str, str]:
    """What a consumer of the ONNX file needs to feed it and read its output."""
    spec = model.spec
    return {
        **preprocessing_metadata(spec),
        "input": f"float32 images in [0, 1], shape (batch, {spec.channels}, "
        f"{spec.image_size}, {spec.image_size}); normalisation is inside the graph",
        "input_size": json.dumps([spec.channels, spec.image_size, spec.image_size]),
        "mean": json.dumps(spec.mean),
        "std": json.dumps(spec.std),
        "backbone": spec.backbone,
        "adaptflow_info": json.dumps(info, sort_keys=True, default=str),
    }


# What `adaptflow predict` reads from the file: nothing else is needed to feed the model.
PREPROCESSING_KEY = "preprocessing"
CLASSES_KEY = "classes"


def preprocessing_metadata(spec: ModelSpec) -> dict[str, str]:
    """The class names in output order and every preprocessing step, as ONNX metadata strings."""
    recipe = {
        **decoding_recipe(spec.channels, spec.image_size),
        "normalisation": f"inside the graph (mean {spec.mean}, std {spec.std})",
    }
    return {
        CLASSES_KEY: json.dumps(spec.classes),  # logits[:, i] scores classes[i]
        "output": f"{OUTPUT_NAME}: (batch, {spec.num_classes}); column i scores classes[i]",
        PREPROCESSING_KEY: json.dumps(recipe, sort_keys=True),
    }


def _graphs(graph: Any) -> Iterator[Any]:
    """A graph (or function) and every subgraph in its nodes' attributes (If/Loop bodies)."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            for sub in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                yield from _graphs(sub)


def strip_local_paths(onnx_model: Any) -> None:
    """Remove the Python stack traces the exporter stores on each node (`onnx.ModelProto`).

    They hold absolute paths of the machine that exported (its checkout and its virtual
    environment): the same model exported from two checkouts would differ byte for byte, and
    the file would tell anyone who receives it where the code lived.
    """
    functions = [graph for function in onnx_model.functions for graph in _graphs(function)]
    for container in [*_graphs(onnx_model.graph), *functions]:
        for node in container.node:
            kept = [prop for prop in node.metadata_props if prop.key != STACK_TRACE_KEY]
            del node.metadata_props[:]
            node.metadata_props.extend(kept)


def export_onnx(model: Classifier, path: Path, opset: int, props: dict[str, str]) -> None:
    """Export with the dynamo exporter (dynamic batch), add metadata, and run onnx.checker."""
    import onnx

    model = model.eval().cpu()
    spec = model.spec
    example = torch.rand(2, spec.channels, spec.image_size, spec.image_size)
    program = torch.onnx.export(
        model,
        (example,),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        opset_version=opset,
        dynamo=True,
        verbose=False,
    )
    program.save(str(path))
    graph = onnx.load(str(path))
    strip_local_paths(graph)
    onnx.helper.set_model_props(graph, props)
    onnx.checker.check_model(graph, full_check=True)
    onnx.save(graph, str(path))


def session(path: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def parity(path: Path, model: Classifier, pool: ImagePool, batch_size: int = 256) -> dict:
    """Max |logit difference| and top-1 agreement of onnxruntime vs PyTorch over a pool."""
    runtime = session(path)
    model = model.eval().cpu()
    worst, agree = 0.0, 0
    for _, images, _ in pool.batches(batch_size, torch.device("cpu")):
        with torch.inference_mode():
            expected = model(images).numpy()
        actual = runtime.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0]
        worst = max(worst, float(np.abs(actual - expected).max()))
        agree += int((actual.argmax(1) == expected.argmax(1)).sum())
    return {"max_abs_logit_diff": worst, "top1_agreement": agree / len(pool), "images": len(pool)}


def check_parity(result: dict, atol: float) -> None:
    """Fail the export when onnxruntime and PyTorch disagree beyond tolerance."""
    if result["max_abs_logit_diff"] > atol:
        raise AdaptflowError(
            f"export: onnxruntime logits differ from PyTorch by {result['max_abs_logit_diff']:.3g} "
            f"> export.atol={atol:g}; the ONNX file was not written (check the model's ops)"
        )


def _median_ms(run, repeats: int) -> float:
    for _ in range(3):
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def latency(path: Path, model: Classifier, batch_sizes: list[int], repeats: int) -> dict:
    """Median CPU latency (ms) of onnxruntime and PyTorch eager at each batch size."""
    runtime = session(path)
    model = model.eval().cpu()
    spec = model.spec
    result = {}
    for batch in batch_sizes:
        images = torch.rand(batch, spec.channels, spec.image_size, spec.image_size)
        feed = {INPUT_NAME: images.numpy()}

        def torch_run(x=images):
            with torch.inference_mode():
                model(x)

        result[f"batch_{batch}"] = {
            "onnxruntime_ms": _median_ms(lambda f=feed: runtime.run([OUTPUT_NAME], f), repeats),
            "torch_eager_ms": _median_ms(torch_run, repeats),
        }
    return result
