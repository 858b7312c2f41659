"""How numbers, times and money read in modelbot's messages, in one place so every capability says
"12 min", "0.20%" and "$1.23" the same way. Escaping and Slack's size limits live in bot/slack/text.py."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from bot.integrations.sagemaker import EndpointState
from bot.store.base import as_utc, utcnow


def is_number(x: Any) -> bool:
    """A real, finite number (not a bool, not NaN): what the numeric formats below can show."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# ---- durations and times ------------------------------------------------------------------------------

def duration(seconds: float | None) -> str:
    """How long something took: "42s", "3m 05s", "2h 10m"; "—" when unknown."""
    if seconds is None or seconds < 0 or math.isnan(seconds):
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    mins, s = divmod(seconds, 60)
    if mins < 60:
        return f"{mins}m {s:02d}s"
    hours, m = divmod(mins, 60)
    return f"{hours}h {m:02d}m"


def minutes(m: float) -> str:
    """A setting or span given in minutes: "30 s" below a minute (a sandbox's bake of 0.5 min is not "0 min"),
    "12 min" below three hours, then hours."""
    m = max(0.0, m)
    if 0 < m < 1:
        return f"{m * 60:.0f} s"
    if m < 180:
        return f"{m:.0f} min"
    return f"{m / 60:.1f} h"


def ago(when: datetime | None) -> str:
    """How long ago, coarsely: "just now", "12 min ago", "5 h ago", "3 days ago"."""
    if when is None:
        return ""
    secs = (utcnow() - as_utc(when)).total_seconds()
    if secs < 90:
        return "just now"
    if secs < 5400:
        return f"{int(secs // 60)} min ago"
    if secs < 172800:
        return f"{int(secs // 3600)} h ago"
    return f"{int(secs // 86400)} days ago"


def age(delta: timedelta) -> str:
    """An age in words, largest unit only: "3 days", "1 hour", "less than a minute"."""
    seconds = max(0, int(delta.total_seconds()))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}" + ("s" if n != 1 else "")
    return "less than a minute"


def clock(at: datetime | None) -> str:
    return f"{at:%H:%M} UTC" if at else "–"


# ---- numbers ------------------------------------------------------------------------------------------

def percent(p: float) -> str:
    """A traffic share already in percent: 10 → "10%", 2.5 → "2.5%"."""
    return f"{p:g}%"


def rate(x: Any) -> str:
    """A fraction as a rate with two decimals: 0.002 → "0.20%"; "–" when not a number."""
    return f"{100 * x:.2f}%" if is_number(x) else "–"


def pp(x: Any) -> str:
    """A difference of rates in percentage points, signed."""
    if not is_number(x):
        return "–"
    return f"{100 * x:+.2f} pp".replace("-", "−")


def interval(iv: Any) -> str:
    """A confidence interval of a rate difference, in percentage points."""
    if not isinstance(iv, (list, tuple)) or len(iv) != 2:
        return "–"
    lo, hi = iv

    def edge(v: Any, sign: str) -> str:
        if is_number(v):
            return f"{100 * v:+.2f}".replace("-", "−")
        return f"{sign}∞" if isinstance(v, float) and math.isinf(v) else "?"

    return f"[{edge(lo, '−')}, {edge(hi, '+')}] pp"


def big(x: float) -> str:
    """An e-value: readable whether it is 3.2 or 10^231."""
    if not is_number(x):
        return "∞"
    return f"{x:.3g}" if x < 1e6 else f"10^{math.log10(x):.0f}"


def number(n: Any) -> str:
    return f"{int(n):,}" if is_number(n) else "–"


def money(usd: float) -> str:
    """Dollars: cents shown below $10,000, and enough digits for a fraction of a cent."""
    if usd >= 10_000:
        return f"${usd:,.0f}"
    if usd >= 1:
        return f"${usd:,.2f}"
    return f"${usd:.4f}".rstrip("0").rstrip(".") if usd else "$0"


# ---- endpoints ----------------------------------------------------------------------------------------

def split_line(state: EndpointState) -> str:
    """An endpoint's traffic split: "`v41` 90% (ml.m5.large) · `v42` 10%"."""
    if not state.variants:
        return "no variants"
    parts = []
    for v in state.variants:
        share = 100 * state.share(v.name)
        extra = f" ({v.instance_type})" if v.instance_type else ""
        parts.append(f"`{v.name}` {share:.0f}%{extra}")
    return " · ".join(parts)
