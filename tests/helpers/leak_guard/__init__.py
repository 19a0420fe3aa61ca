"""The leak guard's policy: which stage may not read what (the hook is sitecustomize.py here).

Which stage touches which labels (docs/evaluation.md):
- validate lists the class folders of both domains (the labels) to write the manifest;
- prepare reads the manifest and the raw images to write the decoded caches, labels included
  (target test labels for evaluate; with k > 0, k labeled target train images per class);
- rank, pretrain and adapt read the decoded caches dvc.yaml declares for them: never the
  manifest, the raw target folders, the target test cache or evaluation results; adapt reads
  the user's target train labels only as validate checked them (data/target_labels.csv);
- `adaptflow label` reads the models, the target train cache and images, and the labels files:
  never the manifest, the target test images or cache, or evaluation results;
- evaluate reads the target test labels to score; export the target test images for parity.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from adaptflow.core import paths

GUARD_DIR = Path(__file__).resolve().parent
# evaluate's outputs: target test accuracy in disguise
EVALUATION = [
    paths.metrics_file("evaluate"),
    paths.REPORTS / "evaluate.md",
    paths.plots_dir("evaluate"),
]


def forbidden_reads(*target_roots: str | Path) -> dict[str, list[str]]:
    """Stage -> paths (relative to the project) it must not read, for these raw target roots."""
    training = [paths.TARGET_TEST, paths.MANIFEST, *target_roots, *EVALUATION]
    labeling = [paths.TARGET_TEST, paths.MANIFEST, *(Path(r) / "test" for r in target_roots)]
    return {
        # prepare turns folder labels into caches: the manifest and raw folders are its inputs
        "prepare": [str(p) for p in (paths.TARGET_TEST, *EVALUATION)],
        **{stage: [str(p) for p in training] for stage in ("rank", "pretrain", "adapt")},
        "label": [str(p) for p in (*labeling, *EVALUATION)],
    }


def guarded_env(folder: Path, forbidden: dict[str, list[str]], env: dict | None = None) -> dict:
    """`env` (default: os.environ) with the guard on for processes started with it; the policy
    and the log of forbidden reads live in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    policy = folder / "leak_guard.json"
    policy.write_text(json.dumps({"log": str(folder / "reads.jsonl"), "forbidden": forbidden}))
    env = dict(os.environ if env is None else env)
    python_path = [str(GUARD_DIR), *filter(None, [env.get("PYTHONPATH")])]
    return {**env, "PYTHONPATH": os.pathsep.join(python_path), "ADAPTFLOW_LEAK_GUARD": str(policy)}


def forbidden_reads_logged(folder: Path) -> list[dict]:
    """The forbidden reads the guard stopped since `folder`'s log was last cleared."""
    log = folder / "reads.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def clear_log(folder: Path) -> None:
    (folder / "reads.jsonl").unlink(missing_ok=True)
