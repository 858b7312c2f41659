"""ModelLatency minute by minute since each step began, for the models that judge latency (latency_margin set).

One batched CloudWatch read per region for all such rollouts (bot/integrations/cloudwatch.py's fetch_latency);
the minutes both variants have are paired for the latency test (bot/rollouts/latency_test.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bot.integrations import cloudwatch
from bot.rollouts.judgement import Latency


@dataclass
class LatencyInputs:
    minutes: dict[int, Latency] = field(default_factory=dict)  # rollout id -> its step's minutes, both variants
    not_judged: dict[int, str] = field(default_factory=dict)  # rollout id -> why there is no latency to judge
    calls: int = 0


def read(services, rollouts, region: str, now: datetime) -> LatencyInputs:
    """ModelLatency since each step began for the rollouts whose model judges latency (latency_margin set), in
    one batched read; a rollout whose read failed or came back incomplete is in `not_judged`, with the reason."""
    out = LatencyInputs()
    wanted = [r for r in rollouts if _latency_margin(services, r) is not None]
    if not wanted:
        return out
    queries = [cloudwatch.RolloutQuery(key=r.id, endpoint=r.endpoint, variants=(r.stable_variant, r.candidate_variant),
                                       since=r.when("step_started_at")) for r in wanted]
    try:
        result = services.cloudwatch.fetch_latency(queries, region, end=now)
    except Exception as exc:  # noqa: BLE001 -- a failed read means "not judged", never a crashed tick
        out.not_judged = {r.id: f"CloudWatch's ModelLatency could not be read ({exc})" for r in wanted}
        return out
    out.calls = result.calls
    for r in wanted:
        if r.id in result.latency:
            out.minutes[r.id] = paired(result.latency[r.id], r.stable_variant, r.candidate_variant)
        else:
            out.not_judged[r.id] = result.failed.get(r.id) or result.incomplete.get(r.id) or "no ModelLatency read"
    return out


def paired(minutes: dict[str, dict[datetime, tuple[float, float]]], stable: str, candidate: str) -> Latency:
    """The minutes both variants have, in time order: the latency test compares them minute by minute."""
    s, c = minutes.get(stable, {}), minutes.get(candidate, {})
    both = sorted(set(s) & set(c))
    return Latency(stable_sum=tuple(s[m][0] for m in both), stable_count=tuple(s[m][1] for m in both),
                   candidate_sum=tuple(c[m][0] for m in both), candidate_count=tuple(c[m][1] for m in both))


def _latency_margin(services, r) -> float | None:
    model = services.registry.get(r.model)
    return model.rollout.latency_margin if model is not None else None
