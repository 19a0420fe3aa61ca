"""Data-parallel training: two gloo processes on CPU train what one process trains."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from adaptflow.core.errors import AdaptflowError
from adaptflow.core.params import AugmentParams
from adaptflow.data.augment import RandomAffine
from adaptflow.data.batch import Rows
from adaptflow.training.distributed import World, launch
from adaptflow.training.streams import process_rows
from adaptflow.training.sync_batchnorm import GlobalBatchNorm, synchronize_batchnorm
from tests.helpers import ROOT
from tests.helpers.ddp_worker import run

TOLERANCE = 1e-4  # absolute, on per-epoch losses, validator scores and final weights


def _two_processes(monkeypatch, workdir: Path, *arguments: str) -> None:
    monkeypatch.chdir(workdir)  # the worker runs as a stage would, in a scratch project
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # `-m tests.helpers.ddp_worker` from the repository
    launch(["-m", "tests.helpers.ddp_worker", *arguments], 2)


@pytest.mark.parametrize(
    ("method", "grad_accum_steps", "loader"),
    [("finetune", 1, "main"), ("dann", 4, "workers")],  # 6 steps: groups of 4 and 2
)
def test_two_gloo_processes_match_one_process(
    tmp_path, monkeypatch, method, grad_accum_steps, loader
):
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    run(method, one, grad_accum_steps, loader)
    _two_processes(
        monkeypatch, tmp_path, method, str(two), "--grad-accum-steps", str(grad_accum_steps),
        "--loader", loader,
    )  # fmt: skip
    single, parallel = (torch.load(p, weights_only=True) for p in (one, two))
    assert len(single["history"]) == len(parallel["history"]) == 3
    for (losses, scores), (losses_2, scores_2) in zip(
        single["history"], parallel["history"], strict=True
    ):
        assert losses.keys() == losses_2.keys() and scores.keys() == scores_2.keys()
        for name in losses:
            assert losses_2[name] == pytest.approx(losses[name], abs=TOLERANCE), name
        for name in scores:
            assert scores_2[name] == pytest.approx(scores[name], abs=TOLERANCE), name
    for name, value in single["weights"].items():
        difference = (parallel["weights"][name].float() - value.float()).abs().max().item()
        assert difference <= TOLERANCE, (name, difference)
    for saved in (single, parallel):  # both trained: every trainable weight left its start
        trainable = saved["trainable"]
        moved = {n for n in trainable if not torch.equal(saved["weights"][n], saved["initial"][n])}
        assert trainable and moved == set(trainable)


def test_a_user_error_in_every_worker_exits_2_with_one_line(tmp_path, monkeypatch, capfd):
    with pytest.raises(SystemExit) as stopped:
        _two_processes(monkeypatch, tmp_path, "no_such_method", str(tmp_path / "out.pt"))
    assert stopped.value.code == 2
    errors = capfd.readouterr().err
    assert errors.count("adaptflow error: adapt.method: unknown method 'no_such_method'") == 1
    assert "rank 1 stopped: adapt.method: unknown method" in errors


def test_a_user_error_in_one_worker_only_names_that_process(tmp_path, monkeypatch):
    out = str(tmp_path / "out.pt")
    with pytest.raises(AdaptflowError, match="process 1 of 2 stopped on the error it logged"):
        _two_processes(monkeypatch, tmp_path, "finetune", out, "--fail-on-rank", "1")


def test_process_rows_cover_the_global_batch_once():
    for size in (1, 2, 3):
        rows = [process_rows(10, World(rank, size)) for rank in range(size)]
        covered = [i for r in rows for i in range(r.start, r.start + r.count)]
        assert covered == list(range(10))
        assert max(r.count for r in rows) - min(r.count for r in rows) <= 1


def test_augmenting_rows_of_a_batch_equals_the_rows_of_the_augmented_batch():
    augment = RandomAffine(AugmentParams(translate=0.2, rotate=30, scale=0.2, hflip=True))
    images = torch.rand(8, 1, 12, 12)
    torch.manual_seed(3)
    whole = augment(images)
    torch.manual_seed(3)
    part = augment(images[4:], Rows(4, 4, 8))
    assert torch.allclose(part, whole[4:], atol=1e-6)


def _batchnorm_worker(rank: int, size: int, port: str, out: str) -> None:
    """One process of the GlobalBatchNorm test: its half of a batch through the synced layer."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=size)
    try:
        inputs, weights = _batchnorm_inputs()
        holder = torch.nn.Sequential(torch.nn.BatchNorm2d(3, momentum=None))
        synchronize_batchnorm(holder, torch.device("cpu"))
        rows = inputs[rank * 4 : (rank + 1) * 4].clone().requires_grad_(True)
        (holder(rows) * weights[rank * 4 : (rank + 1) * 4]).sum().backward()
        layer = holder[0]
        kind = type(layer).__name__
        torch.save(
            [rows.grad, layer.running_mean, layer.running_var, layer.weight.grad, kind],
            f"{out}.{rank}",
        )
    finally:
        dist.destroy_process_group()


def _batchnorm_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(8, 3, 5, 5, generator=generator) * 3 + 1
    return inputs, torch.randn(8, 3, 5, 5, generator=generator)


def test_global_batchnorm_on_two_processes_equals_batchnorm_on_the_whole_batch(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    out = str(tmp_path / "rank")
    mp.spawn(_batchnorm_worker, args=(2, port, out), nprocs=2, join=True)
    results = [torch.load(f"{out}.{rank}", weights_only=True) for rank in (0, 1)]
    assert results[0][4] == GlobalBatchNorm.__name__

    inputs, weights = _batchnorm_inputs()
    reference = torch.nn.BatchNorm2d(3, momentum=None)
    inputs.requires_grad_(True)
    (reference(inputs) * weights).sum().backward()
    rows_grad = torch.cat([results[0][0], results[1][0]])
    assert torch.allclose(rows_grad, inputs.grad, atol=1e-5)
    for result in results:
        assert torch.allclose(result[1], reference.running_mean, atol=1e-6)
        assert torch.allclose(result[2], reference.running_var, atol=1e-5)
    # each process holds its share of the weight gradient; DDP sums (averages) them
    assert torch.allclose(results[0][3] + results[1][3], reference.weight.grad, atol=1e-5)
