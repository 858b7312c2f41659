"""The one exactly-once Slack outbox: every message modelbot owes a thread goes through here.

A message has a row before it is posted: claimed (status "claimed", with the claimer and the time), posted
(status "posted", with Slack's ts), or owed (status "owed": Slack certainly did not take it; try again). The
post carries the row's key in its message metadata, so when a claimer dies between Slack's answer and the
database write, the next one finds the message (conversations.replies in a thread, conversations.history in a
channel) instead of posting it twice. A claim is stale after CLAIM_STALE; only one process takes it over.

Two ways in:
- `post_once`: claim and post now (the caller needs the ts, or is a pass that will simply ask again);
- `enqueue` + `deliver_due`: write the row in the caller's transaction (the rollout's traffic change commits
  with the messages it owes), and let the delivery loop post it, retrying with a capped back-off. A Slack
  outage delays these messages; it never holds up what was committed with them.

Capabilities keep their own tables: an `OutboxTable` names the table and the columns that identify one
message. Rows other than plain posts (an edit, a chart) are delivered by a function the capability registers
for the row's kind. A post queued for a thread that does not exist yet (its parent message is itself still
owed) names no channel: the capability's thread resolver says where it goes when it is delivered.

Claims are timed on the database's clock (bot/store/foundation.py): a process whose own clock runs ahead does
not take over a claim that is still live.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import JSON, Boolean, Index, Integer, String, Text, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, mapped_column

from bot.store.base import Base, as_utc, utcnow
from bot.store.foundation import database_now, insert_ignore

log = logging.getLogger(__name__)

HOLDER = f"{socket.gethostname()}:{os.getpid()}"
# A claim older than this whose message was never marked posted was left by a crash (Slack's timeout with its
# retries is far shorter): the next claimer looks for it in Slack, then posts it if it is not there.
CLAIM_STALE = timedelta(seconds=120)
# Owed rows wait BACKOFF * 2^(attempts-1) before the next try, at most BACKOFF_CAP: a long outage costs one
# attempt every few minutes, not one per pass.
BACKOFF = timedelta(seconds=10)
BACKOFF_CAP = timedelta(minutes=5)
# A row Slack keeps refusing for what it is (channel archived, blocks invalid...) is given up after this many.
MAX_REFUSALS = 5

CLAIMED, POSTED, OWED, DROPPED = "claimed", "posted", "owed", "dropped"
POST = "post"

# Test hook: the worker dies (as if killed) at the named point, e.g. after_post (Slack has the message, the
# database does not know yet); the rollout executor has after_intent and after_aws.
CRASH_ENV = "MODELBOT_CRASH_AT"
CRASH_EXIT_CODE = 86


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        log.error("crash injected at %s (%s is set)", name, CRASH_ENV)
        os._exit(CRASH_EXIT_CODE)


class OutboxMessage(Base):
    """A queued Slack delivery: a post, an edit, or capability work (chart, page) named by `kind`."""

    __tablename__ = "slack_outbox"
    __table_args__ = (Index("ix_slack_outbox_status_next_attempt_at", "status", "next_attempt_at"),
                      Index("ix_slack_outbox_created_at", "created_at"))  # 0012_retention: pruned by age

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    # Whose message (e.g. "rollout:12"): rows of one subject are delivered in id order, one thread stays in order.
    subject: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(32), default=POST)
    channel: Mapped[str | None] = mapped_column(String(32))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text, default="")
    blocks: Mapped[list | None] = mapped_column(JSON)
    broadcast: Mapped[bool] = mapped_column(Boolean, default=False)
    payload: Mapped[dict | None] = mapped_column(JSON)  # what a registered kind needs (ts to edit, role, ...)
    status: Mapped[str] = mapped_column(String(16), default=OWED)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    posted_at: Mapped[datetime | None]
    message_ts: Mapped[str | None] = mapped_column(String(32))


@dataclass(frozen=True)
class OutboxTable:
    """A table holding outbox rows: it has the columns status, channel, thread_ts, text, blocks, claimed_by,
    claimed_at, posted_at, message_ts, and `identity` names the columns that are unique together per message."""

    model: type
    identity: tuple[str, ...]
    metadata_type: str

    def key(self, ident: dict[str, Any]) -> str:
        """The message's key in Slack's metadata."""
        return "/".join(str(ident[c]) for c in self.identity)

    def where(self, ident: dict[str, Any]) -> list:
        """The row named by `ident`: its identity columns, or any unique column (its id)."""
        return [getattr(self.model, c) == v for c, v in ident.items()]


QUEUE = OutboxTable(OutboxMessage, ("key",), "modelbot_outbox")


@dataclass
class Message:
    channel: str
    text: str
    blocks: list | None = None
    thread_ts: str | None = None
    broadcast: bool = False


class Refused(Exception):
    """Slack answered and did not take the message: nothing was posted."""

    def __init__(self, what: str, *, permanent: bool):
        super().__init__(what)
        self.permanent = permanent


class Unsure(Exception):
    """Slack did not answer clearly (5xx, timeout, unreachable): the message may have been posted."""


def slack_failure(exc: Exception, what: str) -> Exception:
    """A Slack client error as Refused (certainly not done) or Unsure (maybe done), naming what was not done."""
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 200) or 200
        error = exc.response.get("error") if exc.response is not None else None
        if status < 500:
            return Refused(f"Slack refused {what} ({error or status})",
                           permanent=status != 429 and error not in ("ratelimited", "internal_error", "fatal_error"))
        return Unsure(f"Slack answered {status} to {what}; it may or may not be done")
    return Unsure(f"Slack could not be reached for {what} ({type(exc).__name__}: {exc})")


# ---------------------------------------------------------------------------------------------------------
# Posting once, now


def post_once(services, table: OutboxTable, ident: dict[str, Any], message: Message,
              columns: dict[str, Any] | None = None) -> tuple[str | None, bool]:
    """Posts one message exactly once. Returns (its ts, whether this call posted it).

    (None, False): another process is posting it right now, or Slack did not take it (it is posted by a later
    call: at once when Slack refused, after CLAIM_STALE and a look in Slack when the answer was unclear).
    """
    row = _claim(services, table, ident, message, columns or {})
    if row is None or row.get("ts"):
        return (row or {}).get("ts"), False
    try:
        ts = _send(services, table, ident, row, row.pop("stale_since"))
    except (Refused, Unsure) as exc:
        log.warning("%s", exc)
        return None, False
    return ts, row.get("posted_now", True)


def _claim(services, table: OutboxTable, ident: dict[str, Any], message: Message,
           columns: dict[str, Any]) -> dict | None:
    """Claims the row (inserting it with the message, or taking over an owed or stale one). None when someone
    else holds a live claim; {"ts": ...} when it is already posted; else what to post."""
    model = table.model
    with services.store.session() as s:
        now = database_now(s)
        mine = insert_ignore(s, model.__table__, dict(
            ident, **columns, status=CLAIMED, channel=message.channel, thread_ts=message.thread_ts, text=message.text,
            blocks=message.blocks, claimed_by=HOLDER, claimed_at=now), list(table.identity))
        row = s.scalars(select(model).where(*table.where(ident))).one()
        stale_since = None
        if not mine:
            if row.status == POSTED:
                return {"ts": row.message_ts}
            if row.status == DROPPED:
                return {"ts": None}
            if row.status == CLAIMED:
                if as_utc(row.claimed_at) > now - CLAIM_STALE:
                    return None  # someone is posting it now
                stale_since = as_utc(row.claimed_at)
            values = dict(claimed_by=HOLDER, claimed_at=now, status=CLAIMED)
            if row.status == OWED:
                # Slack certainly did not take it before: post what the caller says now.
                values.update(channel=message.channel, thread_ts=message.thread_ts, text=message.text,
                              blocks=message.blocks)
            # Guarded by what was read, so of two processes taking it over only one wins.
            taken = s.execute(update(model).where(*table.where(ident), model.status == row.status,
                                                  model.claimed_at == row.claimed_at).values(**values)).rowcount == 1
            if not taken:
                return None
            s.refresh(row)
        return dict(channel=row.channel, thread_ts=row.thread_ts, text=row.text, blocks=row.blocks,
                    broadcast=bool(getattr(row, "broadcast", False)), stale_since=stale_since)


def _send(services, table: OutboxTable, ident: dict[str, Any], row: dict, stale_since: datetime | None) -> str:
    """Posts the claimed row (after looking for it in Slack when a dead claimer may have posted it) and records
    the ts. Raises Refused (the row is owed again) or Unsure (the claim stays, to be looked for when stale)."""
    key = table.key(ident)
    if stale_since is not None:
        found, verified = find_posted(services, table, row["channel"], row["thread_ts"], key, stale_since)
        if found:
            _mark_posted(services, table, ident, found)
            row["posted_now"] = False
            return found
        if not verified:
            _reclaim_later(services, table, ident)
            raise Unsure(f"Slack could not be searched for {key} before posting it again; tried later")
    kwargs: dict[str, Any] = dict(channel=row["channel"], text=row["text"], blocks=row["blocks"],
                                  unfurl_links=False, unfurl_media=False,
                                  metadata={"event_type": table.metadata_type, "event_payload": {"key": key}})
    if row["thread_ts"]:
        kwargs.update(thread_ts=row["thread_ts"], reply_broadcast=row["broadcast"])
    try:
        ts = services.slack.chat_postMessage(**kwargs)["ts"]
    except (SlackApiError, SlackClientError) as exc:
        failure = slack_failure(exc, f"message {key} in {row['channel']}")
        if isinstance(failure, Refused):
            with services.store.session() as s:
                s.execute(update(table.model).where(*table.where(ident), table.model.status == CLAIMED)
                          .values(status=OWED))
        raise failure from None
    crash_point("after_post")
    _mark_posted(services, table, ident, ts)
    return ts


def _reclaim_later(services, table: OutboxTable, ident: dict[str, Any]) -> None:
    """Leaves the claim to go stale again, so the next look in Slack is a while away."""
    with services.store.session() as s:
        s.execute(update(table.model).where(*table.where(ident), table.model.status == CLAIMED)
                  .values(claimed_at=database_now(s) - CLAIM_STALE + BACKOFF))


def _mark_posted(services, table: OutboxTable, ident: dict[str, Any], ts: str | None) -> None:
    with services.store.session() as s:
        s.execute(update(table.model).where(*table.where(ident))
                  .values(status=POSTED, message_ts=ts, posted_at=utcnow()))


def find_posted(services, table: OutboxTable, channel: str, thread_ts: str | None, key: str,
                since: datetime) -> tuple[str | None, bool]:
    """Looks in Slack for a message carrying this key: (its ts or None, whether Slack could be asked)."""
    cursor = None
    try:
        for _ in range(10):  # 10 pages of 200: far more than a thread or the claim window holds
            if thread_ts:
                page = services.slack.conversations_replies(channel=channel, ts=thread_ts, include_all_metadata=True,
                                                            limit=200, cursor=cursor)
            else:
                oldest = f"{(since - timedelta(seconds=30)).timestamp():.6f}"
                page = services.slack.conversations_history(channel=channel, oldest=oldest, include_all_metadata=True,
                                                            limit=200, cursor=cursor)
            for message in page.get("messages") or []:
                payload = (message.get("metadata") or {}).get("event_payload") or {}
                if payload.get("key") == key:
                    return message["ts"], True
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None, True
    except (SlackApiError, SlackClientError) as exc:
        log.warning("Slack could not be searched for %s: %s", key, exc)
        return None, False
    return None, True


# ---------------------------------------------------------------------------------------------------------
# Work that is claimed, not posted by the outbox (a chart upload): at most once


def claim(services, table: OutboxTable, ident: dict[str, Any], *, channel: str, thread_ts: str | None,
          what: str) -> bool:
    """Claims one piece of work: True when this call claimed it (new, or owed after a refusal). A claim is never
    taken over: an upload carries no key Slack could be searched for, so what might be done is not redone."""
    with services.store.session() as s:
        now = database_now(s)
        if insert_ignore(s, table.model.__table__, dict(ident, status=CLAIMED, channel=channel, thread_ts=thread_ts,
                                                        text=what, blocks=None, claimed_by=HOLDER, claimed_at=now),
                         list(table.identity)):
            return True
        return s.execute(update(table.model).where(*table.where(ident), table.model.status == OWED)
                         .values(status=CLAIMED, claimed_by=HOLDER, claimed_at=now)).rowcount == 1


def finish(services, table: OutboxTable, ident: dict[str, Any], ts: str | None = None) -> None:
    """The claimed work is done (ts: the message it posted, when there is one)."""
    _mark_posted(services, table, ident, ts)


def release(services, table: OutboxTable, ident: dict[str, Any]) -> None:
    """Slack certainly did not take the claimed work: it is owed, and the next claim may do it."""
    with services.store.session() as s:
        s.execute(update(table.model).where(*table.where(ident), table.model.status == CLAIMED)
                  .values(status=OWED))


def is_taken(status: str) -> bool:
    """Claimed (in flight, or lost in a crash) or done: not to be done again by a new claim."""
    return status in (CLAIMED, POSTED, DROPPED)


# ---------------------------------------------------------------------------------------------------------
# Queued delivery


# kind -> function(services, row) -> ts or None; raises Refused or Unsure when not done.
DELIVERERS: dict[str, Callable[[Any, OutboxMessage], str | None]] = {}
# Kinds never given up, whatever fails: they are retried with the capped back-off until they are done.
NEVER_GIVEN_UP: set[str] = set()
# subject prefix ("rollout") -> function(services, row, ts) called once a row with a payload role is delivered.
AFTER_DELIVERY: dict[str, Callable[[Any, OutboxMessage, str | None], None]] = {}
# subject prefix -> function(services, row) -> (channel, thread_ts), or None while the thread is not open yet:
# where a post queued without a channel goes.
THREADS: dict[str, Callable[[Any, OutboxMessage], tuple[str, str | None] | None]] = {}


def register(kind: str, deliver: Callable[[Any, OutboxMessage], str | None], *, give_up: bool = True) -> None:
    DELIVERERS[kind] = deliver
    if not give_up:
        NEVER_GIVEN_UP.add(kind)


def on_delivered(subject_kind: str, callback: Callable[[Any, OutboxMessage, str | None], None]) -> None:
    AFTER_DELIVERY[subject_kind] = callback


def resolve_threads(subject_kind: str, resolver: Callable[[Any, OutboxMessage], tuple[str, str | None] | None]) -> None:
    THREADS[subject_kind] = resolver


def enqueue(session, *, key: str, subject: str, kind: str = POST, channel: str | None = None,
            thread_ts: str | None = None, text: str = "", blocks: list | None = None, broadcast: bool = False,
            payload: dict | None = None, now: datetime | None = None) -> bool:
    """Queues one delivery in the caller's transaction; False when the key is already queued (or done).
    A post with no channel goes into the thread its subject's resolver names when it is delivered."""
    now = now or database_now(session)
    return insert_ignore(session, OutboxMessage.__table__, dict(
        key=key, subject=subject, kind=kind, channel=channel, thread_ts=thread_ts, text=text, blocks=blocks,
        broadcast=broadcast, payload=payload, status=OWED, attempts=0, next_attempt_at=now, created_at=now),
        ["key"])


def enqueue_latest(session, *, key: str, subject: str, kind: str = POST, channel: str | None = None,
                   text: str = "", blocks: list | None = None, payload: dict | None = None) -> None:
    """Queues what one message should say now, replacing an earlier version under the same key that is owed or
    already delivered (a message edited in place as counts come in: a long outage owes one edit, not one per
    tick). A version being delivered right now is left alone; the next call queues the newer words."""
    now = database_now(session)
    table = OutboxMessage.__table__
    builder = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    values = dict(key=key, subject=subject, kind=kind, channel=channel, text=text, blocks=blocks, payload=payload,
                  status=OWED, attempts=0, next_attempt_at=now, created_at=now)
    session.execute(builder(table).values(**values).on_conflict_do_update(
        index_elements=["key"], where=table.c.status != CLAIMED,
        set_=dict(text=text, blocks=blocks, payload=payload, status=OWED, attempts=0, next_attempt_at=now,
                  last_error=None)))


@dataclass
class DeliveryStats:
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    waiting: int = 0
    errors: list[str] | None = None

    def summary(self) -> str:
        parts = [f"{self.delivered} delivered"]
        if self.failed:
            parts.append(f"{self.failed} failed (retried with back-off)")
        if self.dropped:
            parts.append(f"{self.dropped} given up")
        if self.waiting:
            parts.append(f"{self.waiting} waiting")
        if self.errors:
            parts.append("last error: " + self.errors[-1])
        return ", ".join(parts)


def deliver_due(services, *, subject: str | None = None, now: datetime | None = None, limit: int = 200,
                stop_at_first_failure: bool = False) -> DeliveryStats:
    """Delivers the queued rows that are due, oldest first; per subject in id order, a row that fails holds the
    later rows of its subject back (a thread keeps its order). Due means: owed and its next attempt has come,
    or claimed by a process that died (claim stale)."""
    stats = DeliveryStats(errors=[])
    with services.store.session() as s:
        now = now or database_now(s)
        query = select(OutboxMessage.id, OutboxMessage.subject, OutboxMessage.status, OutboxMessage.next_attempt_at,
                       OutboxMessage.claimed_at).where(OutboxMessage.status.in_((OWED, CLAIMED)))
        if subject is not None:
            query = query.where(OutboxMessage.subject == subject)
        rows = s.execute(query.order_by(OutboxMessage.id).limit(limit * 5)).all()
    held: set[str] = set()
    for row_id, row_subject, status, next_at, claimed_at in rows:
        if row_subject in held:
            stats.waiting += 1
            continue
        due = (status == OWED and (next_at is None or as_utc(next_at) <= now)) or (
            status == CLAIMED and claimed_at is not None and as_utc(claimed_at) <= now - CLAIM_STALE)
        if not due:
            held.add(row_subject)
            stats.waiting += 1
            continue
        if stats.delivered + stats.failed >= limit:
            break
        outcome = deliver_one(services, row_id, now=now)
        if outcome == POSTED:
            stats.delivered += 1
            continue
        if outcome == DROPPED:
            stats.dropped += 1
            continue
        held.add(row_subject)
        if outcome is not None:
            stats.failed += 1
            stats.errors.append(outcome)
            if stop_at_first_failure:
                break
    return stats


def deliver_one(services, row_id: int, *, now: datetime | None = None) -> str | None:
    """Delivers one queued row. Returns POSTED, DROPPED, None (someone else holds it) or the failure's text."""
    with services.store.session() as s:
        now = now or database_now(s)
        row = s.get(OutboxMessage, row_id)
        if row is None or row.status not in (OWED, CLAIMED):
            return POSTED if row is not None and row.status == POSTED else None
        stale_since = as_utc(row.claimed_at) if row.status == CLAIMED else None
        if stale_since is not None and stale_since > now - CLAIM_STALE:
            return None
        taken = s.execute(update(OutboxMessage).where(
            OutboxMessage.id == row_id, OutboxMessage.status == row.status,
            OutboxMessage.attempts == row.attempts).values(
            status=CLAIMED, claimed_by=HOLDER, claimed_at=now, attempts=row.attempts + 1)).rowcount == 1
        if not taken:
            return None
        s.refresh(row)
        s.expunge(row)
    try:
        if row.kind == POST:
            channel, thread_ts = row.channel, row.thread_ts
            if channel is None:
                channel, thread_ts = _thread_of(services, row)
            ts = _send(services, QUEUE, {"key": row.key}, dict(
                channel=channel, thread_ts=thread_ts, text=row.text, blocks=row.blocks,
                broadcast=row.broadcast), stale_since)
        else:
            ts = DELIVERERS[row.kind](services, row)
            _mark_posted(services, QUEUE, {"key": row.key}, ts)
    except Exception as exc:  # any failure leaves the row owed (or given up), never stops the loop
        return _failed(services, row, exc, now)
    callback = AFTER_DELIVERY.get(row.subject.split(":", 1)[0])
    if callback is not None:
        try:
            callback(services, row, ts)
        except Exception:
            log.exception("outbox: after delivering %s", row.key)
    return POSTED


def _thread_of(services, row: OutboxMessage) -> tuple[str, str | None]:
    """Where a post queued without a channel goes: its subject's thread, recorded on the row (so a claim taken
    over later looks for it there). Refused, to be tried again, while that thread is not open."""
    resolver = THREADS.get(row.subject.split(":", 1)[0])
    place = resolver(services, row) if resolver is not None else None
    if place is None:
        raise Refused(f"message {row.key} waits for its thread to be opened", permanent=False)
    with services.store.session() as s:
        s.execute(update(OutboxMessage).where(OutboxMessage.id == row.id, OutboxMessage.channel.is_(None))
                  .values(channel=place[0], thread_ts=place[1]))
    return place


def _failed(services, row: OutboxMessage, exc: Exception, now: datetime) -> str:
    """Schedules the next attempt (capped back-off). Slack being down or busy is waited out however long it
    lasts; a refusal that will not change, or a failure of our own, is given up after MAX_REFUSALS attempts."""
    if isinstance(exc, (Refused, Unsure)):
        what = str(exc)
    else:
        log.warning("outbox: delivering %s failed", row.key, exc_info=exc)
        what = f"{type(exc).__name__}: {exc}"
    transient = isinstance(exc, Unsure) or (isinstance(exc, Refused) and not exc.permanent) \
        or row.kind in NEVER_GIVEN_UP
    give_up = not transient and row.attempts >= MAX_REFUSALS
    wait = min(BACKOFF * 2 ** max(0, min(row.attempts, 20) - 1), BACKOFF_CAP)
    values: dict[str, Any] = dict(last_error=what[:2000], next_attempt_at=now + wait)
    if give_up:
        values["status"] = DROPPED
        log.error("outbox: gave %s up after %d attempts: %s", row.key, row.attempts, what)
    elif isinstance(exc, Unsure) and row.kind == POST:
        # Maybe posted: keep the claim, so the next attempt looks in Slack first; it goes stale at next_attempt_at.
        values["claimed_at"] = now - CLAIM_STALE + wait
    else:
        values["status"] = OWED
    with services.store.session() as s:
        s.execute(update(OutboxMessage).where(OutboxMessage.id == row.id, OutboxMessage.status == CLAIMED)
                  .values(**values))
    return DROPPED if give_up else what


def owed(services, subject: str | None = None) -> list[OutboxMessage]:
    """Rows not delivered yet (for status and tests)."""
    with services.store.session() as s:
        query = select(OutboxMessage).where(OutboxMessage.status.in_((OWED, CLAIMED)))
        if subject is not None:
            query = query.where(OutboxMessage.subject == subject)
        rows = list(s.scalars(query.order_by(OutboxMessage.id)))
        for row in rows:
            s.expunge(row)
        return rows
