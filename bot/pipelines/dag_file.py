"""The generated pipeline's own code, dags/modelbot_pipelines.py, loaded by path for `modelbot pipeline check`.

The DAG file must not import modelbot (workers run it without modelbot installed), so modelbot runs the DAG
file's steps instead of keeping a copy of them: the check does exactly what the DAG would, metrics included.
Loaded by path because dags/ is not a package; outside Airflow the file defines its steps and builds no DAG.
bot/pipelines/dags is a link to the repository's dags/ folder, so an installed modelbot (a wheel, pip from git)
carries the DAG files too: `modelbot pipeline check` in a model package's CI finds them without a checkout.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from pathlib import Path
from types import ModuleType

ENV = "MODELBOT_PIPELINES_FILE"
DEFAULT = Path(__file__).parent / "dags" / "modelbot_pipelines.py"
_lock = threading.Lock()
_loaded: dict[Path, ModuleType] = {}


class DagFileMissing(Exception):
    pass


def locate(explicit: str | Path | None = None) -> Path:
    path = Path(explicit or os.environ.get(ENV) or DEFAULT).resolve()
    if not path.is_file():
        raise DagFileMissing(f"{path} not found: pass --dag-file or set {ENV} to dags/modelbot_pipelines.py")
    return path


def load(explicit: str | Path | None = None) -> ModuleType:
    path = locate(explicit)
    with _lock:
        if path not in _loaded:
            spec = importlib.util.spec_from_file_location("modelbot_pipelines", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules.setdefault("modelbot_pipelines", module)  # pickles of its classes resolve by this name
            spec.loader.exec_module(module)
            _loaded[path] = module
        return _loaded[path]
