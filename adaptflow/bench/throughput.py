"""Training throughput: the adapt stage's own loop against a plain PyTorch loop, same model.

Both run on synthetic data already on the device, with the same model, batch size per domain,
precision (bf16 autocast on CUDA), memory format, optimizer and `torch.compile` setting:
(a) `adaptflow.training.engine.fit` with the chosen method (index gathering, the method's step,
progress sums, NaN guard, scheduler), augmentation off as in (b); (b) a hand-written loop of
forward, loss, backward and SGD step. Images count both domains for adaptation methods.
Prints both img/s, their ratio, peak memory and the device (`--json FILE`: also as JSON).

    python -m adaptflow.bench throughput                       # CPU: the demo's small CNN
    python -m adaptflow.bench throughput --json results/throughput/cpu_source_only.json
    python -m adaptflow.bench throughput --backbone resnet50 --method dann --batch 256 \\
        --size 224 --compile                                    # a GPU
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from adaptflow.bench.common import RunRecord, cpu_name
from adaptflow.core.devices import resolve_device, seed_everything
from adaptflow.core.params import AdaptParams
from adaptflow.data.pools import ImagePool
from adaptflow.methods.base import method_class, method_options
from adaptflow.methods.dann import DannOptions
from adaptflow.methods.layers import DomainDiscriminator, reverse_gradient
from adaptflow.models.backbones import build_backbone
from adaptflow.models.classifier import Classifier, ModelSpec
from adaptflow.training.checkpoints import CheckpointStore
from adaptflow.training.engine import TrainingData, fit, loop_settings
from adaptflow.training.optim import build_optimizer
from adaptflow.training.validators import Selector

# benchmark name -> the adaptflow method that trains that way (source-only training is the
# finetune method: supervised on the source, no target images)
METHODS = {"source_only": "finetune", "dann": "dann"}
NO_AUGMENT = {"translate": 0.0, "rotate": 0.0, "scale": 0.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="small_cnn")
    parser.add_argument("--method", choices=sorted(METHODS), default="source_only")
    parser.add_argument("--batch", type=int, default=64, help="images per domain per step")
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--channels", type=int, choices=(1, 3), default=None)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50, help="timed steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=3, help="alternate (a) and (b) this often")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default=None, help="also write the figures to this file")


def _model(args: argparse.Namespace, channels: int) -> Classifier:
    backbone = build_backbone(args.backbone, channels)
    spec = ModelSpec(
        backbone=args.backbone,
        classes=[str(k) for k in range(args.classes)],
        channels=channels,
        image_size=args.size,
        bottleneck_dim=256,
        mean=[0.5] * backbone.channels,
        std=[0.25] * backbone.channels,
    )
    return Classifier(spec, backbone)


def _params(args: argparse.Namespace, steps: int) -> AdaptParams:
    return AdaptParams(
        method=METHODS[args.method],
        epochs=1,
        steps_per_epoch=steps,
        batch_size=args.batch,
        compile=args.compile,
        augment=NO_AUGMENT,
        fallback_to_source=False,
    )


def _pool(name: str, args: argparse.Namespace, channels: int, device: torch.device) -> ImagePool:
    count = args.batch * 4
    images = torch.randint(0, 256, (count, channels, args.size, args.size), dtype=torch.uint8)
    labels = torch.randint(0, args.classes, (count,))
    return ImagePool(name, images, labels, [str(k) for k in range(args.classes)]).to(device)


def engine_images_per_second(
    args: argparse.Namespace, model: Classifier, channels: int, device: torch.device
) -> float:
    """(a): one warm-up epoch, then one timed epoch of `fit` (no validators, no writes)."""
    data = TrainingData(
        source=_pool("source", args, channels, device),
        target=_pool("target", args, channels, device) if args.method != "source_only" else None,
    )
    name = METHODS[args.method]
    method_type = method_class(name)
    rates = []
    with tempfile.TemporaryDirectory() as scratch:
        for steps in (args.warmup, args.steps):
            params = _params(args, steps)
            method = method_type(model, params, method_options(name, {}))
            result = fit(
                method,
                data,
                params,
                stage="bench",
                seed=0,
                device=device,
                selector=Selector([], None, None, device, args.batch, 1),
                store=CheckpointStore(Path(scratch), str(steps)),
            )
            rates.append(result.history[-1]["images_per_second"])
    return rates[-1]


def plain_images_per_second(
    args: argparse.Namespace, model: Classifier, channels: int, device: torch.device
) -> float:
    """(b): forward, loss, backward, optimizer step, on tensors prepared once."""
    params = _params(args, args.steps)
    autocast, channels_last = loop_settings(params, device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format).train()
    if args.compile:
        model.backbone.compile()
    discriminator = None
    groups = [{"params": list(model.parameters()), "lr": params.lr}]
    if args.method == "dann":
        discriminator = DomainDiscriminator(model.spec.bottleneck_dim, DannOptions().hidden).to(
            device
        )
        groups.append({"params": list(discriminator.parameters()), "lr": params.lr})
    optimizer = build_optimizer(groups, params, device)
    shape = (args.batch, channels, args.size, args.size)
    source = torch.rand(shape, device=device).contiguous(memory_format=memory_format)
    target = torch.rand(shape, device=device).contiguous(memory_format=memory_format)
    labels = torch.randint(0, args.classes, (args.batch,), device=device)
    domains = torch.cat([torch.ones(args.batch), torch.zeros(args.batch)]).to(device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            if discriminator is None:
                loss = nn.functional.cross_entropy(model(source), labels)
            else:
                features = model.features(torch.cat([source, target]))
                loss = nn.functional.cross_entropy(model.head(features[: args.batch]), labels)
                logits = discriminator(reverse_gradient(features, 1.0)).squeeze(1)
                loss = loss + nn.functional.binary_cross_entropy_with_logits(logits, domains)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    _synchronize(device)
    images = args.steps * args.batch * (2 if discriminator is not None else 1)
    return images / (time.perf_counter() - started)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(args: argparse.Namespace) -> dict:
    """Both loops' img/s (best of the interleaved repeats), their ratio, peak memory, device."""
    device = resolve_device(args.device)
    channels = args.channels or (1 if args.backbone == "small_cnn" else 3)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)
    seed_everything(0)
    initial = _model(args, channels)
    engine, plain = [], []
    for _ in range(args.repeats):  # interleaved, so drift (clocks, other load) hits both
        engine.append(engine_images_per_second(args, copy.deepcopy(initial), channels, device))
        plain.append(plain_images_per_second(args, copy.deepcopy(initial), channels, device))
    cuda = device.type == "cuda"
    return {
        "device": torch.cuda.get_device_name(device) if cuda else cpu_name(),
        "device_type": device.type,
        "torch": torch.__version__,
        "backbone": args.backbone,
        "method": args.method,
        "batch_per_domain": args.batch,
        "size": args.size,
        "compile": args.compile,
        "steps": args.steps,
        "repeats": args.repeats,
        "engine_images_per_second": max(engine),
        "plain_images_per_second": max(plain),
        "ratio": max(engine) / max(plain),
        "engine_runs": engine,
        "plain_runs": plain,
        "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None,
    }


def run(args: argparse.Namespace) -> None:
    record = RunRecord(Path.cwd())
    figures = measure(args)
    peak = figures["peak_memory_mb"]
    print(
        f"device: {figures['device']} ({figures['device_type']}); backbone {args.backbone}, "
        f"method {args.method}, batch {args.batch}/domain, {args.size}px, "
        f"compile {args.compile}, best of {args.repeats} x {args.steps} steps"
    )
    print(
        f"adaptflow loop : {figures['engine_images_per_second']:10.1f} img/s   "
        f"(runs: {_rates(figures['engine_runs'])})"
    )
    print(
        f"plain PyTorch  : {figures['plain_images_per_second']:10.1f} img/s   "
        f"(runs: {_rates(figures['plain_runs'])})"
    )
    print(f"ratio          : {figures['ratio']:10.3f}")
    print(f"peak memory    : {f'{peak:.0f} MiB' if peak is not None else 'n/a (CPU)'}")
    if args.json:
        record.write(Path(args.json), figures)


def _rates(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)
