"""Stage pretrain: the source model (trained on the source, from scratch or pretrained weights)."""

from functools import partial

from adaptflow.core import paths
from adaptflow.core.io import write_json
from adaptflow.core.params import load_params
from adaptflow.entry.stage import run_entry_point
from adaptflow.models.classifier import save_classifier
from adaptflow.source_model.pretrain import describe_backbone, train_source_model
from adaptflow.training.checkpoints import discard_checkpoints
from adaptflow.training.job import run_training


def main() -> None:
    params = load_params()
    source = run_training(params, "pretrain", __file__, partial(train_source_model, params))
    if source is None:  # torchrun workers ran it, or this is a rank other than 0: nothing to write
        return
    info = {
        "stage": "pretrain",
        "backbone": describe_backbone(params),
        "selected_epoch": source.selected_epoch,
    }
    save_classifier(paths.SOURCE_MODEL, source.model, info)
    write_json(
        paths.metrics_file("pretrain"),
        {
            "source_val_accuracy": source.source_val_accuracy,
            "selected_epoch": source.selected_epoch,
            "epochs": source.fit.epochs,
            "train_seconds": round(source.fit.train_seconds, 3),
            "images_per_second": round(source.fit.images_per_second, 1),
            "peak_gpu_memory_mb": source.fit.peak_memory_mb,
            "processes": source.fit.processes,
        },
    )
    discard_checkpoints("pretrain")  # only now: a failure above resumes after the last epoch


if __name__ == "__main__":
    run_entry_point(main)
