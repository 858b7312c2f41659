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

from sqlalchemy import insert, select, update

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
    """Closes the segments that changed or went away and opens their successors, in the caller's transaction:
    one SELECT of the open segments, then set-based UPDATEs and one INSERT, whatever the number of endpoints."""
    if not seen:
        return
    t = InstanceSegment
    names = [x.model for x in seen]
    current: dict[str, dict[tuple[str, str], tuple[int, tuple]]] = {}
    ended: list[int] = []
    for row in session.execute(select(t.id, t.model, t.endpoint, t.variant, t.instance_type, t.instance_count,
                                      t.serving).where(t.model.in_(names), t.ended_at.is_(None)).order_by(t.id)):
        mine = current.setdefault(row.model, {})
        if (row.endpoint, row.variant) in mine:  # two passes at once (a live read beside the worker's) opened it twice
            ended.append(row.id)
            continue
        mine[(row.endpoint, row.variant)] = (row.id, (row.instance_type, row.instance_count, bool(row.serving)))
    unchanged: list[int] = []
    opened: list[dict] = []
    for x in seen:
        now = {v["name"]: state for v in x.variants if (state := _state(v)) is not None}
        for (endpoint, variant), (row_id, state) in current.get(x.model, {}).items():
            if endpoint == x.endpoint and now.get(variant) == state:
                unchanged.append(row_id)
                now.pop(variant)
            else:
                ended.append(row_id)
        opened += [dict(model=x.model, endpoint=x.endpoint, region=x.region, variant=variant, instance_type=itype,
                        instance_count=count, serving=serving, started_at=at, last_seen_at=at)
                   for variant, (itype, count, serving) in now.items()]
    for ids, values in ((unchanged, dict(last_seen_at=at)), (ended, dict(last_seen_at=at, ended_at=at))):
        for start in range(0, len(ids), 1000):
            session.execute(update(t).where(t.id.in_(ids[start:start + 1000])).values(**values))
    if opened:
        session.execute(insert(t), opened)


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
