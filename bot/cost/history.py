"""The instance history: written by the worker's endpoint snapshot (bot/status/snapshot.py) on every pass, read
by `/model cost` for instance hours.

A segment stays open while a variant keeps the same instance type, count and traffic (weight above 0 or not);
a pass that sees something else closes it at that pass and opens the next one, so the segments of a variant
follow each other without gaps. A pass that could not read an endpoint changes nothing: the segment stays
open, and is counted on until the next read says otherwise (AWS bills the instances whether modelbot looks or
not).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from bot.cost.tables import InstanceSegment


@dataclass(frozen=True)
class Seen:
    """One endpoint as a snapshot pass read it: variants as the snapshot stores them (name, weight,
    instance_type, instance_count, desired_instance_count)."""

    model: str
    endpoint: str
    region: str
    variants: tuple[dict, ...]


def _state(v: dict) -> tuple[str | None, int, bool] | None:
    count = v.get("instance_count")
    if count is None:
        count = v.get("desired_instance_count")
    if count is None:
        return None  # serverless, or not reported: nothing to count
    return v.get("instance_type"), int(count), float(v.get("weight") or 0.0) > 0


def record(session, seen: list[Seen], at: datetime) -> None:
    """Closes the segments that changed or went away and opens their successors, in the caller's transaction."""
    if not seen:
        return
    names = [x.model for x in seen]
    open_rows = session.scalars(select(InstanceSegment).where(InstanceSegment.model.in_(names),
                                                              InstanceSegment.ended_at.is_(None)))
    current: dict[tuple[str, str, str], InstanceSegment] = {}
    for r in open_rows:
        key = (r.model, r.endpoint, r.variant)
        if key in current:  # two passes at once (a live read beside the worker's) opened it twice
            r.ended_at = r.last_seen_at = r.started_at
            continue
        current[key] = r
    unchanged: list[int] = []
    for x in seen:
        now = {v["name"]: s for v in x.variants if (s := _state(v)) is not None}
        for (model, endpoint, variant), row in list(current.items()):
            if model != x.model:
                continue
            state = now.get(variant) if endpoint == x.endpoint else None
            if state == (row.instance_type, row.instance_count, row.serving):
                unchanged.append(row.id)
                now.pop(variant)
            else:
                row.ended_at = row.last_seen_at = at
        for variant, (instance_type, count, serving) in now.items():
            session.add(InstanceSegment(model=x.model, endpoint=x.endpoint, region=x.region, variant=variant,
                                        instance_type=instance_type, instance_count=count, serving=serving,
                                        started_at=at, last_seen_at=at))
    for start in range(0, len(unchanged), 1000):
        session.execute(update(InstanceSegment).where(InstanceSegment.id.in_(unchanged[start:start + 1000]))
                        .values(last_seen_at=at))


def segments(session, model: str, since: datetime) -> list[InstanceSegment]:
    """The model's segments that overlap [since, now): open ones and those that ended after `since`."""
    rows = session.scalars(select(InstanceSegment).where(
        InstanceSegment.model == model,
        (InstanceSegment.ended_at.is_(None)) | (InstanceSegment.ended_at > since)).order_by(
        InstanceSegment.started_at, InstanceSegment.id))
    return list(rows)


def first_seen(session, model: str) -> datetime | None:
    row = session.scalars(select(InstanceSegment.started_at).where(InstanceSegment.model == model)
                          .order_by(InstanceSegment.started_at).limit(1)).first()
    return row
