"""The labels put to work: the kept model fine-tuned on part of the labels, judged on the rest."""

from __future__ import annotations

import pandas as pd
import torch

from adaptflow.adapt import label_finetune
from adaptflow.adapt.label_finetune import (
    finetune_kept,
    is_finetuned,
    probability_better,
    split_labels,
)
from adaptflow.adapt.labeled_selection import load_labeled_target
from adaptflow.core import paths
from adaptflow.core.params import parse_params
from adaptflow.models.classifier import load_classifier
from adaptflow.models.outputs import predict
from tests.helpers.toy import CPU, prepare_project


def test_the_labels_split_into_two_disjoint_parts_neither_empty():
    class Labels:
        def __len__(self) -> int:
            return self.count

    for count, held_out, expected in ((24, 0.5, 12), (2, 0.9, 1), (2, 0.1, 1), (10, 0.3, 3)):
        labels = Labels()
        labels.count = count
        train, held = split_labels(labels, held_out, seed=0)
        assert len(held) == expected and sorted(train + held) == list(range(count))
    assert split_labels(labels, 0.3, seed=0) == split_labels(labels, 0.3, seed=0)


def test_the_fine_tuned_model_is_scored_only_on_the_labels_it_did_not_train_on(
    tmp_path, monkeypatch
):
    prepare_project(tmp_path, scramble=False)
    monkeypatch.chdir(tmp_path)
    manifest = pd.read_csv(paths.MANIFEST)
    train = manifest[(manifest["domain"] == "target") & (manifest["split"] == "train")]
    table = pd.DataFrame({"sha256": train["sha256"], "label": train["label"], "weight": 1.0})
    labeled = load_labeled_target(table)
    params = parse_params(
        {
            "data": {"source": "src", "target": "tgt", "image_size": 8},
            "adapt": {
                "method": "auto",
                "epochs": 2,
                "steps_per_epoch": 3,
                "batch_size": 8,
                "portfolio": {"finetune_on_labels": {"epochs": 2, "held_out": 0.25}},
            },
            "selection": {"validator": "info_max", "max_samples": 64},
        }
    )
    source_model = load_classifier(paths.SOURCE_MODEL)[0]
    start = {k: v.clone() for k, v in source_model.state_dict().items()}
    trained_on = []
    real_finetune = label_finetune.finetune

    def finetune_watched(model, pool, params, device):
        trained_on.append(pool)
        return real_finetune(model, pool, params, device)

    monkeypatch.setattr(label_finetune, "finetune", finetune_watched)
    tuned = finetune_kept("tent", source_model, labeled, params, CPU)

    assert tuned.name == "tent+labels" and is_finetuned(tuned.name)
    record = tuned.record
    assert (record["trained_on"], record["held_out"]) == (len(labeled) - 6, 6)
    assert (record["from"], record["method"], record["epochs"]) == ("tent", "fixmatch", 2)
    assert all(torch.equal(start[k], v) for k, v in source_model.state_dict().items())
    changed = [k for k, v in tuned.model.state_dict().items() if not torch.equal(start[k], v)]
    assert changed  # it trained (the model it started from is untouched)
    # it trained on labeled images none of which is held out
    _, held = split_labels(labeled, 0.25, params.seed)
    [pool] = trained_on
    assert len(pool) == record["trained_on"]
    seen = {bytes(image.numpy()) for image in pool.images}
    assert not seen & {bytes(labeled.pool.images[i].numpy()) for i in held}
    # the held-out counts are those of the held-out images, recomputed here
    images = labeled.pool.images[held]
    truth = labeled.pool.labels[held]
    for name, model in (("tent", source_model), ("tent+labels", tuned.model)):
        pool = type(labeled.pool)("held", images, truth, labeled.pool.classes)
        right = int((predict(model, pool, CPU, 64).logits.argmax(1) == truth).sum())
        assert record["held_out_right"][name] == right
    assert tuned.better == ("accuracy" in record)  # its estimate only when it is kept


def test_a_tie_on_the_held_out_labels_keeps_the_original_and_more_right_wins():
    weights = torch.ones(12)
    same = torch.tensor([[True] * 10 + [False] * 2] * 2)
    assert probability_better(same, weights, seed=0) == 0.0
    better = torch.stack([same[0], torch.tensor([True] * 12)])
    assert probability_better(better, weights, seed=0) > 0.9
    assert probability_better(better.flip(0), weights, seed=0) == 0.0
