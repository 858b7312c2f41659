"""Retention (jobs/retention.py): what grows with every delivery and tick is pruned past the window, in bounded
batches, and nothing that is still owed, still running or still paged is touched. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.paging.tables import ACKNOWLEDGED, OPEN, RESOLVED, Page
from bot.rollouts.tables import Rollout, RolloutEvent
from bot.slack.outbox import CLAIMED, DROPPED, OWED, POSTED, OutboxMessage
from bot.store.base import utcnow
from bot.store.foundation import SlackDelivery
from jobs import retention

OLD, RECENT = timedelta(days=100), timedelta(days=10)


def rollout(s, name: str, state: str, *, started: timedelta, ended: timedelta | None) -> int:
    now = utcnow()
    r = Rollout(model=name, active_model=None if ended else name, source="slack", endpoint=f"{name}-prod",
                region="us-east-1", stable_variant="v1", candidate_variant="v2", steps=[10, 100], state=state,
                created_at=now - started, updated_at=now - (ended or started),
                ended_at=now - ended if ended else None)
    s.add(r)
    s.flush()
    for minutes in (0, 5):
        s.add(RolloutEvent(rollout_id=r.id, at=now - started + timedelta(minutes=minutes), kind="judgement",
                           state=state, step_index=0, candidate_percent=10.0))
    return r.id


def page(s, rollout_id: int | None, state: str, *, settled: bool = True, pagerduty_owed: bool = False) -> int:
    now = utcnow()
    p = Page(kind="rollback", dedup_key=f"modelbot-rollout-{rollout_id}-{state}-{settled}-{pagerduty_owed}",
             rollout_id=rollout_id, title="rolled back", alert_channel="C0ALERTS", state=state, version=3,
             settled_version=3 if settled else 2, resolved_at=now - OLD if state == RESOLVED else None,
             # PagerDuty has the trigger; the resolve is still owed (or went through too).
             pagerduty=True, pd_triggered_at=now - OLD, pd_resolved_at=None if pagerduty_owed else now - OLD)
    s.add(p)
    s.flush()
    return p.id


def outbox(s, subject: str, status: str, age: timedelta) -> str:
    key = f"{subject}/{status}/{age.days}/{utcnow().timestamp()}"
    s.add(OutboxMessage(key=key, subject=subject, channel="C0CHURN", text="evidence", status=status,
                        created_at=utcnow() - age))
    return key


@pytest.fixture
def store(make_services):
    return make_services().store


def seed(store) -> dict:
    """Old and recent rows of every kind; returns, per table, what must survive a pass."""
    keep: dict[str, set] = {"deliveries": set(), "outbox": set(), "events_of": set()}
    with store.session() as s:
        for key, age in (("event:Ev1", OLD), ("event:Ev2", OLD), ("event:Ev3", RECENT)):
            s.add(SlackDelivery(key=key, received_at=utcnow() - age))
        keep["deliveries"].add("event:Ev3")

        done = rollout(s, "done", "promoted", started=OLD + RECENT, ended=OLD)
        paged_open = rollout(s, "paged", "rolled_back", started=OLD, ended=OLD)
        page(s, paged_open, OPEN)
        paged_acknowledged = rollout(s, "acked", "rolled_back", started=OLD, ended=OLD)
        page(s, paged_acknowledged, ACKNOWLEDGED)
        page_owing = rollout(s, "owing", "rolled_back", started=OLD, ended=OLD)
        page(s, page_owing, RESOLVED, settled=False)
        pagerduty_owing = rollout(s, "pdowing", "rolled_back", started=OLD, ended=OLD)
        page(s, pagerduty_owing, RESOLVED, pagerduty_owed=True)
        running = rollout(s, "running", "progressing", started=OLD, ended=None)
        ended_lately = rollout(s, "lately", "promoted", started=OLD, ended=RECENT)
        paged_done = rollout(s, "pageddone", "rolled_back", started=OLD, ended=OLD)
        page(s, paged_done, RESOLVED)
        keep["events_of"] |= {paged_open, paged_acknowledged, page_owing, pagerduty_owing, running, ended_lately}

        outbox(s, f"rollout:{done}", POSTED, OLD)
        outbox(s, f"rollout:{done}", DROPPED, OLD)
        outbox(s, f"rollout:{paged_done}", POSTED, OLD)
        keep["outbox"].add(outbox(s, f"rollout:{done}", OWED, OLD))  # still owed: never
        keep["outbox"].add(outbox(s, f"rollout:{done}", CLAIMED, OLD))  # being delivered
        keep["outbox"].add(outbox(s, f"rollout:{done}", POSTED, RECENT))
        for protected in (paged_open, paged_acknowledged, page_owing, pagerduty_owing, running, ended_lately):
            keep["outbox"].add(outbox(s, f"rollout:{protected}", POSTED, OLD))
        keep["outbox"].add(outbox(s, f"waiting:{running}", POSTED, OLD))  # a deploy waiting for a running rollout
        outbox(s, f"waiting:{done}", POSTED, OLD)
        open_page = page(s, None, OPEN)
        settled_page = page(s, None, RESOLVED)
        keep["outbox"].add(outbox(s, f"page:{open_page}", POSTED, OLD))
        outbox(s, f"page:{settled_page}", POSTED, OLD)
        outbox(s, "misc", POSTED, OLD)
    return keep


def remaining(store) -> dict:
    with store.session() as s:
        return {
            "deliveries": set(s.scalars(select(SlackDelivery.key))),
            "outbox": set(s.scalars(select(OutboxMessage.key))),
            "events_of": set(s.scalars(select(RolloutEvent.rollout_id).distinct())),
        }


def test_a_pass_prunes_only_what_is_done_and_past_the_window(make_services):
    services = make_services()
    keep = seed(services.store)
    with services.store.session() as s:
        before = {"rollouts": len(s.scalars(select(Rollout.id)).all()), "pages": len(s.scalars(select(Page.id)).all())}

    summary = retention.run_once(services)

    assert remaining(services.store) == keep
    assert summary == "pruned 2 Slack deliveries, 6 outbox rows and 4 rollout events older than 90 days"
    with services.store.session() as s:  # the rollouts and pages themselves stay
        assert len(s.scalars(select(Rollout.id)).all()) == before["rollouts"]
        assert len(s.scalars(select(Page.id)).all()) == before["pages"]
    assert retention.run_once(services) == "nothing older than 90 days to prune"


def test_a_pass_is_bounded_and_rows_that_stay_do_not_hold_it_up(make_services, monkeypatch):
    services = make_services()
    monkeypatch.setattr(retention, "BATCH", 2)
    monkeypatch.setattr(retention, "MAX_BATCHES", 3)
    with services.store.session() as s:
        running = rollout(s, "running", "progressing", started=OLD, ended=None)
        # The oldest rows belong to a running rollout: the batches step over them to the prunable ones.
        for _ in range(3):
            outbox(s, f"rollout:{running}", POSTED, OLD + RECENT)
        for i in range(5):
            outbox(s, f"misc{i}", POSTED, OLD)
        for i in range(7):
            s.add(SlackDelivery(key=f"event:Ev{i}", received_at=utcnow() - OLD))

    # At most 3 batches of 2 rows a table: the first two outbox batches hold 3 rows that stay and 1 that goes.
    first = retention.run_once(services)
    assert first == ("pruned 6 Slack deliveries, 3 outbox rows and 0 rollout events older than 90 days; "
                     "more next pass (slack_deliveries, slack_outbox)")
    second = retention.run_once(services)
    assert second == "pruned 1 Slack deliveries, 2 outbox rows and 0 rollout events older than 90 days"
    with services.store.session() as s:
        assert s.scalars(select(OutboxMessage.subject)).all() == [f"rollout:{running}"] * 3


def test_the_window_is_a_setting_and_zero_keeps_everything(make_services):
    services = make_services(MODELBOT_RETENTION_DAYS=0)
    seed(services.store)
    assert retention.run_once(services) == "turned off (MODELBOT_RETENTION_DAYS=0 keeps everything)"
    assert len(remaining(services.store)["deliveries"]) == 3
    shorter = make_services(MODELBOT_RETENTION_DAYS=5)
    assert retention.run_once(shorter).startswith("pruned 3 Slack deliveries")
