"""Chaos: bad-candidate rollouts on PostgreSQL with two `python -m jobs` workers, one of them killed with
SIGKILL at a random moment of every rollout (and started again), while Slack answers 429 or 503 to a fifth
of all calls at random.

Checked, per rollout, from outside: the candidate ends at weight 0; SageMaker received each weight change
once (UpdateEndpointWeightsAndCapacities, counted by the proxy in front of moto, against the distinct
transitions: 10%, then the rollback); the rollback paged exactly once in the alert channel, apart from the
documented resend window (a worker killed after Slack accepted the page and before the database recorded
it: that page is sent again about two minutes later), which is counted and printed.

MODELBOT_CHAOS_ITERATIONS sets the number of rollouts (default 5; `make chaos` runs 50);
MODELBOT_CHAOS_SEED makes a run repeatable; MODELBOT_CHAOS_SETTLE_SECONDS is how long to keep watching for
late resends after the last rollout (default 3).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter

import pytest

from bot.integrations.cloudwatch import first_full_minute
from bot.rollouts import service as rollouts
from tests.conftest import provision_database
from tests.endpoints import create_endpoint
from tests.faults.conftest import (STEP_BACKDATE, WorkerProcess, evidence_minutes, put_bad_evidence, start_rollout,
                                   timedelta, utc_now, weights)
from tests.harness import BOT_TOKEN, SIGNING_SECRET, app_env, wait_until

ITERATIONS = int(os.environ.get("MODELBOT_CHAOS_ITERATIONS") or 5)
SETTLE = float(os.environ.get("MODELBOT_CHAOS_SETTLE_SECONDS") or 3)
# A rollout takes seconds; a busy machine (start-up of the workers, Slack's Retry-After) can stretch one to a
# minute.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600 + 90 * ITERATIONS + SETTLE)]

TICK = 1.0
STABLE, CANDIDATE = "v1", "v2"
WEIGHTS_CALL = "UpdateEndpointWeightsAndCapacities"


def model_name(k: int) -> str:
    return f"chaos{k:02d}"


def models_toml(n: int) -> str:
    head = '[defaults]\nregion = "us-east-1"\nalert_channel = "C0ALERTS"\noncall = "S0ONCALL"\nadmins = ["U0ADMIN"]\n'
    body = "".join(f"""
[models.{model_name(k)}]
dag_id = "{model_name(k)}_lifecycle"
endpoint = "{model_name(k)}-prod"
channel = "C0CHAOS"
metric = "auc"
direction = "maximize"
owners = ["U0ALICE"]
oncall = "U0BOB"

[models.{model_name(k)}.rollout]
steps = [10, 25, 50, 100]
min_requests = 500
margin = 0.002
alpha = 0.01
max_step_minutes = 120
bake_minutes = 60
""" for k in range(n))
    return head + body


@pytest.fixture
def postgres_url(tmp_path):
    url, cleanup = provision_database("postgresql", tmp_path)  # skips, saying why, without TEST_DATABASE_URL
    yield url
    cleanup()


def page_counts(slack) -> Counter:
    """Top-level pages in the alert channel per model (escalations and updates live in a page's thread)."""
    counts: Counter = Counter()
    for m in slack.messages("C0ALERTS"):
        if m.get("thread_ts") not in (None, m["ts"]):
            continue
        for k in range(ITERATIONS):
            if model_name(k) in m.get("text", ""):
                counts[model_name(k)] += 1
    return counts


def weight_changes(proxy, endpoint: str) -> list[dict[str, float]]:
    return [{w["VariantName"]: w.get("DesiredWeight") for w in call.get("DesiredWeightsAndCapacities", [])}
            for call in list(proxy.weight_calls) if call.get("EndpointName") == endpoint]


def test_bad_candidates_roll_back_once_and_page_once_under_kills_and_a_flaky_slack(
        tmp_path, moto_url, slack, sagemaker_proxy, rollout_aws, postgres_url):
    from bot.config import Settings
    from bot.services import Services

    seed = int(os.environ.get("MODELBOT_CHAOS_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    models = tmp_path / "models.toml"
    models.write_text(models_toml(ITERATIONS))
    services = Services.from_settings(Settings(
        _env_file=None, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_APP_TOKEN=None,
        SLACK_API_URL=slack.api_url, DATABASE_URL=postgres_url, MODELS_FILE=str(models), AIRFLOW_URL=None,
        PAGERDUTY_ROUTING_KEY=None), migrate=True)
    env = app_env(slack=slack, moto_url=moto_url, database_url=postgres_url, models_file=models,
                  AWS_ENDPOINT_URL_SAGEMAKER=sagemaker_proxy.url,
                  MODELBOT_ROLLOUT_TICK_SECONDS=str(TICK), MODELBOT_JOB_INTERVAL_SECONDS="2",
                  MODELBOT_JOB_LEASE_SECONDS="3")
    workers = [WorkerProcess(env, tmp_path / f"worker{i}.log", name=f"worker{i}") for i in (1, 2)]
    slack.fail_randomly(0.2, statuses=(429, 503), retry_after=1, seed=seed)
    started = time.monotonic()
    kills, report = 0, []
    try:
        for w in workers:
            w.start()
        wait_until(lambda: all(w.ready() for w in workers), timeout=240, interval=0.2,
                   message="both workers running\n" + "\n".join(w.log()[-2000:] for w in workers))
        for k in range(ITERATIONS):
            # Some worker is running its controller. The one restarted last may still be starting: a kill may
            # then cut a worker in its start-up, or leave none running until the restarts come up.
            wait_until(lambda: any(w.ready() for w in workers), timeout=180, interval=0.2,
                       message="a worker running\n" + "\n".join(w.log()[-2000:] for w in workers))
            began = time.monotonic()
            name, endpoint = model_name(k), f"{model_name(k)}-prod"
            create_endpoint(endpoint, {STABLE: 1.0, CANDIDATE: 0.0})
            rollout_id = start_rollout(services, slack, name, endpoint=endpoint, stable=STABLE,
                                       candidate=CANDIDATE, run_id=f"deploy-{k}", channel="C0CHAOS",
                                       now=utc_now() - STEP_BACKDATE)
            wait_until(lambda: weights(endpoint)[CANDIDATE] > 0, timeout=60, interval=0.1,
                       message=f"{name}'s first step")
            # Into the step's whole minutes that are over. A worker may have begun the rollout itself (its tick
            # found it pending) with its own step start, now: then a minute has to pass first.
            step_start = rollouts.load(services, rollout_id).when("step_started_at")
            wait_until(lambda: first_full_minute(step_start) + timedelta(minutes=1) <= utc_now(), timeout=130,
                       interval=0.5, message=f"a whole minute of {name}'s first step")
            put_bad_evidence(endpoint, STABLE, CANDIDATE, evidence_minutes(step_start, utc_now()))
            # Somewhere between "before the next tick" and "after the rollback": a worker dies mid-whatever.
            time.sleep(rng.uniform(0, 3 * TICK))
            victim = rng.choice(workers)
            victim.kill()
            kills += 1
            victim.start()
            wait_until(lambda: weights(endpoint) == {STABLE: 1.0, CANDIDATE: 0.0}, timeout=150, interval=0.1,
                       message=f"{name} rolled back\n" + "\n".join(w.log()[-2000:] for w in workers))
            # A worker killed while it delivered the page holds that delivery's claim for the resend window
            # (two minutes): the page may come that much later, never not at all.
            wait_until(lambda: page_counts(slack)[name] >= 1, timeout=240, interval=0.2,
                       message=f"{name}'s page\n" + "\n".join(w.log()[-2000:] for w in workers))
            report.append(f"{name} {time.monotonic() - began:.1f}s")
        time.sleep(SETTLE)

        pages = page_counts(slack)
        resends = {m: n - 1 for m, n in pages.items() if n > 1}
        problems = []
        for k in range(ITERATIONS):
            name, endpoint = model_name(k), f"{model_name(k)}-prod"
            changes = weight_changes(sagemaker_proxy, endpoint)
            expected = [{STABLE: 0.9, CANDIDATE: 0.1}, {STABLE: 1.0, CANDIDATE: 0.0}]
            if weights(endpoint) != {STABLE: 1.0, CANDIDATE: 0.0}:
                problems.append(f"{name}: candidate not at 0: {weights(endpoint)}")
            if changes != expected:
                problems.append(f"{name}: weight changes {changes}, expected each of {expected} once")
            if not 1 <= pages[name] <= 2:
                problems.append(f"{name}: {pages[name]} pages")
        wall = time.monotonic() - started
        summary = (f"chaos: {ITERATIONS} iterations, {kills} SIGKILLs, {sum(resends.values())} page resend(s) "
                   f"{dict(resends)}, {len([c for c in slack.calls_to('chat.postMessage') if c.status in (429, 503)])}"
                   f" chat.postMessage calls refused by Slack, wall time {wall:.0f}s, seed {seed}")
        print(summary)
        print("per rollout (start to paged): " + ", ".join(report))
        (tmp_path / "chaos-summary.txt").write_text(summary + "\n")
        assert not problems, summary + "\n" + "\n".join(problems)
    finally:
        for w in workers:
            w.stop()
        services.store.dispose()
