"""The method interface: what differs between DANN, CORAL, SHOT... and nothing else.

A method owns its extra modules (a domain discriminator, say), its loss terms and what it trains.
The loop, devices, precision, checkpoints and logging live once, in adaptflow.training.engine.
A new method is one file in this package that subclasses `Method`, declares an `Options`
params model and is decorated with `@register`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from adaptflow.core.errors import AdaptflowError
from adaptflow.core.params import StrictModel, TrainingParams
from adaptflow.data.batch import Batch
from adaptflow.data.pools import ImagePool
from adaptflow.models.blocks import parameter_groups
from adaptflow.models.classifier import Classifier


@dataclass
class StepOutput:
    """Loss terms (summed for the backward pass) and extra scalars to log."""

    losses: dict[str, torch.Tensor]
    logs: dict[str, torch.Tensor] = field(default_factory=dict)


class NoOptions(StrictModel):
    """A method without hyper-parameters of its own."""


class Method(nn.Module):
    name: ClassVar[str]
    Options: ClassVar[type[StrictModel]] = NoOptions
    uses_source: ClassVar[bool] = True  # False: source-free; the stage never opens source data
    takes_steps: ClassVar[bool] = True  # False: all work happens in begin_epoch (e.g. AdaBN)

    def __init__(self, model: Classifier, training: TrainingParams, options: StrictModel) -> None:
        super().__init__()
        self.model = model
        self.options = options
        self.progress = 0.0  # fraction of training done, set by the engine before each step
        # a method may scale the shared adapt.lr with an `lr_mult` option of its own
        self.lr = training.lr * getattr(options, "lr_mult", 1.0)
        self._groups, frozen = parameter_groups(model, training.layers, self.lr)
        # by name: layers may be swapped later (synchronised BatchNorm in data-parallel runs)
        frozen_ids = {id(module) for module in frozen}
        self._frozen = [name for name, m in self.named_modules() if id(m) in frozen_ids]

    def trainable_groups(self) -> list[dict]:
        """Optimizer parameter groups with their learning rates (empty: nothing is trained)."""
        return self._groups

    def epochs(self, configured: int) -> int:
        """How many epochs this method runs given the configured number."""
        return configured

    def begin_epoch(self, epoch: int, target: ImagePool | None, device: torch.device) -> None:
        """Per-epoch work before the steps (e.g. recomputing pseudo-labels over the target pool)."""

    def step(self, source: Batch | None, target: Batch | None) -> StepOutput:
        """The losses of one step; the engine does backward, optimizer and logging."""
        raise NotImplementedError

    def forward(
        self, source: Batch | None, target: Batch | None, target_labeled: Batch | None = None
    ) -> StepOutput:
        """One step's losses: `step`, plus cross-entropy on labeled target images if any.

        The engine calls the method (not `step`) so DistributedDataParallel sees the forward.
        """
        output = self.step(source, target)
        if target_labeled is not None:
            output.losses["target_labeled_ce"] = self.supervised_loss(target_labeled)
        return output

    def supervised_loss(self, batch: Batch) -> torch.Tensor:
        """Cross-entropy on a labeled batch; the engine adds it for labeled target images."""
        return F.cross_entropy(self.model(batch.images), batch.labels)

    def source_and_target(
        self, source: Batch, target: Batch
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One forward pass over both domains (shared BatchNorm statistics, as in DANN).

        Returns (features, logits) of the concatenated batch, source rows first, and the
        source cross-entropy.
        """
        features = self.model.features(torch.cat([source.images, target.images]))
        logits = self.model.head(features)
        source_ce = F.cross_entropy(logits[: len(source.images)], source.labels)
        return features, logits, source_ce

    def train(self, mode: bool = True) -> Method:
        """Train mode, except frozen backbone blocks, whose BatchNorm statistics stay fixed."""
        super().train(mode)
        for name in self._frozen:
            self.get_submodule(name).eval()
        return self


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available as `adapt.method: <cls.name>`."""
    if cls.name in METHODS:
        raise ValueError(f"method {cls.name!r} registered twice")
    METHODS[cls.name] = cls
    return cls


def all_methods() -> dict[str, type[Method]]:
    """Every method in this package, by name (imports each module once; importing registers)."""
    import importlib
    import pkgutil

    package = importlib.import_module("adaptflow.methods")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"adaptflow.methods.{module.name}")
    return METHODS


def method_class(name: str) -> type[Method]:
    """The registered method called `name`, or a clear error listing the known ones."""
    if name not in all_methods():
        raise AdaptflowError(
            f"adapt.method: unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}"
        )
    return METHODS[name]


def method_options(method: str, sections: dict, location: str = "adapt") -> StrictModel:
    """Validate every `adapt.<name>` section (unused ones too) and return `method`'s options."""
    from adaptflow.core.params import AdaptParams, parse_section, unknown_key_message

    for key in sections:
        if key not in all_methods():
            known = [*AdaptParams.model_fields, *METHODS]
            raise AdaptflowError(
                f"params.yaml: {location}.{key}: {unknown_key_message(key, known)} (method "
                f"sections are named after methods: {', '.join(sorted(METHODS))})"
            )
    parsed = {
        key: parse_section(METHODS[key].Options, raw, f"{location}.{key}")
        for key, raw in sections.items()
    }
    return parsed.get(method) or method_class(method).Options()
