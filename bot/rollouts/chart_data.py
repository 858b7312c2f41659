"""The data the rollout evidence chart draws: one row per variant per judgement, and the transitions."""

from __future__ import annotations

import math

from sqlalchemy import select

from bot.rollouts import tables as store
from bot.rollouts.tables import RolloutEvent

# rollout_events.kind -> the chart's event marker
CHART_KIND = {"start": "start", "shift": "shift", "bake": "promote", "forced": "promote", "promoted": "promote",
              "rollback": "rollback", "pause": "pause", "resume": "resume"}


def chart_frames(services, rollout_id: int):
    """The rollout's evidence history as the chart wants it: (evidence, events) DataFrames."""
    import pandas as pd  # lazily: the web process stays free of pandas until it draws

    with services.store.session() as s:
        r = store.get(s, rollout_id)
        rows = list(s.scalars(select(RolloutEvent).where(RolloutEvent.rollout_id == rollout_id)
                              .order_by(RolloutEvent.id)))
    evidence, events = [], []
    for e in rows:
        if e.kind == "judgement" and e.stable_requests is not None:
            for variant, n, errors, weight in (
                (r.stable_variant, e.stable_requests, e.stable_5xx, 100 - e.candidate_percent),
                (r.candidate_variant, e.candidate_requests, e.candidate_5xx, e.candidate_percent),
            ):
                lower, upper = wilson(errors or 0, n or 0)
                evidence.append({"at": e.at, "variant": variant, "requests": n, "errors": errors,
                                 "rate": (errors / n) if n else float("nan"), "lower": lower, "upper": upper,
                                 "weight": weight})
        elif e.kind in CHART_KIND:
            events.append({"at": e.at, "kind": CHART_KIND[e.kind], "label": (e.detail or {}).get("label", "")})
    return pd.DataFrame(evidence), pd.DataFrame(events)


def wilson(errors: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """A 95% band for one variant's error rate, for the chart only (the decision uses the judgement's test)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = errors / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
