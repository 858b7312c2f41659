"""Warming matplotlib's font cache at process start, so the first chart a user asks for is not the slow one."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")


def warm_font_cache() -> None:
    """Build the font list (seconds on a fresh machine), then draw one small figure in the charts' style, so
    the fonts, glyph caches and chart modules are loaded before the first command instead of during it."""
    from matplotlib import font_manager

    font_manager.findfont("DejaVu Sans")

    import charts.diagnostics  # noqa: F401  (imports are part of the first chart's cost)
    import charts.evaluation  # noqa: F401
    import charts.rollout  # noqa: F401
    import charts.run_history  # noqa: F401
    import charts.status  # noqa: F401
    from charts.style import new_figure, to_png

    import matplotlib.dates as mdates
    import numpy as np

    fig = new_figure((2.0, 1.0))
    ax = fig.add_subplot()
    ax.set_title("warm-up 0123456789 %")
    ax.set_xlabel("time (UTC)")
    at = np.array(["2025-01-01T00:00", "2025-01-01T06:00"], dtype="datetime64[m]")
    ax.plot(at, [0, 1], label="a")
    ax.fill_between(at, [0, 0], [1, 1], alpha=0.2)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.legend()
    to_png(fig)
