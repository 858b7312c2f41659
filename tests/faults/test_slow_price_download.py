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
from tests.faults.conftest import (WorkerProcess, evidence_minutes, metric_value, put_bad_evidence, scrape,
                                   start_rollout, utc_now, weights)
from tests.harness import app_env, free_port, wait_until

pytestmark = pytest.mark.e2e

TICK = 3.0


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
        MODELBOT_JOB_LEASE_SECONDS="6",
        MODELBOT_WORKER_METRICS_PORT=str(metrics_port),
        # Prices for the registry's region are missing, so a refresh is due on the first pass.
        MODELBOT_PRICE_REFRESH_HOURS="24",
        MODELBOT_PRICE_BULK_URL=trickle.url,
        AWS_ENDPOINT_URL_PRICING=trickle.url,
    ), tmp_path / "worker.log")
    try:
        before = utc_now()
        start_rollout(services, slack, "churn", endpoint="churn-prod", stable="v41", candidate="v42")
        worker.start()
        wait_until(lambda: weights() == {"v41": 0.9, "v42": 0.1}, timeout=60,
                   message=f"the rollout's first step (10%)\n{worker.log()[-3000:]}")
        after = utc_now()

        # The download has begun and is stuck on its trickle; the controller has ticked since.
        assert trickle.offer_requests.wait(60), f"no price download was attempted\n{worker.log()[-3000:]}"
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
