"""Thread messages are posted exactly once: by racing workers, and across a crash on either side of the post."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select

from bot.runs.service import METADATA_TYPE, post_once
from bot.store.base import utcnow
from bot.runs.tables import RunEvent

DAG, RUN = "churn_lifecycle", "modelbot__20261127T050000Z_abc123"


def key(event: str) -> str:
    return f"{DAG}/{RUN}/{event}"


def open_parent(services) -> str:
    ts, posted = post_once(services, dag_id=DAG, run_id=RUN, event="parent", channel="C0CHURN", text="run parent")
    assert posted
    return ts


def leave_claim(services, event: str, *, thread_ts: str | None, text: str, age: timedelta) -> None:
    """What a process that died right after claiming leaves in the outbox."""
    with services.store.session() as s:
        s.add(RunEvent(dag_id=DAG, run_id=RUN, event=event, status="claimed", channel="C0CHURN", thread_ts=thread_ts,
                       text=text, blocks=None, claimed_by="dead-worker:1", claimed_at=utcnow() - age))


def texts(slack, ts: str) -> list[str]:
    return [m["text"] for m in slack.thread("C0CHURN", ts)]


def test_racing_workers_post_one_message(services, slack):
    parent = open_parent(services)
    barrier = threading.Barrier(6)
    results = []

    def worker():
        barrier.wait()
        results.append(post_once(services, dag_id=DAG, run_id=RUN, event="ended", channel="C0CHURN",
                                 thread_ts=parent, text="run ended"))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert texts(slack, parent) == ["run parent", "run ended"]
    assert sum(posted for _, posted in results) == 1
    # Asked again later, it answers with the message already there and posts nothing.
    ts, posted = post_once(services, dag_id=DAG, run_id=RUN, event="ended", channel="C0CHURN", thread_ts=parent,
                           text="run ended")
    assert not posted and ts == slack.thread("C0CHURN", parent)[1]["ts"]


def test_a_crash_after_the_post_does_not_post_it_again(services, slack):
    parent = open_parent(services)
    leave_claim(services, "ended", thread_ts=parent, text="run ended", age=timedelta(minutes=5))
    # The dead worker's message did reach Slack before it died.
    sent = services.slack.chat_postMessage(channel="C0CHURN", thread_ts=parent, text="run ended",
                                           metadata={"event_type": METADATA_TYPE, "event_payload": {"key": key("ended")}})

    ts, posted = post_once(services, dag_id=DAG, run_id=RUN, event="ended", channel="C0CHURN", thread_ts=parent,
                           text="run ended")

    assert (ts, posted) == (sent["ts"], False)
    assert texts(slack, parent) == ["run parent", "run ended"]
    with services.store.session() as s:
        row = s.scalars(select(RunEvent).where(RunEvent.event == "ended")).one()
    assert (row.status, row.message_ts) == ("posted", sent["ts"])


def test_a_crash_after_posting_the_parent_is_found_in_the_channel(services, slack):
    leave_claim(services, "parent", thread_ts=None, text="run parent", age=timedelta(minutes=5))
    sent = services.slack.chat_postMessage(channel="C0CHURN", text="run parent",
                                           metadata={"event_type": METADATA_TYPE, "event_payload": {"key": key("parent")}})

    ts, posted = post_once(services, dag_id=DAG, run_id=RUN, event="parent", channel="C0CHURN", text="run parent")

    assert (ts, posted) == (sent["ts"], False)
    assert [m["text"] for m in slack.messages("C0CHURN")] == ["run parent"]


def test_a_crash_before_the_post_does_not_lose_it(services, slack):
    parent = open_parent(services)
    leave_claim(services, "task_failed:train:-1:1", thread_ts=parent, text="train failed", age=timedelta(minutes=5))

    ts, posted = post_once(services, dag_id=DAG, run_id=RUN, event="task_failed:train:-1:1", channel="C0CHURN",
                           thread_ts=parent, text="(rebuilt text)")

    assert posted and ts
    assert texts(slack, parent) == ["run parent", "train failed"]  # the text claimed before the crash


def test_a_fresh_claim_of_another_worker_is_left_to_it(services, slack):
    parent = open_parent(services)
    leave_claim(services, "ended", thread_ts=parent, text="run ended", age=timedelta(seconds=5))
    assert post_once(services, dag_id=DAG, run_id=RUN, event="ended", channel="C0CHURN", thread_ts=parent,
                     text="run ended") == (None, False)
    assert texts(slack, parent) == ["run parent"]


def test_a_post_slack_refuses_is_retried_on_the_next_pass(services, slack):
    parent = open_parent(services)
    slack.error_next("chat.postMessage", "channel_not_found")
    assert post_once(services, dag_id=DAG, run_id=RUN, event="ended", channel="C0CHURN", thread_ts=parent,
                     text="run ended") == (None, False)
    ts, posted = post_once(services, dag_id=DAG, run_id=RUN, event="ended", channel="C0CHURN", thread_ts=parent,
                           text="run ended")
    assert posted and texts(slack, parent) == ["run parent", "run ended"]
