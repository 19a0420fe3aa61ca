"""A small real domain shift for method tests: 1,000 MNIST digits -> 400 UCI digits.

The same shift as the demo, from the packages that ship it, small enough for a few seconds of
CPU training per method. Target test labels are used by the checks only.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adaptflow.core.devices import seed_everything
from adaptflow.core.params import TrainingParams
from adaptflow.data.demo import load_mnist, load_uci_digits
from adaptflow.data.pools import ImagePool
from adaptflow.methods.base import method_class
from adaptflow.methods.finetune import Finetune, FinetuneOptions
from adaptflow.models.classifier import Classifier, ModelSpec
from adaptflow.training.checkpoints import CheckpointStore
from adaptflow.training.engine import TrainingData, fit
from adaptflow.training.validators import Selector

CPU = torch.device("cpu")
CLASSES = [str(d) for d in range(10)]
SPEC = ModelSpec(
    backbone="small_cnn",
    classes=CLASSES,
    channels=1,
    image_size=28,
    bottleneck_dim=64,
    mean=[0.13],
    std=[0.3],
)


def _pool(name: str, images: np.ndarray, labels: np.ndarray | None) -> ImagePool:
    tensor_labels = None if labels is None else torch.from_numpy(labels)
    return ImagePool(name, torch.from_numpy(images[:, None]), tensor_labels, CLASSES)


@pytest.fixture(scope="session")
def domains() -> dict[str, ImagePool]:
    mnist, mnist_labels = load_mnist()
    digits, digit_labels = load_uci_digits()
    rng = np.random.default_rng(0)
    m, d = rng.permutation(len(mnist)), rng.permutation(len(digits))
    return {
        "source": _pool("source", mnist[m[:1000]], mnist_labels[m[:1000]]),
        "source_val": _pool("source val", mnist[m[1000:1300]], mnist_labels[m[1000:1300]]),
        "target": _pool("target", digits[d[:400]], None),
        "target_test": _pool("target test", digits[d[400:800]], digit_labels[d[400:800]]),
    }


def training(**changes) -> TrainingParams:
    return TrainingParams(
        **{"epochs": 3, "steps_per_epoch": 10, "batch_size": 64, "lr": 0.01, **changes}
    )


@pytest.fixture(scope="session")
def source_model(domains, tmp_path_factory) -> Classifier:
    """A classifier trained on the source only (shared: tests adapt copies of it)."""
    seed_everything(0)
    model = Classifier(SPEC)
    params = training(steps_per_epoch=20, lr=0.05)
    method = Finetune(model, params, FinetuneOptions())
    selector = Selector(["source_accuracy"], domains["source_val"], None, CPU, 256, 300)
    fit(
        method,
        TrainingData(domains["source"], None),
        params,
        stage="test",
        seed=0,
        device=CPU,
        selector=selector,
        store=CheckpointStore(tmp_path_factory.mktemp("s"), "s"),
    )
    return model.eval()


def copy_of(model: Classifier) -> Classifier:
    clone = Classifier(model.spec)
    clone.load_state_dict(model.state_dict())
    return clone


@pytest.fixture
def adapt_with(domains, source_model, tmp_path):
    """adapt_with(name, options=None, **training) -> (method, fit result) on a copy of the model."""
    runs = iter(range(1000))

    def run(name: str, options=None, **changes):
        seed_everything(0)
        cls = method_class(name)
        params = training(**changes)
        method = cls(copy_of(source_model), params, options or cls.Options())
        data = TrainingData(domains["source"] if cls.uses_source else None, domains["target"])
        selector = Selector(["entropy"], None, domains["target"], CPU, 256, 400)
        result = fit(
            method,
            data,
            params,
            stage="test",
            seed=0,
            device=CPU,
            selector=selector,
            store=CheckpointStore(tmp_path / f"{name}{next(runs)}", name),
        )
        return method, result

    return run


def images_of(pool: ImagePool) -> torch.Tensor:
    return pool.gather(torch.arange(len(pool)), CPU)[0]


def target_accuracy(model: Classifier, domains) -> float:
    model.eval()
    test = domains["target_test"]
    with torch.no_grad():
        return float((model(images_of(test)).argmax(1) == test.labels).float().mean())


def features(model: Classifier, pool: ImagePool) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model.features(images_of(pool))
