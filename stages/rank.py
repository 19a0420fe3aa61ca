"""Stage rank: score candidate source models by transferability, before any fine-tuning."""

from adaptflow.core import paths
from adaptflow.core.io import write_json, write_text
from adaptflow.core.params import load_params
from adaptflow.entry.stage import run_entry_point


def main() -> None:
    params = load_params()
    if not params.rank.enabled:  # the stage stays in dvc.yaml; disabled, it only says so
        write_json(paths.metrics_file("rank"), {"enabled": False})
        write_text(paths.REPORTS / "rank.md", "Ranking is off (rank.enabled: false).\n")
        write_json(paths.RANK_CHOICE, {"enabled": False})
        return
    # imported only when ranking is on: a disabled stage starts without torch (~2 s less)
    from adaptflow.core.devices import resolve_device
    from adaptflow.data.pools import load_pool
    from adaptflow.source_model.ranking import choice_record, rank, report

    result = rank(
        params.rank,
        load_pool(paths.SOURCE_TRAIN, "source train", labeled=True),
        load_pool(paths.TARGET_TRAIN, "target train", labeled=False),
        load_pool(paths.TARGET_LABELED, "labeled target", labeled=True),
        params.data.channels,
        resolve_device(params.device),
        params.seed,
    )
    write_json(paths.metrics_file("rank"), {"enabled": True, **result})
    write_text(paths.REPORTS / "rank.md", report(result))
    write_json(paths.RANK_CHOICE, choice_record(result))


if __name__ == "__main__":
    run_entry_point(main)
