"""A trickling bulk price download while `python -m jobs` runs: the rollout controller keeps its own clock.

The worker runs as a real process with a price refresh due against a server that sends the offer file one byte
every 3 s (no read timeout ever fires), and a rollout whose candidate turns clearly worse while that download
is in progress. The rollback must land within two controller ticks of the evidence. With all jobs in one loop
(the design before this test) the controller waited behind the download and the candidate kept its traffic.
"""

from __future__ import annotations

import time

import pytest

from tests.endpoints import create_endpoint
from tests.faults.conftest import (STEP_BACKDATE, WorkerProcess, evidence_minutes, metric_value, put_bad_evidence,
                                   scrape, start_rollout, utc_now, weights)
from tests.harness import app_env, free_port, wait_until

pytestmark = pytest.mark.e2e

# Long enough that a machine shared with other test runs still ticks on time; the old single loop misses it
# by minutes (its download holds it up to the 10-minute deadline).
TICK = 5.0


def test_rollback_lands_within_two_ticks_while_a_price_download_trickles(
        tmp_path, moto_url, slack, sagemaker_proxy, rollout_aws, database_url, models_file, make_services, trickle):
    create_endpoint("churn-prod", {"v41": 1.0, "v42": 0.0})
    services = make_services()  # applies the migrations before the worker starts
    metrics_port = free_port()
    worker = WorkerProcess(app_env(
        slack=slack, moto_url=moto_url, database_url=database_url, models_file=models_file,
        AWS_ENDPOINT_URL_SAGEMAKER=sagemaker_proxy.url,
        MODELBOT_JOB_INTERVAL_SECONDS=str(TICK),
        MODELBOT_ROLLOUT_TICK_SECONDS=str(TICK),
        MODELBOT_JOB_LEASE_SECONDS="10",
        MODELBOT_WORKER_METRICS_PORT=str(metrics_port),
        # Prices for the registry's region are missing, so a refresh is due on the first pass.
        MODELBOT_PRICE_REFRESH_HOURS="24",
        MODELBOT_PRICE_BULK_URL=trickle.url,
        AWS_ENDPOINT_URL_PRICING=trickle.url,
    ), tmp_path / "worker.log")
    try:
        before = utc_now() - STEP_BACKDATE
        start_rollout(services, slack, "churn", endpoint="churn-prod", stable="v41", candidate="v42", now=before)
        worker.start()
        wait_until(lambda: weights() == {"v41": 0.9, "v42": 0.1}, timeout=60,
                   message=f"the rollout's first step (10%)\n{worker.log()[-3000:]}")
        after = utc_now()

        # The download has begun and is stuck on its trickle; the controller has ticked since.
        # A worker starts in seconds; on a machine this busy, fonts and imports can take a minute or two.
        assert trickle.offer_requests.wait(240), f"no price download was attempted\n{worker.log()[-3000:]}"
        time.sleep(TICK * 1.5)
        assert worker.alive(), worker.log()[-3000:]

        put_bad_evidence("churn-prod", "v41", "v42", evidence_minutes(before, after))
        evidence_at = time.monotonic()
        wait_until(lambda: weights() == {"v41": 1.0, "v42": 0.0}, timeout=max(30.0, 4 * TICK), interval=0.1,
                   message=f"the rollback\n{worker.log()[-4000:]}")
        took = time.monotonic() - evidence_at
        assert took <= 2 * TICK, f"rollback took {took:.1f}s after the evidence, more than two ticks ({TICK}s each)"
        assert trickle.bytes_sent < 100, "the offer file was meant to be still trickling"

        # /metrics shows when each job last completed (read from the database, as the web process's /metrics
        # does): the controller a moment ago; the price refresh started but never completed (still downloading).
        text = scrape(f"http://127.0.0.1:{metrics_port}")
        controller_done = metric_value(text, "modelbot_job_last_completed_timestamp_seconds", job="rollout_controller")
        assert controller_done is not None and time.time() - controller_done < 3 * TICK, text
        assert metric_value(text, "modelbot_job_last_completed_timestamp_seconds", job="price_refresh") is None
        assert metric_value(text, "modelbot_job_last_started_timestamp_seconds", job="price_refresh") is not None
        print(f"rollback {took:.2f}s after the evidence (tick {TICK}s) while the price download trickled "
              f"({trickle.bytes_sent} bytes so far)")
    finally:
        worker.stop()


def test_the_bulk_download_gives_up_at_its_deadline_however_steadily_bytes_trickle(trickle):
    from bot.integrations import price_list

    price_list.gpu_table("us-east-1")  # the SDK's import is CPU time, seconds on a busy machine: not the network's
    started = time.monotonic()
    with pytest.raises(price_list.PriceListError) as failure:
        price_list.fetch_from_bulk("us-east-1", base_url=trickle.url, deadline_seconds=4)
    took = time.monotonic() - started
    assert took < 4 + 2, f"the download was given up {took:.1f}s after it began, past its 4 s deadline"
    assert "deadline" in str(failure.value) and "prices for us-east-1 were not refreshed" in str(failure.value)
    assert trickle.offer_requests.is_set()


def test_web_metrics_show_when_each_job_last_completed(make_services):
    """GET /metrics of the web process reads the job times the worker wrote (here: one `--once` pass)."""
    import re
    import subprocess
    import sys

    from bot.app import build_app
    from bot.web import WebApp
    from tests.harness import ROOT

    services = make_services()
    env = app_env(slack=services_slack(services), moto_url="http://127.0.0.1:9", database_url=services.store.url,
                  models_file=services.settings.MODELS_FILE, AIRFLOW_URL="")
    before = time.time()
    done = subprocess.run([sys.executable, "-m", "jobs", "--once"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)
    assert "rollout_controller: " in done.stdout, done.stdout + done.stderr

    web = WebApp(services, build_app(services, token_verification=False))
    got: list[str] = []
    body = b"".join(web({"PATH_INFO": "/metrics", "REQUEST_METHOD": "GET"}, lambda status, headers, exc_info=None: got.append(status)))
    text = body.decode()
    assert got == ["200 OK"]
    for job in ("rollout_controller", "page_escalation", "price_refresh"):
        value = metric_value(text, "modelbot_job_last_completed_timestamp_seconds", job=job)
        assert value is not None and before - 1 <= value <= time.time() + 1, f"{job}\n{text}"
        assert metric_value(text, "modelbot_job_last_duration_seconds", job=job) is not None
    assert len(re.findall(r"^# TYPE modelbot_job_last_completed_timestamp_seconds ", text, re.M)) == 1


def services_slack(services):
    class _Slack:
        api_url = services.settings.SLACK_API_URL

    return _Slack()
