"""params.yaml parsing: defaults, one-line errors naming the param, method sections."""

from __future__ import annotations

import re
import typing

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from adaptflow.core.errors import AdaptflowError
from adaptflow.core.params import MAX_SEED, Params, load_params, parse_params
from adaptflow.entry.preflight import check_params
from adaptflow.methods.base import all_methods, method_class, method_options
from tests.helpers import ROOT

BASE = {"data": {"source": "s", "target": "t"}}


def test_the_shipped_params_file_is_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.data.source == "data/demo/mnist"
    methods = params.adapt.portfolio.members if params.adapt.method == "auto" else []
    for method in methods or [params.adapt.method]:
        method_options(method, params.adapt.method_sections())


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"adapt": {"lr": -0.1}}, "adapt.lr"),
        ({"adapt": {"batch_size": "many"}}, "adapt.batch_size"),
        ({"pretrain": {"layers": {"trainable_blocks": -5}}}, "pretrain.layers.trainable_blocks"),
        ({"adpt": {}}, "adpt: unknown key"),
        ({"validate": {"min_per_class": 0}}, "validate.min_per_class"),
        ({"validate": {"min_side": 100, "max_side": 10}}, "validate: min_side (100)"),
        ({"data": {"source": "s"}}, "data.target: missing"),
        ({"export": {"atol": 0}}, "export.atol"),
        ({"adapt": {"portfolio": {"members": ["shot", "shot"]}}}, "adapt.portfolio: members must"),
        ({"adapt": {"portfolio": {"members": ["source_only"]}}}, "adapt.portfolio: members are"),
        ({"adapt": {"portfolio": {"members": []}}}, "adapt.portfolio.members"),
        ({"adapt": {"portfolio": {"budget": 0}}}, "adapt.portfolio.budget"),
        ({"adapt": {"portfolio": {"budget": "half"}}}, "adapt.portfolio.budget"),
    ],
)
def test_a_bad_param_gives_one_line_naming_it(override, named):
    with pytest.raises(AdaptflowError) as caught:
        parse_params({**BASE, **override})
    message = str(caught.value)
    assert named in message
    assert "\n" not in message


def test_method_sections_are_validated_by_the_methods_own_model():
    params = parse_params({**BASE, "adapt": {"finetune": {"label_smoothing": 2}}})
    with pytest.raises(AdaptflowError, match="adapt.finetune.label_smoothing"):
        method_options("finetune", params.adapt.method_sections())
    params = parse_params({**BASE, "adapt": {"finetun": {}}})
    with pytest.raises(AdaptflowError, match="adapt.finetun: unknown key"):
        method_options("finetune", params.adapt.method_sections())


def test_an_unknown_method_lists_the_known_ones():
    with pytest.raises(AdaptflowError, match="unknown method 'magic'.*finetune"):
        method_options("magic", {})


def test_broken_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("data:\n  source: [unclosed\n")
    with pytest.raises(AdaptflowError, match=r"params.yaml: not valid YAML at line \d"):
        load_params(path)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(
    section=st.sampled_from(["adapt", "pretrain", "validate", "export", "selection", "data"]),
    key=st.sampled_from(
        [
            "lr",
            "epochs",
            "batch_size",
            "min_per_class",
            "atol",
            "validator",
            "source",
            "image_size",
            "schedule",
            "layers",
            "bogus",
        ]
    ),
    value=scalars,
)
def test_any_params_either_parse_or_fail_with_one_clean_line(section, key, value):
    raw = {**BASE, section: {**BASE.get(section, {}), key: value}}
    try:
        params = parse_params(raw)
    except AdaptflowError as error:
        message = str(error)
        assert message.startswith("params.yaml: ") and "\n" not in message
        assert section in message
    else:
        # compared as YAML text: a NaN (an unknown key's value under adapt, which only the
        # whole-params check refuses) is never equal to itself
        dumped = yaml.safe_dump(params.model_dump(by_alias=True))
        again = parse_params(yaml.safe_load(dumped)).model_dump(by_alias=True)
        assert yaml.safe_dump(again) == dumped


@pytest.mark.parametrize(
    ("override", "suggestion"),
    [
        ({"adapt": {"epocs": 3}}, "adapt.epocs: unknown key; did you mean `epochs`?"),
        ({"data": {"sourse": "s"}}, "data.sourse: unknown key; did you mean `source`?"),
        ({"pretrain": {"layers": {"trainable_block": 1}}}, "did you mean `trainable_blocks`?"),
        ({"selecton": {}}, "selecton: unknown key; did you mean `selection`?"),
    ],
)
def test_a_near_miss_of_a_real_key_says_which_key_was_meant(tmp_path, override, suggestion):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**BASE, **override}))
    with pytest.raises(AdaptflowError, match=re.escape(suggestion)):
        check_params(path)


def test_a_key_written_twice_is_refused_with_both_lines(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        "data: {source: s, target: t}\nadapt:\n  lr: 0.1\nseed: 1\nadapt:\n  epochs: 2\n"
    )
    with pytest.raises(AdaptflowError, match=r"key 'adapt' is written twice \(lines 2 and 5\)"):
        load_params(path)
    path.write_text("data: {source: s, target: t, source: u}\n")
    with pytest.raises(AdaptflowError, match=r"key 'source' is written twice"):
        load_params(path)


@pytest.mark.parametrize("section", ["adapt", "pretrain"])
def test_zero_epochs_is_refused_rather_than_shipping_an_untrained_model(section):
    with pytest.raises(AdaptflowError, match=rf"{section}.epochs: 0 trains nothing"):
        parse_params({**BASE, section: {"epochs": 0}})


@pytest.mark.parametrize("text", ["", "# nothing yet\n"])
def test_an_empty_params_file_says_what_it_needs(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(
        AdaptflowError, match="empty; it needs at least data.source and data.target"
    ):
        load_params(path)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"adapt": {"method": "magic"}}, "adapt.method: unknown method 'magic'"),
        ({"adapt": {"dann": {"trade_of": 1}}}, "adapt.dann.trade_of: unknown key"),
        ({"selection": {"validator": "oracle"}}, "selection.validator: unknown validator"),
        (
            {"adapt": {"method": "shot"}, "selection": {"validator": "source_accuracy"}},
            "source_accuracy needs source data",
        ),
        ({"pretrain": {"backbone": "resnet19"}}, "pretrain.backbone: unknown backbone 'resnet19'"),
        (
            {"adapt": {"method": "auto", "portfolio": {"members": ["shot", "mgic"]}}},
            "adapt.portfolio.members: unknown method(s) mgic",
        ),
        (
            {"adapt": {"method": "auto", "portfolio": {"rule": "oracle"}}},
            "adapt.portfolio.rule: unknown rule 'oracle'",
        ),
        (
            {
                "adapt": {
                    "method": "auto",
                    "portfolio": {"finetune_on_labels": {"epochs": 2, "method": "fixmach"}},
                }
            },
            "adapt.portfolio.finetune_on_labels.method: unknown method 'fixmach'",
        ),
        (
            {"adapt": {"portfolio": {"finetune_on_labels": {"held_out": 1.0}}}},
            "adapt.portfolio.finetune_on_labels.held_out",
        ),
        (
            {"adapt": {"method": "auto", "portfolio": {"budget": 1.2}}},
            "adapt.portfolio.budget: 1.2 is below what 7 members need over 5 epochs (2.40",
        ),
        (
            {"adapt": {"method": "auto", "shot": {"threshold": 1}}},
            "adapt.shot.threshold: unknown key",
        ),
        (
            {"adapt": {"method": "auto"}, "selection": {"validator": "source_accuracy"}},
            "source_accuracy needs source data, which the source-free method 'adabn'",
        ),
    ],
)
def test_the_whole_params_check_catches_what_only_a_stage_used_to(tmp_path, override, named):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**BASE, **override}))
    with pytest.raises(AdaptflowError, match=re.escape(named)):
        check_params(path)


def test_the_whole_params_check_accepts_auto_and_checks_what_each_member_stage_checks(tmp_path):
    """auto is not a method of its own: each member is checked as its stage would check it."""
    for root in ("s", "t"):
        (tmp_path / root).mkdir()
    path = tmp_path / "params.yaml"
    portfolio = {"members": ["tent", "shot", "dann"], "rule": "adapted_consensus"}
    path.write_text(yaml.safe_dump({**BASE, "adapt": {"method": "auto", "portfolio": portfolio}}))
    assert check_params(path).adapt.method == "auto"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"seed": 2**70}, "seed: input should be less than or equal to 4294967295"),
        (
            {"data": {**BASE["data"], "seed": -1}},
            "data.seed: input should be greater than or equal to 0",
        ),
        ({"adapt": {"epochs": 10**20}}, "adapt.epochs: input should be less than or equal to"),
        ({"pretrain": {"batch_size": 10**9}}, "pretrain.batch_size: input should be less than"),
        ({"adapt": {"lr": 100}}, "adapt.lr: input should be less than or equal to 10"),
        ({"adapt": {"lr": float("inf")}}, "adapt.lr: input should be a finite number"),
        ({"adapt": {"lr": float("nan")}}, "adapt.lr: input should be a finite number"),
        ({"validate": {"max_pixels": 10**12}}, "validate.max_pixels: input should be less than"),
        ({"export": {"latency_repeats": 10**9}}, "export.latency_repeats: input should be less"),
    ],
)
def test_numbers_that_would_fail_later_are_refused_with_their_bound(override, named):
    with pytest.raises(AdaptflowError, match=re.escape(named)):
        parse_params({**BASE, **override})


def _numeric_fields(model: type[BaseModel], prefix: str = ""):
    """(name, constraints) of every int or float param below `model`, list items included."""
    for name, field in model.model_fields.items():
        annotation, metadata = field.annotation, list(field.metadata)
        if typing.get_origin(annotation) is list:  # list[Annotated[int, Field(...)]]
            (annotation,) = typing.get_args(annotation)
            fields = getattr(annotation, "__metadata__", ())  # FieldInfo: its own constraints
            metadata = [c for info in fields for c in getattr(info, "metadata", [info])]
            annotation = typing.get_args(annotation)[0] if fields else annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _numeric_fields(annotation, f"{prefix}{field.alias or name}.")
        elif annotation in (int, float):
            yield f"{prefix}{field.alias or name}", metadata


def test_every_number_a_user_sets_has_a_ceiling():
    """A value that passes the check must not overflow, loop or allocate without end later."""
    models = [("", Params)] + [(f"adapt.{m}.", method_class(m).Options) for m in all_methods()]
    unbounded = [
        name
        for prefix, model in models
        for name, metadata in _numeric_fields(model, prefix)
        if not any(
            getattr(c, "le", None) is not None or getattr(c, "lt", None) is not None
            for c in metadata
        )
    ]
    assert unbounded == []


def test_the_largest_seed_seeds_numpy_and_torch():
    from adaptflow.core.devices import epoch_seed, seed_everything

    seed_everything(MAX_SEED)
    seed_everything(epoch_seed(MAX_SEED, 10_000))
    assert np.random.default_rng(MAX_SEED).integers(10) >= 0


def test_a_params_file_that_is_not_utf8_names_the_byte_and_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes(b"data:\n  source: caf\xe9\n  target: t\n")
    with pytest.raises(AdaptflowError) as caught:
        load_params(path)
    assert str(caught.value) == f"{path}: byte 0xe9 on line 2 is not UTF-8; save the file as UTF-8"
