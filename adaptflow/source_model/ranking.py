"""Which source model to start from (the rank stage): candidates scored before any fine-tuning.

Each candidate (a torchvision backbone with its published weights, or a classifier an earlier
adaptflow run trained) is run once over a labeled sample: the source train split, and the labeled
target images when `adapt.target_labeled_per_class` > 0. Its features and source-label probabilities
feed the estimators of `adaptflow.source_model.transferability`; unlabeled target images give the
label-free domain gap. Target test images and target train labels are never read.

Features are cached per candidate under `.adaptflow/features`, keyed by the candidate, its
weights and the sample, so adding a candidate computes features for that one only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from adaptflow.core.io import fingerprint, load_torch, save_torch, sha256_bytes
from adaptflow.core.params import CandidateParams, RankParams
from adaptflow.data.pools import ImagePool
from adaptflow.models.backbones import check_input_size
from adaptflow.models.classifier import InputAdapter
from adaptflow.models.outputs import predict
from adaptflow.source_model.candidates import Start, candidate_start, weights_identity
from adaptflow.source_model.transferability import (
    ESTIMATORS,
    HIGHER_IS_BETTER,
    hscore,
    leep,
    logme,
    nce,
    proxy_a_distance,
)

log = logging.getLogger(__name__)
FEATURES = Path(".adaptflow/features")


class Probe(nn.Module):
    """A candidate seen as features (backbone output) and its own head, as `predict` wants."""

    def __init__(self, start: Start, channels: int) -> None:
        super().__init__()
        self.input = InputAdapter(channels, start.backbone.channels, start.mean, start.std)
        self.backbone = start.backbone.module
        self.head = start.head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.input(x))


def sample_per_class(pool: ImagePool, per_class: int, seed: int) -> ImagePool:
    """Up to `per_class` images of each class, drawn with a fixed seed."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for cls in range(len(pool.classes)):
        members = torch.nonzero(pool.labels == cls).flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    index = torch.cat(chosen).sort().values
    return ImagePool(pool.name, pool.images[index], pool.labels[index], pool.classes)


def sample(pool: ImagePool, count: int, seed: int) -> ImagePool:
    """`count` images drawn at random (for the unlabeled target)."""
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(pool), generator=generator)[:count].sort().values
    return ImagePool(pool.name, pool.images[index], None, pool.classes)


def extract(
    probe: Probe, pools: dict[str, ImagePool], device: torch.device, batch_size: int
) -> dict[str, dict[str, np.ndarray]]:
    """Features and source-label probabilities of each pool, batched on `device`."""
    probe.to(device)
    autocast = device.type == "cuda"
    extracted = {}
    for name, pool in pools.items():
        outputs = predict(probe, pool, device, batch_size, autocast=autocast)
        extracted[name] = {
            "features": outputs.features.double().numpy(),
            "probs": outputs.logits.double().softmax(dim=1).numpy(),
        }
    probe.cpu()
    return extracted


def cached_features(
    candidate: CandidateParams,
    pools: dict[str, ImagePool],
    channels: int,
    device: torch.device,
    batch_size: int,
    sample_key: str,
) -> dict[str, dict[str, np.ndarray]]:
    """Features of one candidate, from `.adaptflow/features` when its inputs are unchanged
    (then its weights are not even loaded)."""
    key = fingerprint(candidate, weights_identity(candidate), sample_key)
    cache = FEATURES / f"{candidate.name}.pt"
    if cache.is_file():
        stored = load_torch(cache)
        if stored.get("key") == key:
            log.info("rank: %s features from cache", candidate.name)
            return {n: {k: v.numpy() for k, v in d.items()} for n, d in stored["pools"].items()}
    log.info("rank: extracting features of %s", candidate.name)
    start = candidate_start(candidate, channels)
    image_size = next(iter(pools.values())).images.shape[-1]
    check_input_size(start.backbone, start.backbone_name, image_size)
    probe = Probe(start, channels).eval()
    extracted = extract(probe, pools, device, batch_size)
    tensors = {n: {k: torch.from_numpy(v) for k, v in d.items()} for n, d in extracted.items()}
    save_torch(cache, {"key": key, "pools": tensors})
    return extracted


def score_candidate(
    extracted: dict[str, dict[str, np.ndarray]], labels: dict[str, np.ndarray], seed: int
) -> dict[str, Any]:
    """Every estimator on each labeled pool, and the source-target domain gap."""
    scores: dict[str, Any] = {}
    for pool, y in labels.items():
        features, probs = extracted[pool]["features"], extracted[pool]["probs"]
        scores[pool] = {
            "logme": logme(features, y),
            "leep": leep(probs, y),
            "nce": nce(probs.argmax(axis=1), y),
            "hscore": hscore(features, y),
        }
    source, target = extracted["source"]["features"], extracted["target"]["features"]
    scores["domain_gap"] = proxy_a_distance(source, target, seed)
    scores["feature_dim"] = int(source.shape[1])
    return scores


def choose(results: dict[str, dict[str, Any]], estimator: str, pool: str) -> list[str]:
    """Candidate names, best first, by `estimator` on `pool` (the domain gap: smallest first)."""

    def value(name: str) -> float:
        scores = results[name]
        return scores["domain_gap"] if estimator == "domain_gap" else scores[pool][estimator]

    return sorted(results, key=value, reverse=HIGHER_IS_BETTER[estimator])


def _digest(pool: ImagePool) -> str:
    labels = b"" if pool.labels is None else pool.labels.numpy().tobytes()
    return sha256_bytes(pool.images.contiguous().numpy().tobytes() + labels)


def rank(
    params: RankParams,
    source_train: ImagePool,
    target_train: ImagePool,
    target_labeled: ImagePool,
    channels: int,
    device: torch.device,
    seed: int,
) -> dict[str, Any]:
    """Score every candidate; the result is what metrics/rank.json holds."""
    source = sample_per_class(source_train, params.samples_per_class, seed)
    pools = {"source": source, "target": sample(target_train, len(source), seed)}
    labels = {"source": source.labels.numpy()}
    if len(target_labeled):
        pools["target_labeled"] = target_labeled
        labels["target_labeled"] = target_labeled.labels.numpy()
    sample_key = fingerprint({name: _digest(pool) for name, pool in pools.items()})
    results = {
        c.name: score_candidate(
            cached_features(c, pools, channels, device, params.batch_size, sample_key), labels, seed
        )
        for c in params.candidates
    }
    scored_on = "target_labeled" if "target_labeled" in labels else "source"
    rankings = {e: choose(results, e, scored_on) for e in (*ESTIMATORS, "domain_gap")}
    winner = next(c for c in params.candidates if c.name == rankings[params.estimator][0])
    return {
        "estimator": params.estimator,
        "scored_on": scored_on,
        "sample_sizes": {n: len(p) for n, p in pools.items()},
        "candidates": results,
        "rankings": rankings,
        "choice": winner.model_dump(mode="json", exclude_none=True),
    }


def choice_record(result: dict[str, Any]) -> dict[str, Any]:
    """What pretrain reads: only the winner, so reranking that keeps it reruns nothing."""
    return {"enabled": True, "candidate": result["choice"]}


def report(result: dict[str, Any]) -> str:
    """The rank table (Markdown), best candidate first by the chosen estimator."""
    pool = result["scored_on"]
    lines = [
        "# Candidate source models",
        "",
        f"Scored on {result['sample_sizes'][pool]} labeled {pool.replace('_', ' ')} images "
        f"(higher is better) and the source-target domain gap (proxy A-distance, 0 to 2, "
        f"lower is better, no labels). Chosen by `{result['estimator']}`: "
        f"**{result['choice']['name']}**.",
        "",
        "| candidate | LogME | LEEP | NCE | H-score | domain gap | feature dim |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in result["rankings"][result["estimator"]]:
        scores = result["candidates"][name]
        cells = [f"{scores[pool][e]:.4f}" for e in ESTIMATORS]
        cells += [f"{scores['domain_gap']:.3f}", str(scores["feature_dim"])]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"
