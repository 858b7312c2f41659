"""The instance history on both databases (a segment per stretch of the same instances, closed when they change
or the endpoint goes, kept open through a failed read), and the 0014_scaling migration matching the tables."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from bot.cost import history
from bot.cost import tables as cost_tables
from bot.scaling import tables as scaling_tables
from bot.store import Store
from bot.store.base import Base

T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)


def seen(variants: tuple[dict, ...], endpoint: str = "churn-prod") -> list[history.Seen]:
    return [history.Seen("churn", endpoint, "us-east-1", variants)]


def v(name: str, count: int | None, weight: float = 1.0, instance_type: str = "ml.m5.large") -> dict:
    return {"name": name, "weight": weight, "instance_type": instance_type, "instance_count": count}


def test_segments_follow_the_instances_and_the_migration_matches_the_tables(database_url):
    store = Store(database_url)
    try:
        store.migrate()
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        ours = {t.__tablename__ for module in (cost_tables, scaling_tables) for t in vars(module).values()
                if isinstance(t, type) and issubclass(t, Base) and t is not Base}
        assert ours == {"instance_segments", "scaling_targets", "scaling_models"}
        assert [d for d in diff if any(name in repr(d) for name in ours)] == []

        steps = [(T0, (v("v41", 2),)),
                 (T0 + timedelta(hours=1), (v("v41", 2),)),                      # unchanged: still one segment
                 (T0 + timedelta(hours=2), (v("v41", 4), v("v42", 1, 0.0))),     # scaled out; a candidate at 0%
                 (T0 + timedelta(hours=3), (v("v41", 4), v("v42", 1, 0.5))),     # the candidate takes traffic
                 (T0 + timedelta(hours=5), (v("v42", 1, 1.0), v("v43", None)))]  # v41 retired; v43 serverless
        for at, variants in steps:
            with store.session() as s:
                history.record(s, seen(variants), at)
        with store.session() as s:  # a read that failed records nothing: the segments stay as they were
            history.record(s, [], T0 + timedelta(hours=6))
            rows = [(r.variant, r.instance_count, r.serving, r.started_at.hour if r.started_at else None,
                     r.ended_at.hour if r.ended_at else None)
                    for r in s.scalars(select(cost_tables.InstanceSegment).order_by(
                        cost_tables.InstanceSegment.variant, cost_tables.InstanceSegment.started_at))]
        assert rows == [("v41", 2, True, 0, 2), ("v41", 4, True, 2, 5),
                        ("v42", 1, False, 2, 3), ("v42", 1, True, 3, None)]
        with store.session() as s:  # the endpoint is gone: everything on it ends
            history.record(s, seen(()), T0 + timedelta(hours=7))
            assert s.scalar(select(cost_tables.InstanceSegment.id).where(
                cost_tables.InstanceSegment.ended_at.is_(None))) is None
    finally:
        store.dispose()
