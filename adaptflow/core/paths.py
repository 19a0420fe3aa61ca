"""Where each stage reads and writes: the single source of truth that dvc.yaml mirrors.

tests/guarantees/test_dvc_yaml.py checks that dvc.yaml declares exactly these paths.
"""

from pathlib import Path

PARAMS = Path("params.yaml")

MANIFEST = Path("data/manifest.csv")
CACHE = Path("data/cache")
SOURCE_TRAIN = CACHE / "source_train.pt"
SOURCE_VAL = CACHE / "source_val.pt"
SOURCE_TEST = CACHE / "source_test.pt"
TARGET_TRAIN = CACHE / "target_train.pt"  # images only: no labels, no paths
TARGET_LABELED = CACHE / "target_labeled.pt"  # k labeled images per class (may be empty)
TARGET_TEST = CACHE / "target_test.pt"  # read by evaluate and export only

# the user's target labels (adaptflow/data/labels.py); validate checks them and writes what
# adapt (TARGET_LABELS, by content hash) and `adaptflow label` (TARGET_TRAIN_FILES) read
LABELS = Path("labels/target.csv")
LABEL_QUERIES = Path("labels/queries.csv")  # how `adaptflow label` drew each image it asked for
TARGET_LABELS = Path("data/target_labels.csv")
TARGET_TRAIN_FILES = Path("data/target_train_files.csv")

RANK_CHOICE = Path("models/rank_choice.json")  # the candidate `pretrain.backbone: auto` takes
SOURCE_MODEL = Path("models/source.pt")
ADAPTED_MODEL = Path("models/adapted.pt")
SELECTION = Path("models/selection")  # what label-free selection chose among, and its record
SELECTION_RECORD = SELECTION / "record.json"
PORTFOLIO = Path("models/portfolio")  # adapt.method auto: one folder per member (adapt_member)
ONNX_MODEL = Path("models/model.onnx")

METRICS = Path("metrics")
REPORTS = Path("reports")
PLOTS = Path("plots")

# Where stage outputs live; a stage start sweeps the temporaries a killed run left beside them
# (the demo sweeps its own root, which params choose).
OUTPUT_DIRS = [MANIFEST.parent, CACHE, SOURCE_MODEL.parent, METRICS, REPORTS, PLOTS]

# Scratch state for resumable training; not a pipeline output (git- and dvc-ignored).
CHECKPOINTS = Path(".adaptflow/checkpoints")
RUNGS = Path(".adaptflow/rungs")  # portfolio members' rung states (adaptflow/adapt/rungs.py)
PREFLIGHT = Path(".adaptflow/preflight")  # the params check that passed (entry/preflight.py)


def metrics_file(stage: str) -> Path:
    """The small JSON metrics file a stage writes (`dvc metrics show` reads them)."""
    return METRICS / f"{stage}.json"


def member_dir(member: str) -> Path:
    """Where the adapt_member stage of one portfolio member writes its model and record."""
    return PORTFOLIO / member


def plots_dir(stage: str) -> Path:
    """The dvclive directory of a stage (`dvc plots show` reads it)."""
    return PLOTS / stage


def contained(value: str, param: str, roots: list[Path]) -> Path:
    """Resolve a path given in params; it must lie inside one of `roots` (links resolved)."""
    from adaptflow.core.errors import AdaptflowError

    path = Path(value).expanduser()
    resolved = (path if path.is_absolute() else Path.cwd() / path).resolve()
    allowed = [Path(root).resolve() for root in roots]
    if not any(resolved == root or resolved.is_relative_to(root) for root in allowed):
        raise AdaptflowError(
            f"{param}: {value} resolves to {resolved}, outside "
            f"{' and '.join(str(root) for root in allowed)}; use a path inside the project"
        )
    return resolved
