"""Shared look of every chart: palette, sizes, the rendered result, and the "no data yet" figure.

Charts are drawn with matplotlib's object API (Figure + FigureCanvasAgg), never pyplot, so several threads
can render at once without sharing pyplot's current-figure state.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402  (after the backend is chosen)
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402  (matplotlib's own PNG writer uses Pillow too)

# Okabe-Ito: distinguishable with the common colour-vision deficiencies. Lines also differ by style or marker,
# so nothing is told by colour alone.
BLACK = "#000000"
ORANGE = "#E69F00"
SKY_BLUE = "#56B4E9"
GREEN = "#009E73"
YELLOW = "#F0E442"
BLUE = "#0072B2"
VERMILLION = "#D55E00"
PURPLE = "#CC79A7"
GREY = "#6E6E6E"
LIGHT_GREY = "#BBBBBB"
OKABE_ITO = [BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY_BLUE, BLACK, YELLOW]

# The same role keeps the same colour in every chart: what runs in production is blue, what is being tried
# is orange.
STABLE = BLUE
CANDIDATE = ORANGE

# 7.2 x 4.0 in at 200 dpi is 1440 x 800 px: at least twice the size Slack shows an image inline, so it stays
# sharp on high-density screens, while line charts of this size still compress to well under 300 KB. Fonts are
# sized in points for the 7.2 in width, so text stays legible when Slack scales the image down.
DPI = 200
SIZE = (7.2, 4.0)
TALL = (7.2, 5.0)
WIDE = (12.0, 4.0)
MAX_PNG_BYTES = 300 * 1024
# Above this, the PNG is re-encoded with an indexed palette. Charts hold few distinct colours, so 256 (then 64)
# colours look the same, and the file shrinks 2-3x. Only dense data gets there, so the usual chart does not pay
# the ~50 ms it costs.
PALETTE_ABOVE_BYTES = 240 * 1024

# Applied once, at import: matplotlib's rc_context mutates process-wide state, so switching styles per render
# would not be thread-safe. Only charts/ draws with matplotlib in this app.
matplotlib.rcParams.update(
    {
        "font.family": "DejaVu Sans",
        "font.size": 10.5,
        "axes.titlesize": 12,
        "axes.titleweight": "bold",
        "axes.labelsize": 10.5,
        "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO),
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.color": "#DDDDDD",
        "grid.linewidth": 0.6,
        "legend.fontsize": 9,
        "legend.framealpha": 0.9,
        "figure.titlesize": 13,
        "figure.titleweight": "bold",
        "lines.linewidth": 1.8,
        "figure.facecolor": "white",
    }
)


@dataclass(frozen=True)
class RenderedChart:
    """A chart ready to post: the PNG, a title naming model and version, and alt text with the numbers that
    matter, so the Slack thread reads without the image."""

    png: bytes
    title: str
    alt_text: str
    filename: str = "chart.png"


def new_figure(size: tuple[float, float] = SIZE) -> Figure:
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure) -> bytes:
    """Draw the figure once and encode it as an opaque RGB PNG of exactly the figure's pixel size.

    Not fig.savefig: with a layout engine it draws twice (a dry pass, then the real one) and lays out on both,
    and it writes RGBA although every chart is on opaque white. One canvas draw plus an RGB encode gives the
    same pixels in about a fifth less time, and a file about a tenth smaller.
    """
    fig.canvas.draw()
    rgb = Image.frombuffer("RGBA", fig.canvas.get_width_height(), fig.canvas.buffer_rgba()).convert("RGB")
    png = _encode(rgb)
    for colours in (256, 64):
        if len(png) <= PALETTE_ABOVE_BYTES:
            break
        png = _encode(rgb.quantize(colors=colours, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE))
    return png


def _encode(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", dpi=(DPI, DPI))
    return buf.getvalue()


def render(fig: Figure, title: str, alt_text: str, filename: str) -> RenderedChart:
    return RenderedChart(png=to_png(fig), title=title, alt_text=alt_text, filename=filename)


def no_data(title: str, message: str, filename: str, size: tuple[float, float] = SIZE) -> RenderedChart:
    """A readable placeholder instead of an exception: the thread still says what is missing."""
    fig = new_figure(size)
    fig.suptitle(title)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.55, "No data yet", ha="center", va="center", fontsize=18, color=GREY, weight="bold")
    ax.text(0.5, 0.38, message, ha="center", va="center", fontsize=11, color=GREY, wrap=True)
    return render(fig, title, f"{title}: no data yet. {message}", filename)


def require_columns(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: the data lacks column(s) {', '.join(missing)}; "
                         f"it has {', '.join(map(str, frame.columns)) or 'none'}")


def is_empty(frame: pd.DataFrame | None) -> bool:
    return frame is None or len(frame) == 0


def utc_times(values: pd.Series) -> pd.Series:
    """Datetimes as naive UTC, the form matplotlib's date axis takes without timezone surprises."""
    return pd.to_datetime(values, utc=True, errors="coerce").dt.tz_convert(None)


def numbers(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").astype(float)


def fmt_int(n: float) -> str:
    return f"{int(round(n)):,}"


def fmt_pct(fraction: float, digits: int = 2) -> str:
    if fraction is None or not np.isfinite(fraction):
        return "n/a"
    return f"{fraction * 100:.{digits}f}%"


def fmt_num(x: float, digits: int = 3) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x:.{digits}f}"


def fmt_time(t: pd.Timestamp) -> str:
    return "unknown time" if pd.isna(t) else f"{t:%Y-%m-%d %H:%M} UTC"


def fmt_minutes(minutes: float) -> str:
    if minutes is None or not np.isfinite(minutes):
        return "n/a"
    if minutes < 1:
        return f"{minutes * 60:.0f} s"
    if minutes < 120:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h"


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in str(text)).strip("-") or "chart"
