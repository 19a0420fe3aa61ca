"""What a portfolio member's folder holds (`models/portfolio/<member>/`): the file names, and
the record of a member that did not train.

Free of torch: with an `adapt.method` other than auto, each member stage only writes that
record, and starts in a fraction of a second instead of importing the training stack.
"""

from __future__ import annotations

from adaptflow.core.io import atomic_dir, write_json
from adaptflow.core.paths import member_dir

MODEL_FILE, RECORD_FILE = "model.pt", "record.json"


def write_inactive_record(member: str, method: str) -> None:
    """Record, in the member's folder, that `adapt.method` is not auto: nothing was trained."""
    record = {"member": member, "active": False, "reason": f"adapt.method is {method}, not auto"}
    with atomic_dir(member_dir(member)) as directory:
        write_json(directory / RECORD_FILE, record)
