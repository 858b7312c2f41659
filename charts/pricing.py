"""Hourly price against memory for a region's SageMaker hosting instances, the pick marked."""

from __future__ import annotations

import io

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.ticker import FuncFormatter

# Okabe–Ito: distinguishable with the common colour-vision deficiencies; shapes differ too, so colour is
# never the only cue.
GREY = "#999999"
BLUE = "#0072B2"
VERMILLION = "#D55E00"
BLACK = "#000000"

COLUMNS = {"instance_type", "memory_gib", "usd_per_hour", "fits"}


def price_vs_memory(df: pd.DataFrame, *, pick: str | None = None, current: str | None = None,
                    title: str = "SageMaker hosting: price against memory") -> bytes:
    """PNG bytes. df: one row per instance type with instance_type, memory_gib, usd_per_hour and fits (bool)."""
    missing = COLUMNS - set(df.columns)
    if missing:
        raise ValueError(f"price chart needs columns {sorted(missing)}")
    fig = Figure(figsize=(7.5, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    fits = df["fits"].astype(bool)
    others, fitting = df[~fits], df[fits]
    ax.scatter(others["memory_gib"], others["usd_per_hour"], s=22, marker="x", color=GREY, linewidths=1,
               label=f"does not fit ({len(others)})")
    ax.scatter(fitting["memory_gib"], fitting["usd_per_hour"], s=26, marker="o", color=BLUE, alpha=0.85,
               label=f"fits ({len(fitting)})")
    for name, colour, marker, size, label in (
        (current, BLACK, "D", 70, "running now"),
        (pick, VERMILLION, "*", 220, "cheapest fit"),
    ):
        row = df[df["instance_type"] == name] if name else df.iloc[0:0]
        if row.empty:
            continue
        x, y = float(row["memory_gib"].iloc[0]), float(row["usd_per_hour"].iloc[0])
        ax.scatter([x], [y], s=size, marker=marker, color=colour, edgecolors="white", linewidths=0.8, zorder=3,
                   label=f"{label}: {name}")
        ax.annotate(f"{name}\n${y:.3f}/h", (x, y), xytext=(8, -4 if marker == "*" else 10),
                    textcoords="offset points", fontsize=8, color=colour)
    if len(df) and df["memory_gib"].min() > 0 and df["usd_per_hour"].min() > 0:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        # Powers of two read better as 4, 8, 16 GiB than as 2^2, 2^3, 2^4.
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"${v:g}"))
    ax.set_xlabel("memory (GiB)")
    ax.set_ylabel("on-demand price (USD per hour)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", linewidth=0.5, alpha=0.4)
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
