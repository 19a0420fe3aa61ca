"""Loading stage scripts (stages/*.py) as modules, to call their main() in a test."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

STAGES = Path(__file__).resolve().parents[2] / "stages"


def load_stage(name: str) -> ModuleType:
    """Import stages/<name>.py under a private module name."""
    spec = importlib.util.spec_from_file_location(f"_stage_{name}", STAGES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
