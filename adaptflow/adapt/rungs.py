"""A budgeted portfolio: successive halving over the members of `adapt.method: auto`.

Every member trains to the first rung (an early epoch of the one `adapt.epochs` schedule); the
configured rule scores them beside the source model and keeps the best two, which go on to the
next rung, where it keeps one, which trains to the end (Jamieson and Talwalkar 2016). The first
rung is the latest epoch whose total member-epochs stay within `adapt.portfolio.budget` times
one method's; `full` trains every member to the end.

A member's state at each rung it reached is kept in `.adaptflow/rungs/<member>/<key>/` (the
resumable training state and snapshots, `epoch_<e>/`), keyed by a fingerprint of what trained it:
its settings, the seed, the device type, the input files, the library's code and torch's version.
Training to an epoch starts from the
latest rung at or before it with the same key, so a changed rule or budget retrains nothing
already trained, and a changed member retrains that member only.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from adaptflow.adapt.one_method import Adaptation, adaptation_job, run_job
from adaptflow.core import paths
from adaptflow.core.code import library_source_hashes
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import fingerprint, load_torch
from adaptflow.core.logs import is_main_process
from adaptflow.core.params import FULL_BUDGET, SOURCE_ONLY, Params
from adaptflow.models.classifier import Classifier
from adaptflow.training.job import job_fingerprint

log = logging.getLogger(__name__)
KEEP = (2, 1)  # members the rule keeps after the first rung, then after the second
KEYS_KEPT = 3  # fingerprints whose rungs stay per member (older ones are deleted)


@dataclass(frozen=True)
class Rung:
    epoch: int  # members train up to this epoch of the `adapt.epochs` schedule
    keep: int | None  # how many the rule keeps after this rung; None: the last rung


def rung_schedule(budget: float | str, members: int, epochs: int) -> list[Rung]:
    """The rungs `adapt.portfolio.budget` pays for: the latest first rung that fits."""
    if budget == FULL_BUDGET or epochs == 0:
        return [Rung(epochs, None)]
    for first in range(epochs, 0, -1):
        rungs = _halving(first, members, epochs)
        if member_epochs(rungs, members) <= float(budget) * epochs + 1e-9:
            return rungs
    least = member_epochs(_halving(1, members, epochs), members) / epochs
    raise AdaptflowError(
        f"adapt.portfolio.budget: {budget} is below what {members} members need over "
        f"{epochs} epochs ({least:.2f}: each member one epoch before the rule drops any); "
        f"raise it, or set it to {FULL_BUDGET}"
    )


def _halving(first: int, members: int, epochs: int) -> list[Rung]:
    rungs, alive, epoch = [], members, first
    for keep in KEEP:
        if keep >= alive:
            continue
        if epoch >= epochs:
            break
        rungs.append(Rung(epoch, keep))
        alive, epoch = keep, epoch * 2
    return [*rungs, Rung(epochs, None)]


def member_epochs(rungs: list[Rung], members: int) -> int:
    """The member-epochs a schedule trains: every member to the first rung, survivors on."""
    spent, previous, alive = 0, 0, members
    for rung in rungs:
        spent += alive * (rung.epoch - previous)
        previous, alive = rung.epoch, rung.keep or alive
    return spent


def schedule_of(params: Params) -> list[Rung]:
    """The rungs of this run's portfolio."""
    portfolio = params.adapt.portfolio
    return rung_schedule(portfolio.budget, len(portfolio.members), params.adapt.epochs)


def train_to_rung(
    params: Params, member: str, epoch: int, device: torch.device
) -> Adaptation | None:
    """Train `member` (`params` as its one-method run) up to `epoch`, from its latest saved rung
    at or before it; keep the new rung. Rank 0 gets the result, other ranks None."""
    job, source_model = adaptation_job(params)
    state_fingerprint = job_fingerprint(job, params, device)
    root = paths.RUNGS / member / fingerprint(state_fingerprint, _code())[:16]
    kept = root / f"epoch_{epoch:04d}"
    work = root / "work"  # the state in training: a killed run goes on after its last epoch
    start = _latest_rung(root, epoch)
    store = kept if start == kept else work  # a rung already reached is read where it lies
    if is_main_process():
        _forget_other_keys(root)
        if store == work:
            _prepare(work, start, epoch, member)
    job = dataclasses.replace(
        job, checkpoints=store, until_epoch=epoch, fingerprint=state_fingerprint
    )
    result = run_job(job, source_model, params, device, live=None)
    if result is not None and store == work:
        os.replace(work, kept)  # no rung of this epoch yet: it would have been the start
    return result


def _prepare(work: Path, start: Path | None, epoch: int, member: str) -> None:
    """`work` holds the state to go on from: an interrupted run's, if it got further than
    `start` without passing `epoch`, else a copy of `start` (None: nothing, train afresh)."""
    start_epoch = _epoch_of(start) if start is not None else 0
    if work.is_dir() and start_epoch < _reached(work) <= epoch:
        log.info("%s: going on from the interrupted run in %s", member, work)
        return
    shutil.rmtree(work, ignore_errors=True)
    if start is not None:
        shutil.copytree(start, work)
        log.info("%s: going on from %s", member, start)


def _code() -> str:
    """What else trains a member: the library's code and torch's version (a fixed bug or a new
    torch must not reuse rungs trained before it)."""
    return fingerprint(torch.__version__, library_source_hashes())


def _epoch_of(rung: Path) -> int:
    return int(rung.name.removeprefix("epoch_"))


def _latest_rung(root: Path, epoch: int) -> Path | None:
    usable = [(_epoch_of(d), d) for d in root.glob("epoch_*") if _epoch_of(d) <= epoch]
    return max(usable)[1] if usable else None


def _reached(work: Path) -> int:
    """The last epoch the state in `work` saved (0: none, or unreadable)."""
    try:
        return int(load_torch(work / "state.pt", mmap=True)["epoch"])
    except (AdaptflowError, KeyError, TypeError, ValueError):
        return 0


def _forget_other_keys(root: Path) -> None:
    """Keep the rungs of the most recently used keys of this member only (disk space)."""
    root.mkdir(parents=True, exist_ok=True)
    os.utime(root)  # the newest key
    keys = sorted(root.parent.iterdir(), key=lambda d: d.stat().st_mtime, reverse=True)
    for old in keys[KEYS_KEPT:]:
        shutil.rmtree(old, ignore_errors=True)


Member = tuple[Classifier, dict[str, Any]]  # a member's model at its latest rung, and its record


@dataclass
class Halving:
    survivors: list[str]  # the members that reached the last rung
    members: dict[str, Member]  # every member at the rung it stopped at
    rungs: list[dict[str, Any]]  # per rung: its epoch, the rule's scores, who was dropped

    def models(self, source_model: Classifier) -> dict[str, Classifier]:
        """The source model and every member at the rung it stopped at: what the final scores
        read (a consensus of the survivors alone would be the survivor itself)."""
        return {SOURCE_ONLY: source_model, **{m: model for m, (model, _) in self.members.items()}}

    def finalists(self, scores: dict[str, float]) -> dict[str, float]:
        """The scores of the source model and the last survivors: the final choice is theirs."""
        return {name: scores[name] for name in (SOURCE_ONLY, *self.survivors)}


def successive_halving(
    rungs: list[Rung],
    first: dict[str, Member],
    source_model: Classifier,
    score: Callable[[dict[str, Classifier]], dict[str, float]],
    advance: Callable[[str, int], Member],
) -> Halving:
    """Score the members at each rung with the source model among them, drop all but the
    rule's best `keep`, and `advance` the survivors to the next rung. `first`: every member at
    the first rung."""
    members, alive, trace = dict(first), list(first), []
    for index, rung in enumerate(rungs):
        if index > 0:
            for member in alive:
                members[member] = advance(member, rung.epoch)
        if rung.keep is None:
            break
        scores = score({SOURCE_ONLY: source_model, **{m: members[m][0] for m in alive}})
        ranked = sorted(alive, key=lambda m: scores[m], reverse=True)
        alive = ranked[: rung.keep]
        trace.append({"epoch": rung.epoch, "scores": scores, "dropped": ranked[rung.keep :]})
        log.info("rung %d (epoch %d): kept %s", index + 1, rung.epoch, ", ".join(alive))
    return Halving(alive, members, trace)


def budget_record(
    params: Params, rungs: list[Rung], halving: Halving, final_scores: dict[str, float]
) -> dict:
    """metrics/adapt.json `budget`: the rungs, and the compute against one method's."""
    members = len(params.adapt.portfolio.members)
    last = {"epoch": rungs[-1].epoch, "scores": final_scores, "dropped": []}
    return {
        "budget": params.adapt.portfolio.budget,
        "rungs": [*halving.rungs, last],
        "member_epochs": member_epochs(rungs, members),
        "single_method_epochs": params.adapt.epochs,
    }
