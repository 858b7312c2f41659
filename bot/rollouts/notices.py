"""A transition's notifications: queued in the Slack outbox once its traffic part is done, delivered apart.

Everything a rollout tells Slack -- the step and rollback messages, the edits that close earlier messages, the
evidence chart, the parent refresh, the forced-promotion alert -- becomes rows of slack_outbox, written in the
same transaction that clears the traffic intent. They are delivered by the outbox delivery job (right away
too, for a command, when Slack answers), with a capped back-off. So a Slack outage of any length delays what
is said, never what SageMaker does: the controller goes on judging, and rolling back, while messages are owed.

The page of a rollback is not one of these rows: it is written with the rollback itself (bot/rollouts/
executor.py) and delivered by the pager's own jobs, so it never waits behind the thread's older messages.

Rows of one rollout are delivered in order, so the thread reads as it happened. A rollout whose thread is not
open yet (its first message is itself still owed) queues its thread's messages without a place: they go
into the thread once it exists.
"""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import update

from bot.chart_loading import load as load_chart_module
from bot.paging import service as pager
from bot.paging.tables import Page
from bot.registry import Model, ModelSpec
from bot.rollouts import chart_data
from bot.rollouts import messages as text
from bot.rollouts.plans import Intent, PageOrder, Post
from bot.rollouts.states import RolloutState
from bot.rollouts.tables import Rollout
from bot.slack import outbox
from bot.store.foundation import Thread, insert_ignore

log = logging.getLogger(__name__)

EDIT, CHART, PAGE = "rollout_edit", "rollout_chart", "rollout_page"
# Slack answers to an edit that mean the message is gone for good: the edit is done as far as it can be.
_EDIT_GONE = {"message_not_found", "cant_update_message", "channel_not_found", "is_archived"}


def subject(rollout_id: int) -> str:
    return f"rollout:{rollout_id}"


def key(rollout_id: int, name: str) -> str:
    return f"rollout/{rollout_id}/{name}"


def fallback_model(services, r: Rollout) -> Model:
    """The rollout's model when it has left the models file: its messages are still drawn."""
    return services.registry.get(r.model) or Model(
        name=r.model, spec=ModelSpec(channel=r.thread_channel or "C0UNKNOWN"), defaults=services.registry.defaults)


def render_post(services, r: Rollout, intent: Intent, post: Post, aws: dict[str, str]) -> tuple[str, list[dict]]:
    """A post's final words: those drawn now say what SageMaker did (a config restored, a variant not retired)."""
    if post.render == "rollback":
        page = intent.page or PageOrder(reason="", automatic=False)
        return text.rollback_message(r, fallback_model(services, r), automatic=page.automatic, actor=page.actor,
                                     reason=page.reason, restored_config=aws.get("restored"), note=aws.get("note"))
    if post.render == "promoted":
        retired = None if aws.get("note") else r.final_config
        return text.promoted_message(r, retired_config=retired, note=aws.get("note"))
    if post.render == "pause":
        return text.pause_message(r, fallback_model(services, r), actor=post.actor, reason=post.reason or "")
    return post.text, post.blocks


def queue(services, session, r: Rollout, intent: Intent, aws: dict[str, str]) -> int:
    """Writes the intent's notifications as outbox rows in `session` (the one that clears the intent).
    `r` is the rollout as committed by the transition. Returns how many rows were queued."""
    sub, queued = subject(r.id), 0

    def add(name: str, **row) -> None:
        nonlocal queued
        queued += outbox.enqueue(session, key=key(r.id, f"{intent.id}:{name}"), subject=sub, **row)

    if intent.page is not None:
        # Opened with the rollback (executor.commit); an intent committed by an older version opens it here.
        pager.open_rollback_page(services, session, model_name=r.model, rollout_id=r.id, reason=intent.page.reason,
                                 automatic=intent.page.automatic, actor=intent.page.actor,
                                 channel=r.thread_channel, thread_ts=r.thread_ts)
    # No thread yet: the thread's rows name no place, and go into the thread once it is open.
    channel, thread_ts = (r.thread_channel, r.thread_ts) if r.thread_ts else (None, None)
    for i, edit in enumerate(intent.updates):
        add(f"edit{i}", kind=EDIT, channel=edit.channel, text=edit.text, blocks=edit.blocks, payload={"ts": edit.ts})
    if intent.chart:
        # Before the new step's message, so the message that keeps changing stays at the bottom of the thread.
        add("chart", kind=CHART, channel=channel, thread_ts=thread_ts)
    for post in intent.posts:
        where = (channel, thread_ts) if post.thread else (post.channel, None)
        if not post.thread and not where[0]:
            continue
        body, blocks = render_post(services, r, intent, post, aws)
        role = {"role": post.role, "state": r.state, "step_index": r.step_index} if post.role else None
        add(post.key, channel=where[0], thread_ts=where[1], text=body, blocks=blocks, broadcast=post.broadcast,
            payload=role)
    if intent.alert is not None:
        model = services.registry.get(r.model)
        alert_channel = model.alert_channel if model else services.registry.defaults.alert_channel
        if alert_channel:
            body, blocks = text.forced_alert(r, fallback_model(services, r), actor=intent.alert.actor,
                                             reason=intent.alert.reason,
                                             thread_link=text.thread_link(r.thread_channel, r.thread_ts))
            add("alert", channel=alert_channel, text=body, blocks=blocks)
    if intent.parent and r.owns_parent and r.thread_channel and r.thread_ts:
        body, blocks = text.parent_message(r, fallback_model(services, r), state_line=text.state_line(r))
        add("parent", kind=EDIT, channel=r.thread_channel, text=body, blocks=blocks, payload={"ts": r.thread_ts})
    return queued


PARENT_ROLE = {"role": "parent"}


def parent_key(rollout_id: int) -> str:
    return key(rollout_id, "parent")


def queue_parent(services, session, r: Rollout, model: Model) -> None:
    """The first message of a rollout's own thread, owed (Slack did not take it yet, or the controller does not
    wait for it): once delivered, the rollout records its thread and the thread's owed rows follow into it."""
    body, blocks = text.parent_message(r, model, state_line=text.state_line(r))
    outbox.enqueue(session, key=parent_key(r.id), subject=subject(r.id), channel=model.channel, text=body,
                   blocks=blocks, payload=PARENT_ROLE)


def queue_waiting(session, active: Rollout, deploy: dict, *, replaced: dict | None = None) -> None:
    """A deploy came while `active` is in progress: it says so in its run's thread (and an earlier waiting
    deploy it replaced says so in its own)."""
    body, blocks = text.waiting_message(active, deploy)
    outbox.enqueue(session, key=key(active.id, f"waiting:{deploy['run_key']}"), subject=f"waiting:{active.id}",
                   channel=deploy["channel"], thread_ts=deploy["thread_ts"], text=body, blocks=blocks)
    if replaced:
        body, blocks = text.waiting_replaced_message(replaced, deploy)
        outbox.enqueue(session, key=key(active.id, f"replaced:{replaced['run_key']}"),
                       subject=f"waiting:{active.id}", channel=replaced["channel"], thread_ts=replaced["thread_ts"],
                       text=body, blocks=blocks)


def queue_not_started(session, r: Rollout, deploy: dict, why: str) -> None:
    """A waiting deploy that could not start when `r` ended: its run's thread says why."""
    body, blocks = text.waiting_not_started_message(deploy, why)
    outbox.enqueue(session, key=key(r.id, f"not-started:{deploy['run_key']}"), subject=f"waiting:{r.id}",
                   channel=deploy["channel"], thread_ts=deploy["thread_ts"], text=body, blocks=blocks)


def queue_failure(services, session, r: Rollout, intent: Intent, what: str, error: str) -> None:
    """Said once per intent: the thread learns that a traffic change is owed, not on every pass."""
    if not r.thread_channel:
        return
    body, blocks = text.failure_notice(what, error)
    outbox.enqueue(session, key=key(r.id, f"{intent.id}:failed"), subject=subject(r.id), channel=r.thread_channel,
                   thread_ts=r.thread_ts, text=body, blocks=blocks)


def deliver(services, rollout_id: int) -> None:
    """Delivers what the rollout owes now, for a caller that may wait on Slack (a command, the run watcher):
    its messages, up to Slack's first failure (the delivery job retries later), and its page if it owes any."""
    outbox.deliver_due(services, subject=subject(rollout_id), stop_at_first_failure=True)
    page = pager.page_for_rollout(services, rollout_id)
    if page is not None and (page.settled_version < page.version or page.pagerduty_owed()):
        pager.deliver(services, page.id)


# ---------------------------------------------------------------------------------------------------------
# How each kind of row is delivered


def _deliver_edit(services, row: outbox.OutboxMessage) -> str | None:
    ts = (row.payload or {}).get("ts")
    try:
        services.slack.chat_update(channel=row.channel, ts=ts, text=row.text, blocks=row.blocks)
    except (SlackApiError, SlackClientError) as exc:
        if isinstance(exc, SlackApiError) and exc.response.get("error") in _EDIT_GONE:
            log.info("outbox: %s: the message to edit is gone (%s)", row.key, exc.response.get("error"))
            return None
        raise outbox.slack_failure(exc, f"the edit of message {ts}") from None
    return ts


def _deliver_chart(services, row: outbox.OutboxMessage) -> str | None:
    """The evidence chart as it stands when it is drawn. A chart that cannot be drawn is left out at once, and
    one Slack refuses for good is given up after a few attempts: the numbers are in the thread anyway."""
    rollout_id = int(row.subject.split(":", 1)[1])
    post_rendered = load_chart_module("bot.slack.charts").post_rendered
    rollout_chart = load_chart_module("charts.rollout").rollout
    with services.store.session() as s:
        r = s.get(Rollout, rollout_id)
        s.expunge(r)
    channel, thread_ts = (row.channel, row.thread_ts) if row.channel else (r.thread_channel, r.thread_ts)
    if not channel:
        raise outbox.Refused(f"the evidence chart of rollout {rollout_id} waits for its thread", permanent=False)
    try:
        evidence, events = chart_data.chart_frames(services, rollout_id)
        chart = rollout_chart(evidence, events, r.model, r.stable_variant, r.candidate_variant)
    except Exception:
        # Our own drawing failed: trying again draws the same failure, and the thread's later messages (a
        # rollback's, say) must not wait behind it. The numbers are in the thread; the chart is left out.
        log.exception("rollout %s: the evidence chart could not be drawn; left out", rollout_id)
        return None
    try:
        post_rendered(services.slack, channel, thread_ts, chart)
    except Exception as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, (SlackApiError, SlackClientError)) else None
        if cause is not None:
            raise outbox.slack_failure(cause, f"the evidence chart of rollout {rollout_id}") from None
        raise
    return None


def _deliver_page(services, row: outbox.OutboxMessage) -> str | None:
    """A page row queued by a version before the page was written with its rollback: opens the page (one per
    rollout, however often this runs); the pager delivers it on its own schedule. Never given up."""
    rollout_id = int(row.subject.split(":", 1)[1])
    with services.store.session() as s:
        r = s.get(Rollout, rollout_id)
        s.expunge(r)
    page = row.payload or {}
    pager.page_rollback(services, model_name=r.model, rollout_id=r.id, reason=page.get("reason", ""),
                        channel=r.thread_channel, thread_ts=r.thread_ts, automatic=bool(page.get("automatic")),
                        actor=page.get("actor"))
    return None


def _thread(services, row: outbox.OutboxMessage) -> tuple[str, str | None] | None:
    """Where a rollout's message queued before its thread was open goes: the thread, once it is."""
    with services.store.session() as s:
        r = s.get(Rollout, int(row.subject.split(":", 1)[1]))
        return (r.thread_channel, r.thread_ts) if r is not None and r.thread_ts else None


def _after_delivery(services, row: outbox.OutboxMessage, ts: str | None) -> None:
    """A step's evidence message or a pause message is posted: the rollout records it (later edits use it),
    unless the rollout has moved on since it was queued. The thread's first message is posted: the rollout
    records its thread (and the page links it), and the first message is brought up to date."""
    role = (row.payload or {}).get("role")
    if role == "parent" and ts:
        _thread_opened(services, int(row.subject.split(":", 1)[1]), row.channel, ts)
        return
    if role not in ("evidence", "pause") or not ts:
        return
    rollout_id = int(row.subject.split(":", 1)[1])
    conditions = [Rollout.id == rollout_id, Rollout.state == row.payload.get("state")]
    values = {f"{role}_ts": ts}
    if role == "evidence":
        conditions.append(Rollout.step_index == row.payload.get("step_index"))
        values["last_evidence"] = None
    else:
        conditions.append(Rollout.state == RolloutState.PAUSED)
    # No version bump: the ts is not a transition, so it never makes a concurrent transition fail.
    with services.store.session() as s:
        s.execute(update(Rollout).where(*conditions).values(**values))


def _thread_opened(services, rollout_id: int, channel: str, ts: str) -> None:
    with services.store.session() as s:
        s.execute(update(Rollout).where(Rollout.id == rollout_id, Rollout.thread_ts.is_(None))
                  .values(thread_channel=channel, thread_ts=ts))
        r = s.get(Rollout, rollout_id)
        insert_ignore(s, Thread.__table__, {"kind": "rollout", "key": str(rollout_id), "model": r.model,
                                            "channel": channel, "ts": ts, "created_at": r.created_at},
                      ["kind", "key"])
        s.execute(update(Page).where(Page.rollout_id == rollout_id, Page.source_ts.is_(None))
                  .values(source_channel=channel, source_ts=ts))
        # The first message was drawn when it was queued: it now says where the rollout has got to.
        body, blocks = text.parent_message(r, fallback_model(services, r), state_line=text.state_line(r))
        outbox.enqueue(s, key=key(rollout_id, f"parent-now:{r.version}"), subject=subject(rollout_id), kind=EDIT,
                       channel=channel, text=body, blocks=blocks, payload={"ts": ts})


outbox.register(EDIT, _deliver_edit)
outbox.register(CHART, _deliver_chart)
outbox.register(PAGE, _deliver_page, give_up=False)
outbox.on_delivered("rollout", _after_delivery)
outbox.resolve_threads("rollout", _thread)
