"""One member of the `adapt.method: auto` portfolio: its params, its training to a rung, and
the model and record its folder holds (`models/portfolio/<member>/`, or a folder the adapt
stage reads when it trains a survivor on)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from adaptflow.adapt.diagnostics import adaptation_warnings
from adaptflow.adapt.member_files import MODEL_FILE, RECORD_FILE
from adaptflow.adapt.one_method import Adaptation, summary_metrics
from adaptflow.adapt.rungs import Member, train_to_rung
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import atomic_dir, read_json, write_json
from adaptflow.core.params import Params
from adaptflow.core.paths import member_dir
from adaptflow.methods.base import all_methods
from adaptflow.models.classifier import load_classifier, save_classifier
from adaptflow.training.checkpoints import checkpoint_directory
from adaptflow.training.job import run_training

SURVIVORS = "portfolio"  # scratch of the survivors' later rungs (checkpoint_directory), read once


def member_params(params: Params, member: str) -> Params:
    """`params` as a one-method run of portfolio member `member`."""
    members = params.adapt.portfolio.members
    if member not in members or member not in all_methods():
        raise AdaptflowError(
            f"adapt.portfolio.members: {member!r} is not a known method among the members "
            f"({', '.join(members)}); choose from {', '.join(sorted(all_methods()))}"
        )
    return params.model_copy(update={"adapt": params.adapt.model_copy(update={"method": member})})


def member_record(result: Adaptation, member: str, warnings: list[str]) -> dict[str, Any]:
    """A trained member's record: its one-method summary, the rung it reached, warnings."""
    return {
        "member": member,
        "active": True,
        **summary_metrics(result, member),
        "trained_to_epoch": result.fit.history[-1]["epoch"],  # the rung it reached
        "resumed_after_epoch": result.fit.resumed_after,  # earlier epochs: a stored rung's
        "warnings": warnings,
    }


def adapt_member(
    params: Params, member: str, epoch: int, directory: Path, script: str, script_args: tuple
) -> None:
    """Train `member` to `epoch` (in torchrun workers when params ask for several processes,
    which rerun `script` with `script_args`) and write its model and record to `directory`."""
    one = member_params(params, member)
    train = partial(_train, one, member, epoch)
    result = run_training(one, "adapt", script, train, script_args=script_args, plots=False)
    if result is None:  # torchrun workers ran it, or this is a rank other than 0
        return
    warnings = adaptation_warnings(result, one)
    with atomic_dir(directory) as written:
        info = {"stage": "adapt_member", "method": member, "epoch": result.selected_epoch}
        save_classifier(written / MODEL_FILE, result.adapted_model, info)
        write_json(written / RECORD_FILE, member_record(result, member, warnings))


def _train(params: Params, member: str, epoch: int, device, live) -> Adaptation | None:
    del live  # members log no plots
    return train_to_rung(params, member, epoch, device)


def rung_arguments(member: str, epoch: int, out: Path) -> tuple[str, ...]:
    """The member script's arguments that train `member` on to `epoch`, its output in `out`."""
    return (member, "--until-epoch", str(epoch), "--out", str(out))


def train_on(params: Params, member: str, epoch: int, script: str) -> Member:
    """Train a surviving member on to `epoch` through its stage `script` (in torchrun workers
    when params ask for several processes), and read back what it wrote."""
    out = checkpoint_directory(SURVIVORS) / f"{member}-epoch{epoch}"
    adapt_member(params, member, epoch, out, script, rung_arguments(member, epoch, out))
    return load_member(member, epoch, out)


def load_member(member: str, epoch: int, directory: Path | None = None) -> Member:
    """A member's model and record as its stage (or a later rung) wrote them; refused, in one
    line, unless it was adapted and reached `epoch` (or its method's last, if earlier)."""
    directory = directory or member_dir(member)
    record = read_json(directory / RECORD_FILE)
    if not record.get("active"):
        raise AdaptflowError(
            f"{directory}: member {member} was not adapted ({record.get('reason')}); "
            "rerun dvc repro"
        )
    expected = min(epoch, record.get("epochs", epoch))  # some train fewer epochs (adabn: one)
    if record.get("trained_to_epoch") != expected:  # absent: written by an older adaptflow
        raise AdaptflowError(
            f"{directory}: trained to epoch {record.get('trained_to_epoch')}, not the rung's "
            f"{epoch}; rerun `dvc repro` (it reruns the member)"
        )
    return load_classifier(directory / MODEL_FILE)[0], record
