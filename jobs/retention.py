"""Keeps the tables that grow with every Slack delivery and every controller tick to a window of
MODELBOT_RETENTION_DAYS (default 90; 0 keeps everything).

Pruned, oldest first:
- slack_deliveries: the keys of Slack deliveries handled before the window (Slack retries within minutes);
- slack_outbox: rows delivered (posted) or given up (dropped) before the window. Never a row still owed or being
  delivered, never a row of a rollout (its thread, or a deploy waiting for it) that is unfinished or ended inside
  the window, never a row of a page that is still open or still owes a delivery to Slack or PagerDuty;
- rollout_events: the evidence of rollouts that ended before the window, unless their page is still open.
The rollouts themselves, pages, runs and the audit log are kept.

Each batch is BATCH rows in its own short transaction (a pass never holds a table's locks for long, nor loads a
table into memory), at most MAX_BATCHES batches a table in one pass; what is left waits for the next pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, exists, func, or_, select

from bot.paging.tables import RESOLVED, Page, pagerduty_owed_clause
from bot.rollouts.states import FINAL_STATES
from bot.rollouts.tables import Rollout, RolloutEvent
from bot.slack.outbox import DROPPED, POSTED, OutboxMessage
from bot.store.base import utcnow
from bot.store.foundation import SlackDelivery

NAME = "retention"
BATCH = 1000
MAX_BATCHES = 20
# Outbox subjects that name a rollout (its thread; deploys waiting for it) or a page, by id.
ROLLOUT_SUBJECTS, PAGE_SUBJECT = ("rollout:", "waiting:"), "page:"


@dataclass
class Pruned:
    deliveries: int = 0
    outbox: int = 0
    events: int = 0
    unfinished: list[str] | None = None  # tables with more to prune than one pass takes

    def summary(self, days: float) -> str:
        window = f"{days:g} days"
        if not (self.deliveries or self.outbox or self.events):
            return f"nothing older than {window} to prune"
        text = (f"pruned {self.deliveries} Slack deliveries, {self.outbox} outbox rows and {self.events} rollout "
                f"events older than {window}")
        return text + (f"; more next pass ({', '.join(self.unfinished)})" if self.unfinished else "")


def still_open():
    """A page a human may still act on, or one that still owes Slack or PagerDuty a delivery."""
    return or_(Page.state != RESOLVED, Page.settled_version != Page.version, pagerduty_owed_clause())


def open_page(rollout_id):
    return exists().where(Page.rollout_id == rollout_id, still_open())


def _subject_id(subject: str, prefixes: tuple[str, ...]) -> int | None:
    for prefix in prefixes:
        if subject.startswith(prefix) and subject[len(prefix):].isdigit():
            return int(subject[len(prefix):])
    return None


def ended_before(cutoff: datetime):
    return and_(Rollout.state.in_([str(s) for s in FINAL_STATES]),
                func.coalesce(Rollout.ended_at, Rollout.updated_at) < cutoff)


def prune_deliveries(store, cutoff: datetime) -> tuple[int, bool]:
    total = 0
    for _ in range(MAX_BATCHES):
        with store.session() as s:
            keys = s.scalars(select(SlackDelivery.key).where(SlackDelivery.received_at < cutoff)
                             .order_by(SlackDelivery.received_at).limit(BATCH)).all()
            if keys:
                s.execute(delete(SlackDelivery).where(SlackDelivery.key.in_(keys)))
        total += len(keys)
        if len(keys) < BATCH:
            return total, False
    return total, True


def _prunable_subjects(session, subjects: set[str], cutoff: datetime) -> set[str]:
    """Which of these outbox subjects may lose their delivered rows: a rollout's once it ended before the window
    with no open page, a page's once it is closed and owes nothing, anything else by age alone."""
    rollout_of = {x: _subject_id(x, ROLLOUT_SUBJECTS) for x in subjects}
    page_of = {x: _subject_id(x, (PAGE_SUBJECT,)) for x in subjects}
    rollout_ids = {i for i in rollout_of.values() if i is not None}
    page_ids = {i for i in page_of.values() if i is not None}
    done_rollouts = set(session.scalars(select(Rollout.id).where(
        Rollout.id.in_(rollout_ids), ended_before(cutoff), ~open_page(Rollout.id)))) if rollout_ids else set()
    closed_pages = set(session.scalars(select(Page.id).where(Page.id.in_(page_ids), ~still_open()))) \
        if page_ids else set()
    prunable = set()
    for subject in subjects:
        if rollout_of[subject] is not None:
            if rollout_of[subject] in done_rollouts:
                prunable.add(subject)
        elif page_of[subject] is not None:
            if page_of[subject] in closed_pages:
                prunable.add(subject)
        elif not subject.startswith(ROLLOUT_SUBJECTS + (PAGE_SUBJECT,)):
            prunable.add(subject)
    return prunable


def prune_outbox(store, cutoff: datetime) -> tuple[int, bool]:
    """Delivered rows past the window, a batch at a time in id order; rows that must stay are stepped over (the
    next batch starts after the last id seen), so they never hold the pruning up."""
    total, after = 0, 0
    for _ in range(MAX_BATCHES):
        with store.session() as s:
            rows = s.execute(select(OutboxMessage.id, OutboxMessage.subject).where(
                OutboxMessage.created_at < cutoff, OutboxMessage.status.in_([POSTED, DROPPED]),
                OutboxMessage.id > after).order_by(OutboxMessage.id).limit(BATCH)).all()
            if not rows:
                return total, False
            after = rows[-1].id
            prunable = _prunable_subjects(s, {r.subject for r in rows}, cutoff)
            ids = [r.id for r in rows if r.subject in prunable]
            if ids:
                # The status again: a row cannot be owed again once delivered, but the database decides, not us.
                s.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids),
                                                      OutboxMessage.status.in_([POSTED, DROPPED])))
        total += len(ids)
        if len(rows) < BATCH:
            return total, False
    return total, True


def prune_events(store, cutoff: datetime) -> tuple[int, bool]:
    """The evidence of rollouts that ended before the window (all of a rollout's events go together, so a chart
    is never drawn from half of them)."""
    total = 0
    for _ in range(MAX_BATCHES):
        with store.session() as s:
            rollout_ids = s.scalars(select(Rollout.id).where(
                ended_before(cutoff), ~open_page(Rollout.id),
                exists().where(RolloutEvent.rollout_id == Rollout.id)).order_by(Rollout.id).limit(BATCH)).all()
            if not rollout_ids:
                return total, False
            ids = s.scalars(select(RolloutEvent.id).where(RolloutEvent.rollout_id.in_(rollout_ids))
                            .order_by(RolloutEvent.id).limit(BATCH)).all()
            s.execute(delete(RolloutEvent).where(RolloutEvent.id.in_(ids)))
        total += len(ids)
    return total, True


def prune(store, cutoff: datetime) -> Pruned:
    result = Pruned(unfinished=[])
    result.deliveries, more = prune_deliveries(store, cutoff)
    if more:
        result.unfinished.append("slack_deliveries")
    result.outbox, more = prune_outbox(store, cutoff)
    if more:
        result.unfinished.append("slack_outbox")
    result.events, more = prune_events(store, cutoff)
    if more:
        result.unfinished.append("rollout_events")
    return result


def run_once(services) -> str:
    days = services.settings.MODELBOT_RETENTION_DAYS
    if not days:
        return "turned off (MODELBOT_RETENTION_DAYS=0 keeps everything)"
    return prune(services.store, utcnow() - timedelta(days=days)).summary(days)
