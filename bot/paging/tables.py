"""Pages: a human paged about something (today: a rollback), and what of the page has been delivered.

A page row is written before anything is sent (for a rollback, in the rollback's own transaction), and every
delivery (the alert-channel post, the DM, the PagerDuty events, the escalation, the message updates after a
click) is recorded only after it succeeded. What is still owed is derived from these columns, so whoever
holds the page's claim next sends exactly what is missing.

Slack and PagerDuty are delivered apart, each with its own claim and back-off: PagerDuty is the way a page
gets through when Slack does not, so it never waits behind a Slack call.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, Text, UniqueConstraint, and_, or_
from sqlalchemy.orm import Mapped, mapped_column

from bot.store.base import Base, utcnow

OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"
# The places a page's alert may go, in order.
ALERT_CHANNEL, ROLLOUT_THREAD, MODEL_CHANNEL, ADMINS_DM = "alert_channel", "thread", "model_channel", "admins_dm"
ALERT_PLACES = (ALERT_CHANNEL, ROLLOUT_THREAD, MODEL_CHANNEL, ADMINS_DM)


class Page(Base):
    __tablename__ = "pages"
    __table_args__ = (
        UniqueConstraint("dedup_key", name="uq_pages_dedup_key"),
        # The escalation job's two questions: which open pages are old enough, which still owe a delivery.
        Index("ix_pages_state_created_at", "state", "created_at"),
        Index("ix_pages_settled_version", "settled_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))  # rollback (more kinds may follow)
    # One page per incident: for a rollback "modelbot-rollout-<id>"; also PagerDuty's dedup_key.
    dedup_key: Mapped[str] = mapped_column(String(255))
    model: Mapped[str | None] = mapped_column(String(128), index=True)
    rollout_id: Mapped[int | None] = mapped_column(Integer, index=True)
    title: Mapped[str] = mapped_column(Text)  # mrkdwn headline, already escaped
    reason: Mapped[str | None] = mapped_column(Text)  # as typed or computed; escaped when rendered
    automatic: Mapped[bool] = mapped_column(Boolean, default=False)
    actor: Mapped[str | None] = mapped_column(String(32))  # who caused it, when a person did
    # Where the incident's own story is told (the rollout thread), linked from the page.
    source_channel: Mapped[str | None] = mapped_column(String(32))
    source_ts: Mapped[str | None] = mapped_column(String(32))
    source_link: Mapped[str | None] = mapped_column(Text)
    # Slack IDs the page mentions, space-separated: the on-call, else the model's owners. Fixed at paging time
    # so a retry mentions whoever was on call when it happened.
    notify: Mapped[str] = mapped_column(String(255), default="")
    dm_user: Mapped[str | None] = mapped_column(String(32))  # set when the on-call is a user (not a group)
    pagerduty: Mapped[bool] = mapped_column(Boolean, default=False)  # PAGERDUTY_ROUTING_KEY was set

    state: Mapped[str] = mapped_column(String(16), default=OPEN)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_by: Mapped[str | None] = mapped_column(String(32))
    acknowledged_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(32))  # None with resolved_at set: modelbot did
    resolved_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]

    # Deliveries: each set only after Slack / PagerDuty accepted it.
    alert_channel: Mapped[str] = mapped_column(String(32))
    alert_ts: Mapped[str | None] = mapped_column(String(32))
    dm_channel: Mapped[str | None] = mapped_column(String(32))
    dm_ts: Mapped[str | None] = mapped_column(String(32))
    escalation_ts: Mapped[str | None] = mapped_column(String(32))
    pd_triggered_at: Mapped[datetime | None]
    pd_acknowledged_at: Mapped[datetime | None]
    pd_resolved_at: Mapped[datetime | None]

    # Every change that must reach Slack bumps version; a message is current when its *_version equals it.
    # settled_version == version means nothing is owed, which is the escalation job's cheap "skip" test.
    version: Mapped[int] = mapped_column(Integer, default=1)
    alert_version: Mapped[int] = mapped_column(Integer, default=0)
    dm_version: Mapped[int] = mapped_column(Integer, default=0)
    settled_version: Mapped[int] = mapped_column(Integer, default=0)

    # Who is delivering right now (the web process after a click, a worker): others leave the page alone
    # until the claim is released or expires, so two processes never post the same thing.
    claim_holder: Mapped[str | None] = mapped_column(String(64))
    claim_until: Mapped[datetime | None]

    attempts: Mapped[int] = mapped_column(Integer, default=0)  # delivery passes that left something undone
    last_error: Mapped[str | None] = mapped_column(Text)

    # Scheduling (0010_page_schedule): owed deliveries are taken by next_attempt_at, so a page that keeps
    # failing backs off and never holds back a newer one; owed_since is when the page last became owed.
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    owed_since: Mapped[datetime | None]
    # Where the alert goes: the alert channel, else the rollout's thread (alert_thread_ts, broadcast), else the
    # model's channel, else a DM to the admins. A place that refused the page for good is not tried again.
    alert_place: Mapped[str] = mapped_column(String(16), default=ALERT_CHANNEL, server_default=ALERT_CHANNEL)
    alert_thread_ts: Mapped[str | None] = mapped_column(String(32))
    refusals: Mapped[str | None] = mapped_column(Text)  # "place channel error" lines, for the page and /healthz
    dm_refused: Mapped[str | None] = mapped_column(String(64))  # Slack's error when the on-call's DM is impossible

    # PagerDuty's own delivery (0011_reliability): its claim, its back-off, since when an event is owed.
    pd_claim_holder: Mapped[str | None] = mapped_column(String(64))
    pd_claim_until: Mapped[datetime | None]
    pd_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    pd_next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    pd_owed_since: Mapped[datetime | None]
    pd_last_error: Mapped[str | None] = mapped_column(Text)

    def notify_ids(self) -> list[str]:
        return [x for x in self.notify.split() if x]

    def pagerduty_owed(self) -> list[str]:
        """The PagerDuty events this page still owes, in the order they are sent."""
        if not self.pagerduty:
            return []
        if not self.pd_triggered_at:
            # A page resolved before its trigger got through needs no incident at all.
            return [] if self.resolved_at else ["trigger"]
        if self.resolved_at:
            return [] if self.pd_resolved_at else ["resolve"]
        if self.acknowledged_at and not self.pd_acknowledged_at:
            return ["acknowledge"]
        return []


def pagerduty_owed_clause():
    """SQL for Page.pagerduty_owed() being non-empty."""
    return and_(Page.pagerduty.is_(True), or_(
        and_(Page.pd_triggered_at.is_(None), Page.resolved_at.is_(None)),
        and_(Page.pd_triggered_at.is_not(None), Page.resolved_at.is_not(None), Page.pd_resolved_at.is_(None)),
        and_(Page.pd_triggered_at.is_not(None), Page.resolved_at.is_(None), Page.acknowledged_at.is_not(None),
             Page.pd_acknowledged_at.is_(None)),
    ))
