"""The rank stage: candidates scored on labeled source images, cached, and taken by pretrain."""

from __future__ import annotations

import math

import pytest
import torch

from adaptflow.core import paths
from adaptflow.core.devices import seed_everything
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import save_torch, write_json
from adaptflow.core.params import CandidateParams, RankParams, parse_params
from adaptflow.data.pools import ImagePool
from adaptflow.models.classifier import Classifier, save_classifier
from adaptflow.source_model import ranking
from adaptflow.source_model.candidates import candidate_start
from adaptflow.source_model.pretrain import train_source_model
from tests.helpers.toy import bars_pool, toy_spec

CPU = torch.device("cpu")


def trained(steps: int, seed: int = 0) -> Classifier:
    """A toy classifier after `steps` SGD steps on the bars task (0: random weights)."""
    seed_everything(seed)
    model = Classifier(toy_spec())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    pool = bars_pool("train", 64, seed=seed)
    for _ in range(steps):
        _, images, labels = next(pool.batches(64, CPU))
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture
def candidates(in_tmp) -> list[CandidateParams]:
    save_classifier(in_tmp / "zoo/good.pt", trained(30))
    save_classifier(in_tmp / "zoo/random.pt", trained(0, seed=1))
    return [
        CandidateParams(name="random", checkpoint="zoo/random.pt"),
        CandidateParams(name="good", checkpoint="zoo/good.pt"),
    ]


def pools(labeled_target: int = 0, shift: float = 0.2) -> tuple[ImagePool, ImagePool, ImagePool]:
    """Source bars, and target bars whose background is `shift` brighter."""
    target_labeled = bars_pool("labeled", labeled_target, seed=4, shift=shift)
    return (
        bars_pool("source", 80, seed=2),
        bars_pool("target", 80, seed=3, labeled=False, shift=shift),
        target_labeled,
    )


def run_rank(candidates, labeled_target: int = 0, shift: float = 0.2, **settings) -> dict:
    params = RankParams(enabled=True, candidates=candidates, samples_per_class=20, **settings)
    return ranking.rank(params, *pools(labeled_target, shift), channels=1, device=CPU, seed=0)


def test_a_trained_candidate_outranks_random_weights(candidates):
    result = run_rank(candidates)
    assert result["scored_on"] == "source" and result["sample_sizes"] == {
        "source": 40,
        "target": 40,
    }
    assert result["choice"] == {"name": "good", "checkpoint": "zoo/good.pt"}
    good, random = result["candidates"]["good"], result["candidates"]["random"]
    for estimator in ("logme", "leep", "nce"):
        assert good["source"][estimator] > random["source"][estimator], estimator
        assert result["rankings"][estimator] == ["good", "random"]
    # H-score only sees separability, and even random conv features separate the toy bars
    assert math.isfinite(good["source"]["hscore"]) and math.isfinite(random["source"]["hscore"])


def test_the_domain_gap_grows_with_the_shift_and_ranks_the_smallest_first(candidates):
    gaps = {
        shift: run_rank(candidates, shift=shift)["candidates"]["good"]["domain_gap"]
        for shift in (0.0, 0.6)
    }
    assert gaps[0.0] < 0.5  # target drawn like the source: hardly separable
    assert gaps[0.6] > 1.5  # a much brighter background: almost perfectly separable
    results = {"far": {"domain_gap": 1.8}, "near": {"domain_gap": 0.4}, "mid": {"domain_gap": 1.0}}
    assert ranking.choose(results, "domain_gap", "source") == ["near", "mid", "far"]


def test_labeled_target_images_are_scored_when_the_user_has_them(candidates):
    result = run_rank(candidates, labeled_target=10, estimator="nce")
    assert result["scored_on"] == "target_labeled"
    assert result["sample_sizes"]["target_labeled"] == 10
    scores = result["candidates"]["good"]["target_labeled"]
    assert all(math.isfinite(v) for v in scores.values())


def test_adding_a_candidate_extracts_features_for_that_one_only(candidates, monkeypatch, in_tmp):
    calls = []
    real = ranking.extract
    monkeypatch.setattr(
        ranking, "extract", lambda probe, *a, **k: calls.append(probe) or real(probe, *a, **k)
    )
    first = run_rank(candidates)
    assert len(calls) == 2
    save_classifier(in_tmp / "zoo/short.pt", trained(3))
    third = CandidateParams(name="short", checkpoint="zoo/short.pt")
    second = run_rank([*candidates, third])
    assert len(calls) == 3  # good and random came from .adaptflow/features
    assert second["candidates"]["good"] == first["candidates"]["good"]
    save_classifier(in_tmp / "zoo/good.pt", trained(5))  # same name, new weights: recomputed
    run_rank(candidates)
    assert len(calls) == 4


def test_a_bad_candidate_is_named_in_one_line(candidates, in_tmp):
    missing = CandidateParams(name="gone", checkpoint="zoo/gone.pt")
    with pytest.raises(AdaptflowError, match=r"rank.candidates.gone.checkpoint: no file at"):
        candidate_start(missing, 1)
    with pytest.raises(
        AdaptflowError, match=r"rank.candidates.good.checkpoint: .* takes 1-channel"
    ):
        candidate_start(candidates[1], 3)
    outside = CandidateParams(name="out", checkpoint="/etc/passwd")
    with pytest.raises(AdaptflowError, match=r"rank.candidates.out.checkpoint: .* outside"):
        candidate_start(outside, 1)


def test_rank_params_are_checked():
    base = {"data": {"source": "s", "target": "t"}}
    with pytest.raises(AdaptflowError, match="pretrain.backbone: auto takes the rank stage"):
        parse_params({**base, "pretrain": {"backbone": "auto"}})
    with pytest.raises(AdaptflowError, match="set exactly one of backbone"):
        parse_params({**base, "rank": {"candidates": [{"name": "x"}]}})
    twice = [{"name": "x", "checkpoint": "a.pt"}, {"name": "x", "checkpoint": "b.pt"}]
    with pytest.raises(AdaptflowError, match="x repeated"):
        parse_params({**base, "rank": {"candidates": twice}})


def test_pretrain_auto_starts_from_the_ranked_candidate(candidates, in_tmp):
    for path, pool in ((paths.SOURCE_TRAIN, pools()[0]), (paths.SOURCE_VAL, bars_pool("v", 20))):
        save_torch(path, {"images": pool.images, "labels": pool.labels, "classes": pool.classes})
    write_json(paths.RANK_CHOICE, {"enabled": True, "candidate": candidates[1].model_dump()})
    params = parse_params(
        {
            "data": {"source": "s", "target": "t", "image_size": 16},
            "rank": {"enabled": True, "candidates": [c.model_dump() for c in candidates]},
            "pretrain": {"backbone": "auto", "epochs": 1, "steps_per_epoch": 1, "lr": 1e-12},
        }
    )
    source = train_source_model(params, CPU)
    good = trained(30)
    convolutions = [k for k, v in good.backbone.state_dict().items() if k.endswith("weight")]
    started = source.model.backbone.state_dict()
    assert all(
        torch.allclose(started[k], good.backbone.state_dict()[k], atol=1e-6) for k in convolutions
    )
    assert source.model.spec.mean == good.spec.mean  # the candidate's input normalization
