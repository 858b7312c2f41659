"""`/model status` through the running app, signed like Slack: the list in the ack once the worker has run,
a live read (after the ack) before it has, and "busy" when the command queue is full."""

from __future__ import annotations

import threading
import time
from http.server import ThreadingHTTPServer

import pytest

from tests.e2e.test_foundation_e2e import _SlowProxy
from tests.endpoints import create_endpoint
from tests.harness import AppProcess, app_env, free_port, run_jobs_once, wait_until

pytestmark = pytest.mark.e2e


def blocks_text(body: dict) -> str:
    out = []
    for b in body.get("blocks") or []:
        if b["type"] in ("section", "header"):
            out.append(b["text"]["text"])
        elif b["type"] == "context":
            out.extend(e["text"] for e in b["elements"])
    return "\n".join(out)


@pytest.fixture
def env(aws, slack, database_url, models_file):
    return app_env(slack=slack, moto_url=aws, database_url=database_url, models_file=models_file)


@pytest.fixture
def app(env, tmp_path):
    process = AppProcess(env, tmp_path / "app.log").start()
    yield process
    process.stop()


def test_before_the_first_worker_pass_status_says_so_and_reads_live_once(app, env, slack):
    create_endpoint("churn-prod", {"v41": 0.9, "v42": 0.1})
    resp, rid = app.command("status", slack=slack)
    ack = resp.json()
    assert "text" in ack, (resp.text, app.log()[-3000:])
    assert "Looking up 2 models live in SageMaker" in ack["text"]
    assert "has not taken its endpoint snapshot yet" in ack["text"]
    reply = wait_until(lambda: slack.responses_for(rid), timeout=20, message="the live status")[-1].body
    text = blocks_text(reply)
    assert "`v41` 90% ml.m5.large×1 · `v42` 10% ml.m5.large×1" in text
    assert "endpoint `fraud-prod` not found in us-east-1" in text
    assert "Read live from SageMaker just now; start the worker (`python -m jobs`)" in text
    assert "2 models: 1 need attention, 0 rolling out, 1 steady" in text
    assert "*churn*" in text and reply["blocks"][0]["type"] == "header"

    # After one worker pass the list is the ack itself, and nothing follows through response_url.
    done = run_jobs_once(env)
    assert "endpoint_snapshot: 2 endpoints read" in done.stdout, done.stdout + done.stderr
    resp, rid = app.command("status", slack=slack)
    text = blocks_text(resp.json())
    assert "Endpoints as the worker read them" in text and "`v41` 90%" in text
    time.sleep(0.5)
    assert slack.responses_for(rid) == []


def test_after_a_worker_pass_the_list_is_the_ack_and_one_model_says_when_it_was_read(app, env, slack):
    create_endpoint("churn-prod", {"v41": 1.0})
    create_endpoint("fraud-prod", {"blue": 1.0}, instance_type="ml.c5.xlarge")
    assert run_jobs_once(env).returncode in (0, 1)
    started = time.monotonic()
    resp, rid = app.command("status fraud*", slack=slack)
    assert time.monotonic() - started < 3
    text = blocks_text(resp.json())
    assert "1 model match `fraud*`: 0 need attention, 0 rolling out, 1 steady" in text
    assert "`blue` 100% ml.c5.xlarge×1" in text and "churn" not in text

    resp, rid = app.command("status fraud", slack=slack, user_id="U0CAROL", channel_id="C0FRAUD")
    assert "`blue` 100% (ml.c5.xlarge)" in resp.json()["text"]  # from the snapshot, in the ack
    assert "read by the worker" in resp.json()["text"]
    final = wait_until(lambda: [r for r in slack.responses_for(rid) if "chart not available" in r.body["text"]
                                or "Charts posted" in r.body["text"]], timeout=30, message="the charts' note")
    assert "`blue` 100% (ml.c5.xlarge)" in final[-1].body["text"]

    # --live reads SageMaker now, after the ack.
    resp, rid = app.command("status churn --live", slack=slack)
    assert "Looking up *churn* live in SageMaker…" == resp.json()["text"]
    reply = wait_until(lambda: slack.responses_for(rid), timeout=20, message="the live reply")[0].body
    assert "`v41` 100%" in reply["text"] and "read live" in reply["text"]


def test_a_full_command_queue_answers_busy(aws, slack, sqlite_url, models_file, tmp_path):
    create_endpoint("churn-prod", {"v41": 1.0})
    handler = type("Slow", (_SlowProxy,), {"target": aws, "delay": 3.0})
    proxy = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    env = app_env(slack=slack, moto_url=f"http://127.0.0.1:{proxy.server_address[1]}", database_url=sqlite_url,
                  models_file=models_file, MODELBOT_COMMAND_PROCESSES="1", MODELBOT_COMMAND_QUEUE="2")
    app = AppProcess(env, tmp_path / "app.log").start()
    try:
        answers = [app.command("status churn --live", slack=slack) for _ in range(3)]
        texts = [resp.json()["text"] for resp, _ in answers]
        assert texts[:2] == ["Looking up *churn* live in SageMaker…"] * 2
        assert texts[2] == (":hourglass: modelbot is busy with other commands right now, try again in a minute. "
                            "Nothing was done.")
        first_rid = answers[0][1]
        wait_until(lambda: slack.responses_for(first_rid), timeout=30, message="the first live status")
        assert slack.responses_for(answers[2][1]) == []  # the refused one never runs
        # Once the queue has room again, the same command is taken.
        wait_until(lambda: slack.responses_for(answers[1][1]), timeout=30, message="the second live status")
        resp, rid = app.command("status churn --live", slack=slack)
        assert resp.json()["text"] == "Looking up *churn* live in SageMaker…"
    finally:
        app.stop()
        proxy.shutdown()
