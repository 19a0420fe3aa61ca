"""Typed params: the one place that knows params.yaml's shape.

Every stage calls `load_params()`; a bad key, type or value becomes one line naming the
param and what is allowed. Method-specific sections (`adapt.<method>`) are validated by the
method's own params model (see adaptflow/methods).
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import decode_utf8
from adaptflow.core.paths import PARAMS

# Every number has a ceiling, said in its error: a value that passes the check must not fail an
# hour later (an overflow, a loop that never ends, an allocation no machine has).
MAX_COUNT = 1_000_000  # images, samples, steps, repeats
MAX_BATCH = 65_536
MAX_WIDTH = 65_536  # feature and layer widths
MAX_SEED = 2**32 - 1  # the largest seed numpy's RandomState takes (torch takes more)
PositiveInt = Annotated[int, Field(ge=1, le=MAX_COUNT)]
NonNegativeInt = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
BatchSize = Annotated[int, Field(ge=1, le=MAX_BATCH)]
Width = Annotated[int, Field(ge=8, le=MAX_WIDTH)]
PositiveFloat = Annotated[float, Field(gt=0, le=1e6)]
NonNegativeFloat = Annotated[float, Field(ge=0, le=1e6)]
Fraction = Annotated[float, Field(gt=0, lt=1)]
LossWeight = Annotated[float, Field(ge=0, le=1000)]  # a loss term's weight
LrMultiplier = Annotated[float, Field(gt=0, le=1000)]  # a parameter group's lr = lr * this


class StrictModel(BaseModel):
    """A params section: unknown keys are errors, numbers finite, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DataParams(StrictModel):
    source: str = Field(description="ImageFolder root of the labeled source domain")
    target: str = Field(description="ImageFolder root of the target domain")
    image_size: Annotated[int, Field(ge=8, le=1024)] = 28
    channels: Literal[1, 3] = 1
    source_val_fraction: Annotated[float, Field(gt=0, le=0.5)] = 0.1
    seed: Seed = 0  # the source-val and labeled-target splits; independent of the training seed


class DemoParams(StrictModel):
    root: str = "data/demo"
    test_fraction: Annotated[float, Field(ge=0.1, le=0.5)] = 0.25
    source_limit: NonNegativeInt = 0  # 0 = all 5,000 MNIST images
    target_limit: NonNegativeInt = 0  # 0 = all 1,797 UCI digits
    seed: Seed = 0


class ValidateParams(StrictModel):
    min_per_class: PositiveInt = 10
    min_side: PositiveInt = 8
    max_side: PositiveInt = 8192
    # the decompression-bomb guard; it replaces Pillow's own limit while images are decoded
    max_pixels: Annotated[int, Field(ge=1, le=2_000_000_000)] = 64_000_000

    @model_validator(mode="after")
    def _sides_ordered(self) -> ValidateParams:
        if self.min_side > self.max_side:
            raise ValueError(
                f"min_side ({self.min_side}) is larger than max_side ({self.max_side})"
            )
        return self


class LayerParams(StrictModel):
    """Which backbone blocks train, and at what learning rate (transfer-learning practice)."""

    trainable_blocks: Annotated[int, Field(ge=-1, le=1000)] = Field(
        -1, description="-1: all blocks train; 0: feature extraction (frozen backbone); N: last N"
    )
    backbone_lr_mult: LrMultiplier = 1.0  # backbone lr = lr * this (head and bottleneck: lr)
    layer_lr_decay: Annotated[float, Field(gt=0, le=1)] = 1.0  # each block deeper: lr * decay


class AugmentParams(StrictModel):
    """Per-image random affine augmentation, applied on the training device."""

    translate: Annotated[float, Field(ge=0, le=0.5)] = 0.1  # fraction of the image side
    rotate: Annotated[float, Field(ge=0, le=180)] = 10.0  # degrees
    scale: Annotated[float, Field(ge=0, lt=1)] = 0.1  # +- fraction
    hflip: bool = False


class TrainingParams(StrictModel):
    """What the training loop needs; shared by `pretrain` and `adapt`."""

    epochs: Annotated[int, Field(le=10_000)] = 5
    steps_per_epoch: NonNegativeInt = 0  # 0: one pass over the larger training split
    batch_size: BatchSize = 64  # per domain (source; target too unless target_batch_size)
    target_batch_size: Annotated[int, Field(ge=0, le=MAX_BATCH)] = 0  # 0: batch_size; global
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: Annotated[float, Field(gt=0, le=10)] = 0.01
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 5e-4
    schedule: Literal["constant", "cosine", "inv"] = "cosine"
    grad_accum_steps: Annotated[int, Field(ge=1, le=1024)] = 1
    amp: Literal["auto", "off", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, off on CPU
    channels_last: Literal["auto", "on", "off"] = "auto"
    compile: bool = False
    # how batches reach the device: `device` (each split copied to the GPU once), `main` (the
    # training process gathers them from the memory-mapped cache), `workers` (DataLoader worker
    # processes do, for splits that do not fit in memory); auto: device when the splits fit in
    # a quarter of free GPU memory, else workers; main on CPU
    loader: Literal["auto", "device", "main", "workers"] = "auto"
    workers: Annotated[int, Field(ge=1, le=256)] = (
        4  # DataLoader processes per domain (loader: workers)
    )
    layers: LayerParams = LayerParams()
    augment: AugmentParams = AugmentParams()

    @field_validator("epochs")
    @classmethod
    def _trains_something(cls, epochs: int) -> int:
        if epochs < 1:
            raise ValueError(
                f"{epochs} trains nothing; set it to 1 or more (to keep the source model "
                "unchanged, use adapt.method: source_only)"
            )
        return epochs

    @property
    def target_batch(self) -> int:
        """Images per step from the target domain."""
        return self.target_batch_size or self.batch_size


class DistributedParams(StrictModel):
    """Data-parallel training of pretrain and adapt (torchrun + DistributedDataParallel).

    Batch sizes stay global: N processes each take 1/N of every batch, so a run's results do
    not depend on N (up to floating-point reduction order; see adaptflow/training/distributed.py).
    """

    nproc_per_node: Annotated[int, Field(ge=1, le=1024)] = (
        1  # >1: the stage relaunches itself under torchrun
    )
    backend: Literal["auto", "nccl", "gloo"] = "auto"  # auto: nccl on CUDA, gloo on CPU
    sync_batchnorm: bool = True  # BatchNorm statistics over the global batch, not per process


class PretrainParams(TrainingParams):
    mode: Literal["train", "torchvision"] = "train"
    backbone: str = "small_cnn"  # or `auto`: the candidate the rank stage put first
    weights_file: str | None = None  # torchvision mode: local weights; else the torch hub cache
    weights_sha256: str | None = None  # full hash; else the prefix in torchvision's file name
    bottleneck_dim: Annotated[int, Field(ge=1, le=MAX_WIDTH)] = 128
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.1


class CandidateParams(StrictModel):
    """A candidate starting point for the source model, scored by the rank stage."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    backbone: str | None = None  # a torchvision model, with published weights from a local file
    weights_file: str | None = None
    weights_sha256: str | None = None
    checkpoint: str | None = None  # or an adaptflow classifier (models/source.pt of another run)

    @model_validator(mode="after")
    def _one_kind(self) -> CandidateParams:
        if (self.backbone is None) == (self.checkpoint is None):
            raise ValueError(
                f"candidate {self.name!r}: set exactly one of backbone (a torchvision model, "
                "with weights_file) or checkpoint (an adaptflow classifier file)"
            )
        return self


class RankParams(StrictModel):
    enabled: bool = False
    estimator: Literal["logme", "leep", "nce", "hscore", "domain_gap"] = "logme"
    samples_per_class: PositiveInt = 100  # labeled source images per class to score on
    batch_size: BatchSize = 256
    candidates: list[CandidateParams] = []

    @model_validator(mode="after")
    def _unique_names(self) -> RankParams:
        names = [c.name for c in self.candidates]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"candidate names must be unique; {', '.join(repeated)} repeated")
        return self


AUTO_BACKBONE = "auto"  # pretrain.backbone: the candidate the rank stage put first
AUTO_METHOD = "auto"  # adapt.method: adapt every portfolio member, keep the rule's choice
FULL_BUDGET = "full"  # adapt.portfolio.budget: every member trains every epoch
# the unadapted source model: a method of its own, and always among the models auto scores
SOURCE_ONLY = "source_only"


class LabelFinetuneParams(StrictModel):
    """`adapt.portfolio.finetune_on_labels`: with the user's labeled target images, train the
    kept model on some of them as one more candidate (adaptflow/adapt/label_finetune.py)."""

    epochs: NonNegativeInt = 0  # 0: off
    method: str = "fixmatch"  # semi-supervised: its own loss, plus cross-entropy on the labels
    held_out: Annotated[float, Field(gt=0, lt=1)] = 0.5  # labels kept out, to compare on


class PortfolioParams(StrictModel):
    """`adapt.method: auto`: the methods adapted (one DVC stage each) and the label-free rule
    that picks one of them (see adaptflow/adapt/portfolio.py and adaptflow/adapt/rules.py)."""

    # the unadapted source model is always among the models the rule scores (as `source_only`)
    # chosen from the aggregate of `python -m adaptflow.bench shifts` (docs/decisions.md)
    members: Annotated[list[str], Field(min_length=1)] = [
        "adabn",
        "tent",
        "shot",
        "mcc",
        "fixmatch",
        "coral",
        "dann",
    ]
    rule: str = "adapted_consensus"
    # total member-epochs as a multiple of one method's `adapt.epochs` (successive halving,
    # adaptflow/adapt/rungs.py), or `full`: every member trains to the end
    budget: Annotated[float, Field(gt=0, le=1000)] | Literal["full"] = 2.5
    finetune_on_labels: LabelFinetuneParams = LabelFinetuneParams()

    @model_validator(mode="after")
    def _unique_members(self) -> PortfolioParams:
        repeated = sorted({m for m in self.members if self.members.count(m) > 1})
        if repeated:
            raise ValueError(f"members must be unique; {', '.join(repeated)} repeated")
        if AUTO_METHOD in self.members or SOURCE_ONLY in self.members:
            raise ValueError(
                f"members are adaptation methods; not {AUTO_METHOD}, nor {SOURCE_ONLY} (the "
                "source model is always among the models the rule scores)"
            )
        return self


class AdaptParams(TrainingParams):
    """The adapt stage; `adapt.<method>` sections hold each method's own hyper-parameters."""

    model_config = ConfigDict(extra="allow", frozen=True)

    method: str = "finetune"  # a method, or `auto`: the portfolio's label-free choice
    target_labeled_per_class: NonNegativeInt = 0
    fallback_to_source: bool = False  # see params.yaml
    portfolio: PortfolioParams = PortfolioParams()

    def method_sections(self) -> dict[str, Any]:
        """The `adapt.<name>` sections as written in params.yaml."""
        return dict(self.model_extra or {})


class SelectionParams(StrictModel):
    validator: str = "info_max"
    max_samples: PositiveInt = 2000  # per domain, for the label-free validators


class EvaluateParams(StrictModel):
    batch_size: BatchSize = 256
    ece_bins: Annotated[int, Field(ge=1, le=1000)] = 15


class ExportParams(StrictModel):
    opset: Annotated[int, Field(ge=17, le=23)] = 18
    atol: Annotated[float, Field(gt=0, le=1)] = 1e-4
    latency_batch_sizes: list[BatchSize] = [1, 64]
    latency_repeats: Annotated[int, Field(ge=1, le=10_000)] = 20


class Params(StrictModel):
    seed: Seed = 0
    device: str = "auto"
    distributed: DistributedParams = DistributedParams()
    data: DataParams
    demo: DemoParams = DemoParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    rank: RankParams = RankParams()
    pretrain: PretrainParams = PretrainParams()
    adapt: AdaptParams = AdaptParams()
    selection: SelectionParams = SelectionParams()
    evaluate: EvaluateParams = EvaluateParams()
    export: ExportParams = ExportParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _auto_needs_ranking(self) -> Params:
        if self.pretrain.backbone == AUTO_BACKBONE and not (
            self.rank.enabled and self.rank.candidates
        ):
            raise ValueError(
                "pretrain.backbone: auto takes the rank stage's choice; set rank.enabled: true "
                "and list rank.candidates"
            )
        return self

    @property
    def validate(self) -> ValidateParams:  # type: ignore[override]
        """The `validate` section (named `validate_` inside: BaseModel has a `validate`)."""
        return self.validate_


def _section_keys(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """The keys params.yaml may hold at `path` inside `model` (empty if not a section)."""
    for part in path:
        if isinstance(part, int):
            continue  # an item of a list of sections
        field = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
        if field is None:
            return []
        candidates = [field.annotation, *get_args(field.annotation)]
        model = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if model is None:
            return []
    return [field.alias or name for name, field in model.model_fields.items()]


def unknown_key_message(key: str, known: list[str]) -> str:
    """`unknown key` with a `did you mean` for a near miss of a real key."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean `{close[0]}`?"
    return "unknown key; remove it or check its spelling"


def _describe(
    error: dict[str, Any], prefix: tuple[str, ...] = (), model: type[BaseModel] | None = None
) -> str:
    location = ".".join(str(part) for part in (*prefix, *error["loc"])) or "(top level)"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        known = _section_keys(model, error["loc"][:-1]) if model is not None else []
        return f"{location}: {unknown_key_message(str(error['loc'][-1]), known)}"
    if error["type"] == "missing":
        return f"{location}: missing; add it"
    if error["type"].startswith("value_error"):
        return f"{location}: {message.removeprefix('Value error, ')}"
    return f"{location}: {message.lower()} (got {error.get('input')!r})"


def format_validation_error(
    source: str,
    error: ValidationError,
    prefix: tuple[str, ...] = (),
    model: type[BaseModel] | None = None,
) -> str:
    """One line naming the first bad param, the problem, and how many more there are."""
    # a misspelt key is usually why a required one is missing: name the misspelling first
    errors = sorted(error.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    line = f"{source}: {_describe(errors[0], prefix, model)}"
    if len(errors) > 1:
        line += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return line


M = TypeVar("M", bound=BaseModel)


def parse_section(model: type[M], raw: Any, location: str, source: str = str(PARAMS)) -> M:
    """Validate one params section (e.g. `adapt.dann`) with a one-line error naming its keys."""
    try:
        return model.model_validate({} if raw is None else raw)
    except ValidationError as error:
        raise AdaptflowError(
            format_validation_error(source, error, tuple(location.split(".")), model)
        ) from None


def parse_params(raw: Any, source: str = str(PARAMS)) -> Params:
    """Validate a params mapping (as read from YAML); a bad one raises a one-line error."""
    if not isinstance(raw, dict):
        raise AdaptflowError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as error:
        raise AdaptflowError(format_validation_error(source, error, model=Params)) from None
    return params


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping (DVC refuses it too;
    plain PyYAML would silently keep the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise AdaptflowError(
                    f"key {key!r} is written twice (lines {seen[key]} and {line}); keep one "
                    "and merge what the two hold"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


_pinned: dict[Path, str] = {}  # params files read once for the whole of a stage run


def read_params_text(path: Path = PARAMS, *, pinned: bool = True) -> str:
    """The file's text (its pinned snapshot while `pinned_params` holds one); one line if it is
    missing or not UTF-8."""
    path = Path(path)
    if pinned and path.resolve() in _pinned:
        return _pinned[path.resolve()]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AdaptflowError(f"{path}: missing; run from the project root") from None
    return decode_utf8(data, path)


@contextlib.contextmanager
def pinned_params(path: Path = PARAMS) -> Iterator[str]:
    """Read the file once: until the block ends, every read in this process sees that text, so
    a stage works with one version of its params even if the file is edited while it runs."""
    key = Path(path).resolve()
    text = read_params_text(path, pinned=False)
    _pinned[key] = text
    try:
        yield text
    finally:
        _pinned.pop(key, None)


def parse_params_yaml(text: str, path: Path = PARAMS) -> Any:
    """Params text as plain data; empty, invalid YAML or a repeated key is one line."""
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except AdaptflowError as error:
        raise AdaptflowError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise AdaptflowError(f"{path}: not valid YAML{where}; fix the syntax") from None
    if raw is None:
        raise AdaptflowError(f"{path}: empty; it needs at least data.source and data.target")
    return raw


def read_params_yaml(path: Path = PARAMS) -> Any:
    """params.yaml as plain data; missing, not UTF-8, empty, invalid YAML or a repeated key is
    one line."""
    return parse_params_yaml(read_params_text(path), Path(path))


def load_params(path: Path = PARAMS) -> Params:
    """Read and validate params.yaml."""
    return parse_params(read_params_yaml(path), str(Path(path)))
