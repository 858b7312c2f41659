"""A worker killed anywhere in a transition, and two workers at once: never a double shift, never a lost or
doubled page, one Slack message per step."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, update

from bot.rollouts import executor
from bot.rollouts import service as rollouts
from bot.slack import outbox
from bot.store.foundation import JobLease
from bot.rollouts.tables import Rollout, RolloutEvent
from jobs import rollout_controller
from tests.harness import app_env, run_jobs_once
from tests.rollout.conftest import Traffic, deliver_all, put_traffic, weights
from tests.rollout.test_scenarios import churn, deploy, pages


class Killed(BaseException):
    """Not an Exception: nothing in the controller catches it, as nothing catches SIGKILL."""


def kill_at(monkeypatch, point: str) -> list[str]:
    fired: list[str] = []

    def crash_point(name: str) -> None:
        if name == point and not fired:
            fired.append(name)
            raise Killed(name)

    monkeypatch.setattr(executor, "crash_point", crash_point)
    monkeypatch.setattr(outbox, "crash_point", crash_point)
    monkeypatch.setattr(outbox, "CLAIM_STALE", timedelta(0))  # the dead poster's claim is stale at once
    return fired


def step_messages(slack, parent, title: str) -> list[dict]:
    return [m for m in slack.thread("C0CHURN", parent) if m["text"].startswith(f"*{title}")]


def events(services, kind: str) -> int:
    with services.store.session() as s:
        return s.scalar(select(func.count()).select_from(RolloutEvent).where(RolloutEvent.kind == kind))


GOOD = dict(per_minute=20_000, rate_5xx={"v41": 0.004, "v42": 0.004})
BAD = dict(per_minute=20_000, rate_5xx={"v41": 0.004, "v42": 0.05})


@pytest.mark.parametrize("point", ["after_intent", "after_aws", "after_post"])
def test_killed_while_shifting_resumes_with_exactly_one_shift(services, slack, churn_endpoint, t0, monkeypatch,
                                                               point):
    rollout_id, parent = deploy(services, slack, t0)
    Traffic(**GOOD).write(t0, 30)
    fired = kill_at(monkeypatch, point)
    with pytest.raises(Killed):  # the worker's pass: the tick, then (after_post) the outbox's delivery
        rollout_controller.tick(services, t0 + timedelta(minutes=30))
        deliver_all(services)
    assert fired == [point]
    r = rollouts.load(services, rollout_id)
    # Decided and written down before acting; after the post, SageMaker is done and the messages are queued.
    assert r.step_index == 1 and (r.pending is None) == (point == "after_post")
    if point == "after_intent":
        assert weights() == {"v41": 0.9, "v42": 0.1}  # killed before SageMaker was called

    for minute in (31, 32, 33):  # the next passes: the first finishes the shift, the others wait
        rollout_controller.tick(services, t0 + timedelta(minutes=minute))
        deliver_all(services)
    assert weights() == {"v41": 0.75, "v42": 0.25}
    r = rollouts.load(services, rollout_id)
    assert r.state == "progressing" and r.step_index == 1 and r.pending is None and r.evidence_ts
    assert len(step_messages(slack, parent, "Step 2 of 3")) == 1 and events(services, "shift") == 1
    assert len(step_messages(slack, parent, "Step 1 of 3")) == 1


@pytest.mark.parametrize("point", ["after_intent", "after_aws", "after_post"])
def test_killed_while_rolling_back_pages_exactly_once(services, slack, churn_endpoint, t0, monkeypatch, point):
    rollout_id, parent = deploy(services, slack, t0)
    Traffic(**BAD).write(t0, 30)
    kill_at(monkeypatch, point)
    with pytest.raises(Killed):
        rollout_controller.tick(services, t0 + timedelta(minutes=30))
        deliver_all(services)
    assert rollouts.load(services, rollout_id).state == "rolled_back"
    for minute in (31, 32):
        rollout_controller.tick(services, t0 + timedelta(minutes=minute))
        deliver_all(services)
    assert weights() == {"v41": 1.0, "v42": 0.0}
    assert len(pages(slack)) == 1
    assert len([m for m in slack.thread("C0CHURN", parent) if m["text"].startswith(":rotating_light:")]) == 1
    assert rollouts.load(services, rollout_id).pending is None


def test_two_workers_at_once_never_double_shift(make_services, rollout_aws, slack, churn_endpoint, t0):
    worker_a, worker_b = make_services(), make_services()  # two processes' worth: own engines and clients
    rollout_id, parent = deploy(worker_a, slack, t0)
    now = t0
    for step in (1, 2):
        Traffic(**GOOD).write(now, 30)
        now += timedelta(minutes=30)
        barrier = threading.Barrier(2)
        errors = []

        def work(services, at=now):
            try:
                barrier.wait()
                rollout_controller.tick(services, at)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(w,)) for w in (worker_a, worker_b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        rollout_controller.tick(worker_a, now + timedelta(seconds=30))  # finishes whatever a loser left owed
        deliver_all(worker_a)
        r = rollouts.load(worker_a, rollout_id)
        assert r.step_index == step and r.pending is None
        assert weights()["v42"] == {1: 0.25, 2: 0.5}[step]
        assert events(worker_a, "shift") == step
        assert len(step_messages(slack, parent, f"Step {step + 1} of 3")) == 1


@pytest.mark.parametrize("scenario", ["shift killed after SageMaker", "rollback killed before SageMaker"])
def test_worker_process_killed_mid_transition_then_run_again(services, slack, churn_endpoint, database_url,
                                                              models_file, moto_url, sagemaker_proxy, scenario):
    """`python -m jobs --once` killed at the injected point (os._exit), then run again normally."""
    shift = scenario.startswith("shift")
    started = (datetime.now(timezone.utc) - timedelta(minutes=30)).replace(second=0, microsecond=0)
    rollout_id, parent = deploy(services, slack, started)
    rates = {"v41": 0.004, "v42": 0.004 if shift else 0.05}
    put_traffic("churn-prod", "v41", started, 540_000, round(540_000 * rates["v41"]))
    put_traffic("churn-prod", "v42", started, 60_000, round(60_000 * rates["v42"]))
    env = app_env(slack=slack, moto_url=moto_url, database_url=database_url, models_file=models_file,
                  AWS_ENDPOINT_URL_SAGEMAKER=sagemaker_proxy.url)

    point = "after_aws" if shift else "after_intent"
    killed = run_jobs_once(dict(env, MODELBOT_CRASH_AT=point))
    assert killed.returncode == outbox.CRASH_EXIT_CODE, killed.stderr[-2000:]
    r = rollouts.load(services, rollout_id)
    assert r.pending is not None and r.state == ("progressing" if shift else "rolled_back")
    assert weights() == ({"v41": 0.75, "v42": 0.25} if shift else {"v41": 0.9, "v42": 0.1})
    assert pages(slack) == []
    # The dead worker's job lease would run out after a minute, and its claim on carrying the rollout's change
    # out after 20 s; the test does not wait for them.
    with services.store.session() as s:
        s.execute(update(JobLease).where(JobLease.name == rollout_controller.NAME)
                  .values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
        s.execute(update(Rollout).where(Rollout.id == rollout_id)
                  .values(carry_until=datetime.now(timezone.utc) - timedelta(seconds=1)))

    for _ in range(2):
        again = run_jobs_once(env)
        [line] = [x for x in again.stdout.splitlines() if x.startswith("rollout_controller: ")]
        assert "failed" not in line and "problems" not in line, line
    r = rollouts.load(services, rollout_id)
    assert r.pending is None, (r.last_error, again.stdout)
    if shift:
        assert weights() == {"v41": 0.75, "v42": 0.25} and r.step_index == 1
        assert len(step_messages(slack, parent, "Step 2 of 3")) == 1 and events(services, "shift") == 1
        assert pages(slack) == []
    else:
        assert weights() == {"v41": 1.0, "v42": 0.0} and r.state == "rolled_back"
        assert len(pages(slack)) == 1
        assert len([m for m in slack.thread("C0CHURN", parent) if m["text"].startswith(":rotating_light:")]) == 1


def test_sagemaker_refusing_a_shift_is_said_once_and_retried_until_done(services, slack, churn_endpoint, t0,
                                                                         sagemaker_proxy):
    rollout_id, parent = deploy(services, slack, t0)
    Traffic(**GOOD).write(t0, 30)
    refusal = 'Cannot update in-progress endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/churn-prod".'
    sagemaker_proxy.fail_next("UpdateEndpointWeightsAndCapacities", message=refusal, count=2)
    for minute in (30, 31):
        stats = rollout_controller.tick(services, t0 + timedelta(minutes=minute))
        deliver_all(services)
        assert any("Cannot update in-progress endpoint" in p for p in stats.problems)
    assert weights() == {"v41": 0.9, "v42": 0.1}
    r = rollouts.load(services, rollout_id)
    assert r.step_index == 1 and r.pending is not None and "Cannot update in-progress endpoint" in r.last_error
    assert "Cannot update in-progress endpoint" in rollouts.rollout_summary(services, churn(services))
    [notice] = [m for m in slack.thread("C0CHURN", parent) if m["text"].startswith(":warning:")]
    assert "did not happen yet" in notice["text"] and "retries on every pass" in notice["text"]
    assert step_messages(slack, parent, "Step 2 of 3") == []  # not announced before it happened

    rollout_controller.tick(services, t0 + timedelta(minutes=32))
    deliver_all(services)
    assert weights() == {"v41": 0.75, "v42": 0.25}
    assert rollouts.load(services, rollout_id).pending is None
    assert len(step_messages(slack, parent, "Step 2 of 3")) == 1
    assert len([m for m in slack.thread("C0CHURN", parent) if m["text"].startswith(":warning:")]) == 1


def test_two_processes_finding_the_same_intent_send_it_once(make_services, rollout_aws, slack, churn_endpoint, t0,
                                                             sagemaker_proxy):
    """A command (or the run watcher) carrying its transition out while the controller's tick finds the same
    intent among the leftovers: one of them sends the weights, the other sees the claim and leaves it."""
    from bot.rollouts.plans import plan_enter_step
    from bot.rollouts.states import Event

    web, worker = make_services(), make_services()
    rollout_id, _ = deploy(web, slack, t0)
    settings = churn(web).rollout
    for round_ in range(3):  # the race is a matter of timing: give it a few chances
        r = rollouts.load(web, rollout_id)
        executor.commit(web, r, plan_enter_step(r, settings, r.step_index + 1, t0 + timedelta(minutes=30 + round_),
                                                kind=Event.SHIFT))
        before = len(sagemaker_proxy.weight_calls)
        barrier = threading.Barrier(2)

        def carry(services):
            barrier.wait()
            executor.carry_out(services, rollout_id, deliver=False)

        threads = [threading.Thread(target=carry, args=(s,)) for s in (web, worker)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        rollout_controller.tick(worker, t0 + timedelta(minutes=31 + round_))  # finishes what a loser left
        assert len(sagemaker_proxy.weight_calls) - before == 1, sagemaker_proxy.weight_calls[before:]
        assert rollouts.load(web, rollout_id).pending is None
