"""Warming matplotlib's font cache at process start, so the first chart a user asks for is not the slow one."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")


def warm_font_cache() -> None:
    from matplotlib import font_manager

    font_manager.findfont("DejaVu Sans")
