"""Stage pretrain: the source model (trained on the source, from scratch or pretrained weights)."""

from adaptflow import paths
from adaptflow.cli import run_stage
from adaptflow.devices import resolve_device
from adaptflow.io import write_json
from adaptflow.live import live_logger
from adaptflow.models import save_classifier
from adaptflow.params import load_params
from adaptflow.source_model import describe_backbone, train_source_model


def main() -> None:
    params = load_params()
    device = resolve_device(params.device)
    with live_logger("pretrain") as live:
        source = train_source_model(params, device, live)
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
        },
    )


if __name__ == "__main__":
    run_stage(main)
