"""The data the rollout evidence chart draws: one row per variant per judgement, and the transitions.

Every row of rollout_events with counts is a judgement: the ticks that only waited, and the ticks that decided
(a shift, the bake, a pause, the rollback; without the decisive one, a rollback at the first judgement with
counts had no line at all). Its counts belong to the step it was judged in, which for a shift or a bake row
is the step before the one the row names. The judgement's own bounds ride along from the row's evidence.
"""

from __future__ import annotations

import math

from sqlalchemy import select

from bot.rollouts import tables as store
from bot.rollouts.tables import RolloutEvent

# rollout_events.kind -> the chart's event marker
CHART_KIND = {"start": "start", "shift": "shift", "bake": "promote", "forced": "promote", "promoted": "promote",
              "rollback": "rollback", "pause": "pause", "resume": "resume"}
# A shift or bake row names the step it enters; its counts are those of the step it leaves.
_LEAVING = ("shift", "bake")


def chart_frames(services, rollout_id: int):
    """The rollout's evidence history as the chart wants it: (evidence, events) DataFrames. Events carry the
    candidate's traffic share after each (the chart's traffic panel follows them: before its start event the
    rollout had no traffic of its own, after a rollback its candidate has none)."""
    import pandas as pd  # lazily: the web process stays free of pandas until it draws

    with services.store.session() as s:
        r = store.get(s, rollout_id)
        rows = list(s.scalars(select(RolloutEvent).where(RolloutEvent.rollout_id == rollout_id)
                              .order_by(RolloutEvent.id)))
    model = services.registry.get(r.model) if getattr(services, "registry", None) is not None else None
    margin = model.rollout.margin if model is not None else math.nan
    evidence, events = [], []
    for e in rows:
        if e.stable_requests is not None and e.candidate_requests is not None and (e.kind == "judgement"
                                                                                     or e.kind in CHART_KIND):
            evidence += _evidence_rows(r, e, margin)
        if e.kind in CHART_KIND:
            events.append({"at": e.at, "kind": CHART_KIND[e.kind], "label": (e.detail or {}).get("label", ""),
                           "weight": e.candidate_percent})
    return pd.DataFrame(evidence), pd.DataFrame(events)


def _evidence_rows(r, e: RolloutEvent, margin: float) -> list[dict]:
    step = e.step_index - 1 if e.kind in _LEAVING else e.step_index
    weight = float(r.steps[min(max(step, 0), len(r.steps) - 1)])
    judged = (e.detail or {}).get("evidence") or {}
    stable_rate = (e.stable_5xx or 0) / e.stable_requests if e.stable_requests else math.nan
    upper = judged.get("upper_5xx")
    bound = stable_rate + upper if _number(upper) and math.isfinite(stable_rate) else math.nan
    against = _ratio(judged.get("statistic"), judged.get("threshold"))
    # A shift needs both error types: the one further from it is the one to watch.
    both = [_ratio(judged.get(f"shift_statistic_{k}"), judged.get("shift_threshold")) for k in ("5xx", "4xx")]
    shift = min(both) if all(math.isfinite(x) for x in both) else math.nan
    out = []
    for variant, n, errors, share, is_candidate in (
        (r.stable_variant, e.stable_requests, e.stable_5xx, 100 - weight, False),
        (r.candidate_variant, e.candidate_requests, e.candidate_5xx, weight, True),
    ):
        lower, upper_band = wilson(errors or 0, n or 0)
        out.append({"at": e.at, "variant": variant, "requests": n, "errors": errors,
                    "rate": (errors / n) if n else math.nan, "lower": lower, "upper": upper_band, "weight": share,
                    "bound": bound if is_candidate else math.nan,
                    "shift_line": stable_rate + margin if is_candidate else math.nan,
                    "evidence": against, "shift_evidence": shift})
    return out


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _ratio(value, threshold) -> float:
    """An e-value as the fraction of the way to its decision (1: decided)."""
    return value / threshold if _number(value) and _number(threshold) and threshold > 0 else math.nan


def wilson(errors: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """A 95% band for one variant's error rate, for the chart only (the decision uses the judgement's test)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = errors / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
