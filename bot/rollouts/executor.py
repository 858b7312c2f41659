"""Carrying a transition out: commit the plan (new state and intent in one optimistic UPDATE), then do the
intent part by part, every part idempotent, and clear it.

A worker killed anywhere in between leaves the intent in the row; the next pass finds it and finishes it:
weights are compared with the endpoint's before they are set, Slack messages are claimed before they are
posted, and the pager opens one page per rollout however often it is called.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta

from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot.chart_loading import load as load_chart_module
from bot.errors import ExternalError
from bot.integrations import sagemaker
from bot.paging import service as pager
from bot.registry import Model, ModelSpec, RolloutSettings
from bot.rollouts import chart_data
from bot.rollouts import messages as text
from bot.rollouts import tables as store
from bot.rollouts.plans import (
    Intent,
    PageOrder,
    Plan,
    Post,
    Retire,
    action_name,
    event_row,
    json_safe,
    plan_abort,
)
from bot.rollouts.tables import Rollout, RolloutEvent, RolloutMessage
from bot.store.base import as_utc, utcnow

log = logging.getLogger(__name__)

# Test hook: the worker dies (as if killed) at the named point: after_intent, after_aws, after_post.
CRASH_ENV = "MODELBOT_CRASH_AT"
CRASH_EXIT_CODE = 86
# A message claimed this long ago without a ts had a poster that died (Slack's timeout with its retries is
# far shorter); the next executor looks for it in the thread and posts it only if it is not there.
CLAIM_STALE_SECONDS = 120
# While a step only waits, its message is edited at most this often (chat.update is rate limited per workspace).
EVIDENCE_EDIT_SECONDS = 60
COMMAND_ATTEMPTS = 5


class RolloutRefused(Exception):
    """The rollout command cannot be done as asked; the message (mrkdwn, escaped) says why and what to do."""


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        log.error("crash injected at %s (%s is set)", name, CRASH_ENV)
        os._exit(CRASH_EXIT_CODE)


def settings_for(services, model_name: str) -> RolloutSettings:
    model = services.registry.get(model_name)
    return model.rollout if model else RolloutSettings()


def commit(services, r: Rollout, plan: Plan) -> Rollout | None:
    """Writes the plan if the row is still the version that was read; None when someone else moved it first."""
    plan.intent.id = f"{r.id}.{r.version + 1}"
    with services.store.session() as s:
        if not store.save(s, r, **plan.values, pending=plan.intent.to_json(), last_error=None):
            return None
        s.add(RolloutEvent(rollout_id=r.id, **plan.event))
    crash_point("after_intent")
    with services.store.session() as s:
        return store.get(s, r.id)


def load(services, rollout_id: int) -> Rollout | None:
    with services.store.session() as s:
        return store.get(s, rollout_id)


def carry_out(services, rollout_id: int) -> str | None:
    """Does the rollout's pending intent; None when it is done (or there was none), else what is still owed.

    An intent that a newer transition replaced is not finished: the newer one is carried out instead (its
    weights include everything the endpoint should now have).
    """
    problem = None
    for _ in range(COMMAND_ATTEMPTS):
        r = load(services, rollout_id)
        if r is None or r.pending is None:
            return problem
        problem, finished = _carry_out_once(services, r)
        if not finished:
            return problem
    return problem


def _carry_out_once(services, r: Rollout) -> tuple[str | None, bool]:
    """One attempt; (what is still owed or None, whether to look at the row again)."""
    intent = Intent.from_json(r.pending)
    problems: list[str] = []
    aws_ok = True
    aws: dict[str, str] = {}
    try:
        aws = _aws_part(services, r, intent)
    except (sagemaker.EndpointNotFound, sagemaker.VariantNotFound) as exc:
        if intent.kind not in ("rollback", "promoted", "aborted"):
            # The endpoint or a variant is gone: this rollout cannot go on. Its abort replaces the intent.
            commit(services, r, plan_abort(r, utcnow(), reason=str(exc)))
            return None, True
        aws = {"note": f":warning: {exc}"}
    except sagemaker.SageMakerError as exc:
        aws_ok = False
        problems.append(str(exc))
    crash_point("after_aws")
    if intent.page:
        try:
            _page(services, r, intent.page)
        except Exception as exc:  # the pager keeps what it owes; the intent keeps asking until it has the page
            log.exception("rollout %s: paging failed", r.id)
            problems.append(f"the page was not sent ({type(exc).__name__}: {exc})")
    if not _still_current(services, r):
        return None, True  # replaced by a newer transition: carry that one out instead
    if aws_ok:
        problems += _slack_part(services, r, intent, aws)
        if intent.resolve_earlier:
            _resolve_earlier_pages(services, r)
    else:
        # Said once per intent: the thread learns the change is owed, not every 30 s.
        rendered = text.failure_notice(_what(intent, r), problems[0])
        post_once(services, r, f"{intent.id}:failed", r.thread_channel, r.thread_ts, rendered)
    if problems:
        _record_error(services, r, "; ".join(problems))
        return "; ".join(problems), False
    _clear(services, r)
    return None, True


def _what(intent: Intent, r: Rollout) -> str:
    kind = intent.kind
    if kind == "rollback":
        return f"The rollback of `{r.endpoint}`"
    if kind == "promoted":
        return f"Retiring `{r.stable_variant}` from `{r.endpoint}`"
    return f"Setting the traffic split of `{r.endpoint}`"


def _aws_part(services, r: Rollout, intent: Intent) -> dict[str, str]:
    """Brings the endpoint where the intent wants it. Returns what the message should say beyond the plan:
    {"restored": config} when a config was restored, {"note": text} when something was left undone."""
    if intent.restore:
        return _restore(r, intent.restore_config)
    if intent.weights and r.target_weights:
        _converge_weights(services, r)
    if intent.retire:
        return _retire(r, intent.retire)
    return {}


def _converge_weights(services, r: Rollout) -> None:
    """Sets the target weights, then reads the target again: if a newer transition changed it meanwhile,
    its weights are set too, so the endpoint always ends on the latest target whoever finishes last."""
    target = r.target_weights
    for _ in range(3):
        sagemaker.set_weights(r.endpoint, r.region, target)
        latest = load(services, r.id)
        if latest is None or not latest.target_weights or latest.target_weights == target:
            return
        target = latest.target_weights


def _retire(r: Rollout, retire: Retire) -> dict[str, str]:
    """After baking: the endpoint moves to a config serving only the candidate (the old variant's instances
    go away). Best effort: if it fails, the old variant simply stays at 0%, which is safe; the thread says so."""
    try:
        state = sagemaker.describe_endpoint(r.endpoint, r.region)
        if state.variant(r.stable_variant) is None:
            return {}  # already retired
        sagemaker.ensure_single_variant_config(state.config_name, retire.variant, retire.config, r.region)
        sagemaker.update_endpoint_config(r.endpoint, retire.config, r.region)
    except sagemaker.SageMakerError as exc:
        return {"note": f":warning: `{r.stable_variant}` was not retired and stays on the endpoint at 0%: {exc}"}
    return {}


def _restore(r: Rollout, config: str | None) -> dict[str, str]:
    """Rolling back a finished rollout: both variants still there -> weights; otherwise the recorded config."""
    state = sagemaker.describe_endpoint(r.endpoint, r.region)
    if state.variant(r.stable_variant) and state.variant(r.candidate_variant):
        sagemaker.set_weights(r.endpoint, r.region, {r.stable_variant: 1.0, r.candidate_variant: 0.0})
        return {}
    if not config:
        raise sagemaker.SageMakerError(
            f"SageMaker endpoint `{r.endpoint}` no longer has `{r.stable_variant}` and no earlier endpoint config "
            "was recorded; nothing was changed."
        )
    sagemaker.update_endpoint_config(r.endpoint, config, r.region)
    return {"restored": config}


def _page(services, r: Rollout, page: PageOrder) -> None:
    pager.page_rollback(
        services, model_name=r.model, rollout_id=r.id, reason=page.reason, channel=r.thread_channel,
        thread_ts=r.thread_ts, automatic=page.automatic, actor=page.actor,
    )


def _resolve_earlier_pages(services, r: Rollout) -> None:
    """A later version of the model made it to production: the pages of its earlier rollbacks are over."""
    with services.store.session() as s:
        earlier = list(s.scalars(select(Rollout.id).where(
            Rollout.model == r.model, Rollout.id < r.id, Rollout.state == "rolled_back")))
    for rollout_id in earlier:
        try:
            pager.resolve_for_rollout(services, rollout_id)
        except Exception:
            log.exception("rollout %s: resolving the page of rollout %s failed", r.id, rollout_id)


def _still_current(services, r: Rollout) -> bool:
    latest = load(services, r.id)
    return latest is not None and (latest.pending or {}).get("id") == r.pending["id"]


def _render_post(services, r: Rollout, intent: Intent, post: Post, aws: dict[str, str]) -> tuple[str, list[dict]]:
    render = post.render
    model = services.registry.get(r.model)
    if render == "rollback":
        page = intent.page or PageOrder(reason="", automatic=False)
        return text.rollback_message(r, model or _fallback_model(services, r), automatic=page.automatic,
                                     actor=page.actor, reason=page.reason,
                                     restored_config=aws.get("restored"), note=aws.get("note"))
    if render == "promoted":
        retired = None if aws.get("note") else r.final_config
        return text.promoted_message(r, retired_config=retired, note=aws.get("note"))
    if render == "pause":
        return text.pause_message(r, model or _fallback_model(services, r), actor=post.actor,
                                  reason=post.reason or "")
    return post.text, post.blocks


def _fallback_model(services, r: Rollout) -> Model:
    return Model(name=r.model, spec=ModelSpec(channel=r.thread_channel or "C0UNKNOWN"),
                 defaults=services.registry.defaults)


def _slack_part(services, r: Rollout, intent: Intent, aws: dict[str, str]) -> list[str]:
    problems: list[str] = []
    client = services.slack
    for upd in intent.updates:
        try:
            client.chat_update(channel=upd.channel, ts=upd.ts, text=upd.text, blocks=upd.blocks)
        except SlackApiError as exc:
            if exc.response.get("error") not in ("message_not_found", "cant_update_message", "channel_not_found"):
                problems.append(f"Slack did not update message {upd.ts} ({exc.response.get('error')})")
        except SlackClientError as exc:
            problems.append(f"Slack could not be reached to update a message ({exc})")
    if intent.chart:
        # Before the new step's message, so the message that keeps changing stays at the bottom of the thread.
        _post_chart(services, r, intent)
    for post in intent.posts:
        channel, thread_ts = (r.thread_channel, r.thread_ts) if post.thread else (post.channel, None)
        if not channel:
            continue
        rendered = _render_post(services, r, intent, post, aws)
        try:
            ts = post_once(services, r, f"{intent.id}:{post.key}", channel, thread_ts, rendered,
                            broadcast=post.broadcast)
        except ExternalError as exc:
            problems.append(str(exc))
            continue
        if ts is None:
            problems.append("a message is being posted by another worker")
    if intent.alert:
        problems += _alert(services, r, intent)
    if intent.parent and r.owns_parent:
        _refresh_parent(services, r)
    return problems


def _alert(services, r: Rollout, intent: Intent) -> list[str]:
    model = services.registry.get(r.model)
    channel = model.alert_channel if model else services.registry.defaults.alert_channel
    if not channel:
        return []
    alert = intent.alert
    rendered = text.forced_alert(r, model or _fallback_model(services, r), actor=alert.actor,
                                 reason=alert.reason, thread_link=text.thread_link(r.thread_channel, r.thread_ts))
    try:
        post_once(services, r, f"{intent.id}:alert", channel, None, rendered)
    except ExternalError as exc:
        return [str(exc)]
    return []


def _refresh_parent(services, r: Rollout) -> None:
    model = services.registry.get(r.model) or _fallback_model(services, r)
    body, blocks = text.parent_message(r, model, state_line=text.state_line(r))
    try:
        services.slack.chat_update(channel=r.thread_channel, ts=r.thread_ts, text=body, blocks=blocks)
    except (SlackApiError, SlackClientError) as exc:
        log.warning("rollout %s: the thread's parent message was not updated: %s", r.id, exc)


class SlackPostError(ExternalError):
    pass


def post_once(services, r: Rollout, key: str, channel: str | None, thread_ts: str | None,
               rendered: tuple[str, list[dict]], *, broadcast: bool = False) -> str | None:
    """Posts a message exactly once per key; returns its ts, or None while another worker is posting it."""
    if not channel:
        return None
    now = utcnow()
    with services.store.session() as s:
        mine = _claim(s, rollout_id=r.id, key=key, channel=channel, ts=None, claimed_at=now)
    if not mine:
        with services.store.session() as s:
            row = s.scalars(select(RolloutMessage).where(RolloutMessage.rollout_id == r.id,
                                                         RolloutMessage.key == key)).one()
        if row.ts:
            return row.ts
        # Claimed earlier: by a live poster (leave it) or a dead one (look for its message first).
        if now - as_utc(row.claimed_at) < timedelta(seconds=CLAIM_STALE_SECONDS):
            return None
        found = _find_posted(services, channel, thread_ts, r.id, key)
        if found:
            _record_ts(services, r.id, key, found)
            return found
        with services.store.session() as s:  # take the claim over; one taker wins
            won = s.execute(update(RolloutMessage).where(
                RolloutMessage.rollout_id == r.id, RolloutMessage.key == key, RolloutMessage.ts.is_(None),
                RolloutMessage.claimed_at == row.claimed_at).values(claimed_at=now)).rowcount == 1
        if not won:
            return None
    body, blocks = rendered
    kwargs = dict(channel=channel, text=body, blocks=blocks, unfurl_links=False,
                  metadata={"event_type": "modelbot_rollout", "event_payload": {"rollout_id": r.id, "key": key}})
    if thread_ts:
        kwargs.update(thread_ts=thread_ts, reply_broadcast=broadcast)
    try:
        ts = services.slack.chat_postMessage(**kwargs)["ts"]
    except SlackApiError as exc:
        _release_claim(services, r.id, key)
        raise SlackPostError(f"Slack refused a rollout message for channel {channel} "
                             f"({exc.response.get('error')}); it is posted on the next pass") from None
    except SlackClientError as exc:
        _release_claim(services, r.id, key)
        raise SlackPostError(f"Slack could not be reached to post a rollout message ({exc}); "
                             "it is posted on the next pass") from None
    crash_point("after_post")
    _record_ts(services, r.id, key, ts)
    return ts


def _record_ts(services, rollout_id: int, key: str, ts: str) -> None:
    with services.store.session() as s:
        s.execute(update(RolloutMessage).where(RolloutMessage.rollout_id == rollout_id, RolloutMessage.key == key)
                  .values(ts=ts))


def _release_claim(services, rollout_id: int, key: str) -> None:
    """Slack answered and did not post: the claim goes, so the next pass posts without waiting."""
    with services.store.session() as s:
        s.query(RolloutMessage).filter(RolloutMessage.rollout_id == rollout_id, RolloutMessage.key == key,
                                       RolloutMessage.ts.is_(None)).delete()


def _find_posted(services, channel: str, thread_ts: str | None, rollout_id: int, key: str) -> str | None:
    """A message of ours with this key already in the thread (its poster died before recording it)."""
    if not thread_ts:
        return None
    try:
        cursor = None
        for _ in range(10):
            page = services.slack.conversations_replies(channel=channel, ts=thread_ts, include_all_metadata=True,
                                                        limit=200, cursor=cursor)
            for message in page.get("messages", []):
                payload = (message.get("metadata") or {}).get("event_payload") or {}
                if payload.get("rollout_id") == rollout_id and payload.get("key") == key:
                    return message["ts"]
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
    except (SlackApiError, SlackClientError) as exc:
        log.warning("rollout %s: could not read the thread to look for message %s: %s", rollout_id, key, exc)
    return None


def _message_ts(services, rollout_id: int, key: str) -> str | None:
    with services.store.session() as s:
        return s.scalar(select(RolloutMessage.ts).where(RolloutMessage.rollout_id == rollout_id,
                                                        RolloutMessage.key == key))


def _post_chart(services, r: Rollout, intent: Intent) -> None:
    """The evidence chart, at most once per transition: a chart that fails is logged, never retried twice."""
    key = f"{intent.id}:chart"
    with services.store.session() as s:
        claimed = _claim(s, rollout_id=r.id, key=key, channel=r.thread_channel or "", ts=None, claimed_at=utcnow())
    if not claimed or not r.thread_channel:
        return
    try:
        post_rendered = load_chart_module("bot.slack.charts").post_rendered
        rollout_chart = load_chart_module("charts.rollout").rollout
        evidence, events = chart_data.chart_frames(services, r.id)
        chart = rollout_chart(evidence, events, r.model, r.stable_variant, r.candidate_variant)
        post_rendered(services.slack, r.thread_channel, r.thread_ts, chart)
    except Exception as exc:
        log.warning("rollout %s: the evidence chart was not posted: %s", r.id, exc)


def _record_error(services, r: Rollout, error: str) -> None:
    # Not a transition: no version bump, so it never makes a concurrent transition fail; and only while the
    # row is as read, so a worker that lost a race does not leave an error on an intent another one finished.
    with services.store.session() as s:
        s.execute(update(Rollout).where(Rollout.id == r.id, Rollout.version == r.version)
                  .values(last_error=error[:2000]))


def _clear(services, r: Rollout) -> bool:
    """Marks the intent done; True when this was the intent still pending (else a newer one is owed)."""
    intent = Intent.from_json(r.pending)
    intent_id = intent.id
    roles: dict[str, str] = {}
    for post in intent.posts:
        role = post.role
        if role in ("evidence", "pause"):
            ts = _message_ts(services, r.id, f"{intent_id}:{post.key}")
            if ts:
                roles[f"{role}_ts"] = ts
    for _ in range(COMMAND_ATTEMPTS):
        latest = load(services, r.id)
        if latest is None or (latest.pending or {}).get("id") != intent_id:
            return False
        values = dict(pending=None, last_error=None, **roles)
        if "evidence_ts" in roles:
            values["last_evidence"] = None
        with services.store.session() as s:
            if store.save(s, latest, **values):
                return True
    return False


# ---------------------------------------------------------------------------------------------------------
# Doing a transition end to end (commands, the controller, the run watcher)


def transition(services, rollout_id: int, make_plan, *, carry: bool = True) -> tuple[Rollout | None, Plan | None]:
    """Reads, plans with make_plan(r) (None: nothing to do), commits; re-reads and re-plans when another
    process moved the rollout first. Then carries the intent out (failures stay owed to the controller)."""
    for _ in range(COMMAND_ATTEMPTS):
        r = load(services, rollout_id)
        if r is None:
            return None, None
        plan = make_plan(r)
        if plan is None:
            return r, None
        committed = commit(services, r, plan)
        if committed is None:
            continue
        if carry:
            problem = carry_out(services, rollout_id)
            if problem:
                log.warning("rollout %s: %s (owed; retried by the controller)", rollout_id, problem)
        return load(services, rollout_id), plan
    raise RolloutRefused("The rollout kept changing under this command (another worker is acting on it); "
                         "nothing was changed. Try again in a moment.")


def record_judgement(services, r: Rollout, settings: RolloutSettings, decision, stable, candidate,
                     now: datetime, *, edit: bool = True) -> bool:
    """A step that only waits: the evidence is stored, and its one message edited in place (not too often)."""
    last = r.last_evidence or {}
    counts = [stable.requests, stable.errors_5xx, stable.errors_4xx,
              candidate.requests, candidate.errors_5xx, candidate.errors_4xx]
    edited_at = last.get("edited_at")
    edit_due = edit and (counts != last.get("counts") or action_name(decision) != last.get("decision")) and (
        edited_at is None or (now - datetime.fromisoformat(edited_at)).total_seconds() >= EVIDENCE_EDIT_SECONDS)
    evidence = {"decision": action_name(decision).lower(), "counts": counts, "judged_at": now.isoformat(),
                "evidence": json_safe(decision.evidence),
                "edited_at": now.isoformat() if edit_due else edited_at}
    with services.store.session() as s:
        if not store.save(s, r, last_evidence=evidence):
            return False  # someone else moved it: their view wins
        s.add(RolloutEvent(rollout_id=r.id, **event_row(r, "judgement", now, state=r.state, step_index=r.step_index,
                                                     decision=decision, stable=stable, candidate=candidate)))
    if edit_due and r.evidence_ts and r.thread_channel:
        minutes_on_timer = (now - r.when("timer_started_at")).total_seconds() / 60 if r.timer_started_at else 0.0
        body, blocks = text.step_message(r, settings, stable=stable, candidate=candidate, decision=decision,
                                         minutes_on_timer=minutes_on_timer, judged_at=now)
        try:
            services.slack.chat_update(channel=r.thread_channel, ts=r.evidence_ts, text=body, blocks=blocks)
        except (SlackApiError, SlackClientError) as exc:
            log.warning("rollout %s: evidence message not updated: %s", r.id, exc)
    return True


def insert_stmt(session, model):
    builder = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    return builder(model.__table__)


def _claim(session, **values) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id: True when this call made the claim. (rowcount is not
    usable here: with the implicit RETURNING of the id, psycopg reports -1.)"""
    stmt = insert_stmt(session, RolloutMessage).values(**values).on_conflict_do_nothing(
        index_elements=["rollout_id", "key"]).returning(RolloutMessage.__table__.c.id)
    return session.scalar(stmt) is not None
