"""/model status <model> over signed HTTP: the text reply first, then the charts where the model's work is
discussed (its rollout thread, else its running run's thread, else a DM), and the reply says where."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from bot.store import Store
from bot.store.foundation import Thread
from bot.rollouts.tables import Rollout, RolloutEvent
from bot.runs.tables import RunRecord
from tests.endpoints import create_endpoint
from tests.harness import AppProcess, app_env, wait_until

# Per hour, for the last six hours: 90% of requests to v41 (1% 5XX), 10% to v42 (2% 5XX).
HOURLY = {"v41": (900, 9, 4), "v42": (100, 2, 1)}
HOURS = 6


def put_traffic(now: datetime) -> None:
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    for h in range(1, HOURS + 1):
        at = now - timedelta(hours=h)
        for variant, (n, e5, e4) in HOURLY.items():
            dims = [{"Name": "EndpointName", "Value": "churn-prod"}, {"Name": "VariantName", "Value": variant}]
            cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
                {"MetricName": name, "Dimensions": dims, "Timestamp": at, "Value": float(value)}
                for name, value in (("Invocations", n), ("Invocation5XXErrors", e5), ("Invocation4XXErrors", e4))])


@pytest.fixture
def app(aws, slack, database_url, models_file, tmp_path):
    env = app_env(slack=slack, moto_url=aws, database_url=database_url, models_file=models_file)
    process = AppProcess(env, tmp_path / "app.log").start()
    yield process
    process.stop()


def final_reply(slack, rid: str) -> str:
    """The reply once the charts are done (the first one, with the status, says they are being drawn)."""
    def done():
        records = slack.responses_for(rid)
        text = records[-1].body.get("text", "") if records else ""
        return text if ("Charts posted" in text or "not available" in text) else None

    return wait_until(done, timeout=30, message="the status reply that says where the charts are")


def new_files(slack, before: int) -> list:
    return slack.files[before:]


def test_status_charts_go_to_the_dm_the_run_thread_or_the_rollout_thread(app, slack, database_url):
    now = datetime.now(timezone.utc)
    create_endpoint("churn-prod", {"v41": 0.9, "v42": 0.1})
    put_traffic(now)

    # No thread in progress: the charts come as a direct message to whoever asked.
    _, rid = app.command("status churn", slack=slack, user_id="U0ALICE")
    text = final_reply(slack, rid)
    assert "`v41` 90%" in text and "`v42` 10%" in text  # the status itself is still the reply
    assert "Charts posted in a direct message to you: traffic split and error rates, last 24 h." in text
    first = slack.responses_for(rid)[0].body["text"]
    assert "`v41` 90%" in first  # the status came before the charts were drawn
    [chart] = slack.files
    assert chart.channel == "DU0ALICE" and chart.thread_ts is None and chart.completed
    assert chart.title == "churn: churn-prod, last 24 h, weights v41 90% / v42 10%"
    assert "configured weights v41 90% / v42 10%" in chart.alt_txt
    assert "v41: 90% of invocations, 5,400 invocations, 5XX 1.00%, 4XX 0.44%" in chart.alt_txt
    assert "v42: 10% of invocations, 600 invocations, 5XX 2.00%, 4XX 1.00%" in chart.alt_txt

    # A run in progress with its thread: the charts go there, and the reply links to it.
    store = Store(database_url)
    run_parent = slack.add_message("C0CHURN", "churn retraining run: running", user="U0MODELBOT")
    with store.session() as s:
        s.add(RunRecord(dag_id="churn_lifecycle", run_id="manual__now", model="churn", state="running", conf={},
                        queued_at=now - timedelta(minutes=5), channel="C0CHURN", thread_ts=run_parent))
    before = len(slack.files)
    _, rid = app.command("status churn", slack=slack, user_id="U0BOB", channel_id="C0OTHER")
    text = final_reply(slack, rid)
    link = f"https://emulator.slack/archives/C0CHURN/p{run_parent.replace('.', '')}"
    assert f"Charts posted in <{link}|the run thread>: traffic split and error rates, last 24 h." in text
    [chart] = new_files(slack, before)
    assert (chart.channel, chart.thread_ts) == ("C0CHURN", run_parent)
    assert "configured weights v41 90% / v42 10%" in chart.alt_txt

    # A rollout in progress: its thread wins, and its evidence chart comes too.
    rollout_parent = slack.add_message("C0CHURN", "churn rollout v41 → v42", user="U0MODELBOT")
    with store.session() as s:
        r = Rollout(model="churn", active_model="churn", source="slack", endpoint="churn-prod", region="us-east-1",
                    stable_variant="v41", candidate_variant="v42", steps=[10, 25, 50, 100], state="progressing",
                    step_index=0, thread_channel="C0CHURN", thread_ts=rollout_parent,
                    step_started_at=now - timedelta(hours=2))
        s.add(r)
        s.flush()
        s.add(RolloutEvent(rollout_id=r.id, at=now - timedelta(hours=2), kind="start", state="progressing",
                           step_index=0, candidate_percent=10, detail={"label": "10%"}))
        for i, (stable_n, stable_e, cand_n, cand_e) in enumerate(((3000, 30, 330, 4), (9000, 90, 1000, 11))):
            s.add(RolloutEvent(rollout_id=r.id, at=now - timedelta(hours=1 - i / 2), kind="judgement",
                               state="progressing", step_index=0, candidate_percent=10, decision="wait",
                               stable_requests=stable_n, stable_5xx=stable_e, candidate_requests=cand_n,
                               candidate_5xx=cand_e))
    store.dispose()
    before = len(slack.files)
    _, rid = app.command("status churn", slack=slack, user_id="U0ALICE")
    text = final_reply(slack, rid)
    link = f"https://emulator.slack/archives/C0CHURN/p{rollout_parent.replace('.', '')}"
    assert (f"Charts posted in <{link}|the rollout thread>: traffic split and error rates, last 24 h, "
            "rollout evidence.") in text
    traffic, evidence = new_files(slack, before)
    assert {(f.channel, f.thread_ts) for f in (traffic, evidence)} == {("C0CHURN", rollout_parent)}
    assert "configured weights v41 90% / v42 10%" in traffic.alt_txt
    assert evidence.alt_txt.startswith("churn rollout from v41 to v42")
    assert "v42 1.10%" in evidence.alt_txt and "11 errors in 1,000 requests" in evidence.alt_txt


def test_a_chart_that_cannot_be_drawn_says_why_and_the_status_stands(app, slack):
    _, rid = app.command("status fraud", slack=slack, user_id="U0CAROL", channel_id="C0FRAUD")
    text = final_reply(slack, rid)
    assert "*fraud*" in text and "endpoint `fraud-prod` not found in us-east-1" in text
    assert "traffic chart not available: endpoint `fraud-prod` not found in us-east-1" in text
    assert slack.files == [] and slack.calls_to("conversations.open") == []  # no DM opened for nothing

    create_endpoint("churn-prod", {"v41": 1.0})  # no CloudWatch data at all
    _, rid = app.command("status churn", slack=slack)
    text = final_reply(slack, rid)
    assert "traffic chart not available: CloudWatch has no invocations of endpoint churn-prod in the last 24 h" in text
    assert "`v41` 100%" in text and slack.files == []


def test_a_mention_in_a_thread_gets_the_status_and_its_charts_in_that_thread(app, slack, database_url):
    now = datetime.now(timezone.utc)
    create_endpoint("churn-prod", {"v41": 0.9, "v42": 0.1})
    put_traffic(now)
    parent = slack.add_message("C0CHURN", "churn retraining run: success", user="U0MODELBOT")
    store = Store(database_url)
    with store.session() as s:
        s.add(Thread(kind="run", key="churn_lifecycle/manual__done", model="churn", channel="C0CHURN", ts=parent))
    store.dispose()
    mention_ts = slack.add_message("C0CHURN", "<@U0MODELBOT> status", user="U0ALICE", thread_ts=parent)
    payload = {
        "token": "x", "team_id": "T0TEAM", "api_app_id": "A0MODELBOT", "type": "event_callback",
        "event_id": f"Ev{time.time_ns()}", "event_time": int(time.time()),
        "event": {"type": "app_mention", "user": "U0ALICE", "text": "<@U0MODELBOT> status", "channel": "C0CHURN",
                  "ts": mention_ts, "thread_ts": parent, "event_ts": mention_ts},
    }
    assert app.event(payload).status_code == 200
    [chart] = wait_until(lambda: [f for f in slack.files if f.completed], timeout=30, message="the chart upload")
    assert (chart.channel, chart.thread_ts) == ("C0CHURN", parent)
    assert "configured weights v41 90% / v42 10%" in chart.alt_txt
    # One reply with the status, then the chart below it; nothing went to a DM.
    thread = slack.thread("C0CHURN", parent)
    assert [bool(m.get("files")) for m in thread[2:]] == [False, True], [m["text"] for m in thread]
    assert "`v41` 90%" in thread[2]["text"] and "not available" not in thread[2]["text"]
    assert slack.calls_to("conversations.open") == []
