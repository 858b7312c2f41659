"""Decay episodes: opened once when a variant's window decays, closed once when it recovers or stops serving, and
what each says in the model's channel, queued in the Slack outbox (bot/slack/outbox.py) in the transaction that
opens or closes the episode: the measuring pass never talks to Slack itself, and a Slack outage delays the message,
never loses it.

With `retrain_on_decay = true` the opening also starts the model's retraining (the same service as
`/model retrain`), before the message is queued, so the one message says what happened. The request is written
on the episode first: a worker killed while Airflow answers does not start a second run on its next pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta

from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import func, select, update

from bot import audit
from bot.chart_loading import load as load_chart_module
from bot.errors import ExternalError
from bot.quality import chart_data
from bot.quality import messages as text
from bot.quality.decay import CLOSE, FEW_LABELS, OPEN
from bot.quality.measure import Window
from bot.quality.tables import QualityDay, QualityEpisode
from bot.registry import Model
from bot.runs import service as runs
from bot.runs.messages import ON_DECAY
from bot.runs.tables import recent_runs
from bot.slack import outbox
from bot.slack.formatting import clock
from bot.store.base import utcnow
from bot.store.foundation import insert_ignore

log = logging.getLogger(__name__)

CHART = "quality_chart"
AUTO = ON_DECAY  # the requester a run started by a decay carries
RUNNING_STATES = ("queued", "running")


def subject(episode_id: int) -> str:
    return f"quality:{episode_id}"


def key(episode_id: int, name: str) -> str:
    return f"quality/{episode_id}/{name}"


@dataclass(frozen=True)
class Acted:
    variant: str
    what: str  # opened | recovered | retired


def act(services, model: Model, windows: list[Window]) -> list[Acted]:
    """Opens and closes episodes as the windows say; announces any opened episode not announced yet."""
    done: list[Acted] = []
    for w in windows:
        if w.judgement.action == OPEN:
            episode_id = _open(services, model, w)
            if episode_id is not None:
                done.append(Acted(w.variant, "opened"))
        elif w.judgement.action == CLOSE:
            if _close(services, model, w.variant, "recovered", w.value, w.labels):
                done.append(Acted(w.variant, "recovered"))
        elif w.judgement.state == FEW_LABELS and _retired(services, model, w):
            if _close(services, model, w.variant, "retired", None, w.labels):
                done.append(Acted(w.variant, "retired"))
    announce_pending(services, model)
    return done


def _retired(services, model: Model, w: Window) -> bool:
    """An open episode's variant captured nothing in the whole window: it no longer serves."""
    with services.store.session() as s:
        is_open = s.scalar(select(QualityEpisode.id).where(QualityEpisode.open_key == f"{model.name}/{w.variant}"))
        if is_open is None:
            return False
        captured = s.scalar(select(func.coalesce(func.sum(QualityDay.predictions), 0)).where(
            QualityDay.model == model.name, QualityDay.variant == w.variant, QualityDay.day >= w.start))
    return not captured


def _open(services, model: Model, w: Window) -> int | None:
    q = model.quality
    with services.store.session() as s:
        inserted = insert_ignore(s, QualityEpisode.__table__, dict(
            model=model.name, variant=w.variant, open_key=f"{model.name}/{w.variant}", metric=model.metric,
            direction=model.direction, value=w.value, reference=w.reference.value, labels=w.labels,
            tolerance=q.tolerance, window_start=w.start, window_end=w.end, opened_at=utcnow(),
            retrain_requested_at=utcnow() if q.retrain_on_decay else None,
            retrain_by=AUTO if q.retrain_on_decay else None), ["open_key"])
        if not inserted:
            return None
        episode_id = s.scalar(select(QualityEpisode.id).where(QualityEpisode.open_key == f"{model.name}/{w.variant}"))
    if q.retrain_on_decay:
        _auto_retrain(services, model, episode_id)
    return episode_id


def _auto_retrain(services, model: Model, episode_id: int) -> None:
    """Starts the retraining the opening asked for, and writes what happened on the episode."""
    values: dict = {}
    with services.store.session() as s:
        latest = recent_runs(s, model.name, limit=1)
    if latest and latest[0].state in RUNNING_STATES:
        values = dict(retrain_dag_id=latest[0].dag_id, retrain_run_id=latest[0].run_id,
                      retrain_error="already running")
    else:
        try:
            result = runs.trigger_retrain(services, model, AUTO, {})
            values = dict(retrain_dag_id=result.info.dag_id, retrain_run_id=result.info.run_id)
        except ExternalError as exc:
            values = dict(retrain_error=str(exc))
        except Exception as exc:  # whatever it was, the decay is still announced, with why nothing started
            log.exception("quality: retrain_on_decay of %s failed", model.name)
            values = dict(retrain_error=f"{type(exc).__name__}: {exc}")
    with services.store.session() as s:
        s.execute(update(QualityEpisode).where(QualityEpisode.id == episode_id).values(**values))
    if values.get("retrain_error") != "already running":
        audit.record(services.store, user_id=AUTO, action="retrain", model=model.name,
                     outcome="failed" if values.get("retrain_error") else "ok", reason=values.get("retrain_error"),
                     via="quality decay", episode=episode_id, run_id=values.get("retrain_run_id"))


def _retrain_line(ep: QualityEpisode) -> str | None:
    if ep.retrain_by != AUTO:
        return None
    if ep.retrain_error == "already running" and ep.retrain_run_id:
        return text.retrain_already_running(ep.retrain_run_id)
    if ep.retrain_run_id:
        return text.retrain_started_auto(ep.retrain_run_id, ep.retrain_dag_id or "")
    if ep.retrain_error:
        return text.retrain_failed_auto(ep.retrain_error)
    return text.retrain_unknown(f"at {clock(ep.when('retrain_requested_at'))}")


def announce_pending(services, model: Model) -> int:
    """Queues the decay message of every open episode of the model not announced yet (normally the one just
    opened; after a crash, one opened by the pass that died)."""
    with services.store.session() as s:
        pending = list(s.scalars(select(QualityEpisode).where(
            QualityEpisode.model == model.name, QualityEpisode.closed_at.is_(None),
            QualityEpisode.announced_at.is_(None))))
        for ep in pending:
            s.expunge(ep)
    for ep in pending:
        rows = chart_data.day_rows(services, model.name, since=ep.window_end - timedelta(days=text.TABLE_DAYS - 1),
                                   until=ep.window_end, variant=ep.variant)
        reference = chart_data.reference_detail(services, model.name, ep.variant)
        body, blocks = text.decay_message(
            ep, reference_detail=reference, rows=rows, owners=model.owners, dag_id=model.dag_id,
            retrain=_retrain_line(ep), button=not (ep.retrain_by == AUTO and ep.retrain_run_id))
        with services.store.session() as s:
            claimed = s.execute(update(QualityEpisode).where(
                QualityEpisode.id == ep.id, QualityEpisode.announced_at.is_(None)).values(announced_at=utcnow()))
            if claimed.rowcount != 1:
                continue
            outbox.enqueue(s, key=key(ep.id, "decay"), subject=subject(ep.id), channel=model.channel, text=body,
                           blocks=blocks, payload={"role": "decay"})
            outbox.enqueue(s, key=key(ep.id, "chart"), subject=subject(ep.id), kind=CHART, channel=model.channel,
                           payload={"episode": ep.id})
    return len(pending)


def _close(services, model: Model, variant: str, how: str, value: float | None, labels: int) -> bool:
    with services.store.session() as s:
        ep = s.scalars(select(QualityEpisode).where(QualityEpisode.open_key == f"{model.name}/{variant}")).first()
        if ep is None:
            return False
        taken = s.execute(update(QualityEpisode).where(
            QualityEpisode.id == ep.id, QualityEpisode.open_key.is_not(None)).values(
            open_key=None, closed_at=utcnow(), closed_how=how, closed_value=value)).rowcount == 1
        if not taken:
            return False
        if how == "recovered":
            body, blocks = text.recovered_message(ep, value=value, labels=labels)
        else:
            body, blocks = text.retired_message(ep)
        # In the decay message's thread, shown in the channel too; before the decay message is posted (Slack
        # down for days), in the channel: it still comes after it, rows of one episode go out in order.
        outbox.enqueue(s, key=key(ep.id, how), subject=subject(ep.id), channel=model.channel,
                       thread_ts=ep.message_ts, broadcast=bool(ep.message_ts) and how == "recovered",
                       text=body, blocks=blocks)
    return True


def reply_in_thread(session, ep: QualityEpisode, channel: str, name: str, body: str) -> None:
    """A reply under the decay message (the channel itself before Slack has the message)."""
    outbox.enqueue(session, key=key(ep.id, name), subject=subject(ep.id), channel=channel,
                   thread_ts=ep.message_ts, text=body)


# ---------------------------------------------------------------------------------------------------------
# Delivery of what is not a plain post


def _deliver_chart(services, row: outbox.OutboxMessage) -> str | None:
    """The chart in the decay message's thread, drawn from the store when it is delivered."""
    episode_id = int((row.payload or {}).get("episode"))
    with services.store.session() as s:
        ep = s.get(QualityEpisode, episode_id)
        if ep is None:
            return None
        s.expunge(ep)
    model = services.registry.get(ep.model)
    chart = chart_data.chart(services, ep.model, model, until=ep.window_end)
    post_rendered = load_chart_module("bot.slack.charts").post_rendered
    try:
        post_rendered(services.slack, row.channel, ep.message_ts, chart)
    except Exception as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, (SlackApiError, SlackClientError)) else None
        if cause is not None:
            raise outbox.slack_failure(cause, f"the quality chart of {ep.model}") from None
        raise
    return None


def _after_delivery(services, row: outbox.OutboxMessage, ts: str | None) -> None:
    """The decay message is posted: the episode keeps its ts, for the replies in its thread."""
    if (row.payload or {}).get("role") != "decay" or not ts:
        return
    episode_id = int(row.subject.split(":", 1)[1])
    with services.store.session() as s:
        s.execute(update(QualityEpisode).where(QualityEpisode.id == episode_id).values(message_ts=ts))


def open_variants(session, model: str) -> dict[str, date]:
    """Variant -> the day its open decay began."""
    return {v: at.date() for v, at in session.execute(select(QualityEpisode.variant, QualityEpisode.opened_at).where(
        QualityEpisode.model == model, QualityEpisode.closed_at.is_(None)))}


outbox.register(CHART, _deliver_chart)
outbox.on_delivered("quality", _after_delivery)
