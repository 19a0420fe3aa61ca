"""The rounds of `adaptflow label`, shared by `--export` and `--serve`.

The models of the last `adapt.method: auto` run predict the target-train pool once; from those
predictions and labels/target.csv come where the choice stands (each model's probability of
being the best) and the next round, drawn where the likely best disagree
(adaptflow/adapt/queries.py) and recorded in labels/queries.csv. Labels and queries are read
from their files at every step, so an answer written by another way (an import, an edit) counts.
Never reads target test data.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from adaptflow.adapt.label_finetune import is_finetuned
from adaptflow.adapt.labeled_selection import LabeledChoice, choose_with_labels, load_labeled_target
from adaptflow.adapt.queries import plan_round
from adaptflow.adapt.rules import Evidence, gather_evidence
from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import load_torch, read_json, write_csv
from adaptflow.data.labels import (
    LABEL_COLUMNS,
    QUERY_COLUMNS,
    labels_by_hash,
    read_table,
    read_train_files,
)

RERUN = "Run `dvc repro` (it reruns validate, adapt, evaluate and at most export)"


def current_labels() -> tuple[pd.DataFrame, pd.DataFrame]:
    """labels/target.csv and labels/queries.csv as they are now (empty when absent)."""
    return read_table(paths.LABELS, LABEL_COLUMNS), read_table(paths.LABEL_QUERIES, QUERY_COLUMNS)


@dataclass
class Candidates:
    """The portfolio's models with their predictions on target train, made once."""

    evidence: Evidence
    target_sha256: list[str]  # of the pool's images, in the order of the predictions
    classes: list[str]
    seed: int

    @classmethod
    def load(cls) -> Candidates:
        """The models `models/selection/record.json` lists, after an `auto` run."""
        from adaptflow.core.devices import resolve_device
        from adaptflow.core.params import load_params
        from adaptflow.data.pools import load_pool
        from adaptflow.models.classifier import load_classifier

        params = load_params()
        record = read_json(paths.SELECTION_RECORD)
        if "models" not in record:
            raise AdaptflowError(
                "adaptflow label chooses among the models of an `adapt.method: auto` run; "
                "set it in params.yaml and run `dvc repro` first"
            )
        models = {
            name: load_classifier(paths.SELECTION / file)[0]
            for name, file in record["models"].items()
            if not is_finetuned(name)  # it trained on labels: they cannot judge it again
        }
        pool = load_pool(paths.TARGET_TRAIN, "target train", labeled=False)
        device = resolve_device(params.device)
        evidence = gather_evidence(models, None, pool, device, max_samples=0)
        sha256 = list(load_torch(paths.TARGET_TRAIN, mmap=True)["sha256"])
        return cls(evidence, sha256, list(pool.classes), params.seed)

    def standing(self) -> LabeledChoice:
        """Each model's probability of being the best with the labels written so far."""
        labeled = load_labeled_target(labels_by_hash(*current_labels()))
        return choose_with_labels(self.evidence, labeled, self.evidence.device, self.seed)

    def draw(self, count: int) -> pd.DataFrame:
        """Draw the next round among the images never asked about nor labeled, append it to
        labels/queries.csv and return its rows."""
        labels, queries = current_labels()
        table = labels_by_hash(labels, queries)
        files = read_train_files()
        asked = files["sha256"].isin(table["sha256"]) | files["path"].isin(queries["path"])
        unasked = files[~asked]
        next_round = 1 + max((int(r) for r in queries["round"]), default=0)
        planned = plan_round(
            self.evidence,
            self.target_sha256,
            dict(zip(unasked["sha256"], unasked["path"], strict=True)),
            load_labeled_target(table),
            seed=self.seed + next_round,
            count=count,
        )
        print(
            f"favourite before round {next_round}: {planned.favourite} "
            f"(best with probability {planned.p_best[planned.favourite]:.2f})"
        )
        drawn = pd.DataFrame(
            {
                "path": planned.paths,
                "round": str(next_round),
                "probability": [f"{d.probability:.6g}" for d in planned.draws],
                "pool": [str(d.pool) for d in planned.draws],
            },
            columns=QUERY_COLUMNS,
        )
        write_csv(paths.LABEL_QUERIES, pd.concat([queries, drawn], ignore_index=True))
        return drawn
