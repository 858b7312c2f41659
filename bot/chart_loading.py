"""Loading the modules that draw charts on first use, one thread at a time.

The web process stays free of pandas and matplotlib until it really draws (a larger heap lengthens every
ack's wait for the GIL), and matplotlib's first import is not thread-safe: two threads importing different
chart modules at once can break inside it. Every late import of a chart-drawing module goes through here.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType

_lock = threading.Lock()


def load(module: str) -> ModuleType:
    with _lock:
        return importlib.import_module(module)
