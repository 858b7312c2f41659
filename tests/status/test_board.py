"""`/model status` from the store, in the ack: the order, pages, globs, staleness and Slack's limits."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bot.rollouts.tables import Rollout
from bot.runs.tables import RunRecord
from tests.status.conftest import ack, block_texts, model_order, seed_snapshot, within_slack_limits


def _rollout(name: str, state: str, **extra) -> Rollout:
    return Rollout(model=name, active_model=name if state in ("pending", "progressing", "paused", "baking") else None,
                   source="slack", endpoint=f"{name}-prod", region="us-east-1", stable_variant="blue",
                   candidate_variant="green", steps=[10, 25, 50, 100], state=state, **extra)


def test_what_needs_attention_comes_first_then_rollouts_then_the_rest(services_for):
    names = ["a-steady", "b-rolling", "c-paused", "d-rolling-back", "e-run-failed", "f-updating", "g-unreadable",
             "h-steady"]
    services = services_for(names)
    now = datetime.now(timezone.utc)
    rows = {n: {} for n in names}
    rows["f-updating"] = {"status": "Updating"}
    rows["g-unreadable"] = {"error": "SageMaker did not describe endpoint `g-unreadable-prod`: AccessDenied"}
    seed_snapshot(services, rows)
    with services.store.session() as s:
        s.add(_rollout("b-rolling", "progressing", step_index=1))
        s.add(_rollout("c-paused", "paused", paused_reason="no decision after 120 min"))
        s.add(_rollout("d-rolling-back", "rolled_back", pending={"weights": {"blue": 1.0}}, ended_at=now))
        s.add(_rollout("h-steady", "promoted", ended_at=now - timedelta(days=3)))
        s.add(RunRecord(dag_id="e_lifecycle", run_id="r1", model="e-run-failed", state="failed", conf={},
                        queued_at=now - timedelta(hours=1), ended_at=now - timedelta(minutes=30),
                        failed_tasks=["train"]))
        s.add(RunRecord(dag_id="a_lifecycle", run_id="r0", model="a-steady", state="failed", conf={},
                        queued_at=now - timedelta(hours=5)))
        s.add(RunRecord(dag_id="a_lifecycle", run_id="r2", model="a-steady", state="success", conf={},
                        queued_at=now - timedelta(hours=2)))  # its latest run succeeded: steady

    reply = ack(services, "status")
    assert reply["follow_up"] is False  # the whole answer is in the ack
    assert model_order(reply) == ["d-rolling-back", "c-paused", "e-run-failed", "f-updating", "g-unreadable",
                                  "b-rolling", "a-steady", "h-steady"]
    text = block_texts(reply)
    assert "8 models: 5 need attention, 1 rolling out, 2 steady" in text
    assert "rolling back `blue` → `green`" in text
    assert "rollout `blue` → `green` paused at 10%: no decision after 120 min" in text
    assert "run failed (train) 30 min ago" in text
    assert "endpoint `f-updating-prod` is *Updating*" in text
    assert ":warning: SageMaker did not describe endpoint `g-unreadable-prod`: AccessDenied" in text
    assert "rolling out `blue` → `green`, step 2/4 (25%)" in text


def test_pages_and_globs(services_for):
    names = [f"fraud-{i:02d}" for i in range(30)] + [f"churn-{i:02d}" for i in range(30)]
    services = services_for(names)
    seed_snapshot(services, {n: {} for n in names})

    first = ack(services, "status")
    text = block_texts(first)
    assert "Model status, page 1 of 3" in text
    assert "60 models: 0 need attention, 0 rolling out, 60 steady" in text
    assert "Next: `/model status --page 2`." in text
    assert model_order(first) == sorted(names)[:25]

    third = ack(services, "status --page 3")
    assert model_order(third) == sorted(names)[50:]
    assert "Page 3 of 3." in block_texts(third) and "Next:" not in block_texts(third)

    fraud = ack(services, "status fraud-*")
    assert "30 models match `fraud-*`: 0 need attention, 0 rolling out, 30 steady" in block_texts(fraud)
    assert model_order(fraud) == [f"fraud-{i:02d}" for i in range(25)]
    assert "Next: `/model status fraud-* --page 2`." in block_texts(fraud)
    assert model_order(ack(services, "status fraud-* --page 2")) == [f"fraud-{i:02d}" for i in range(25, 30)]
    assert model_order(ack(services, "status churn-0?")) == [f"churn-{i:02d}" for i in range(10)]

    none = ack(services, "status nothing-*")
    assert "No registered model matches `nothing-*`." in block_texts(none)
    assert "unknown model `frud-01`" in ack(services, "status frud-01")["text"]  # a plain name is still a name
    assert "--page needs a page number" in ack(services, "status --page two")["text"]


def test_old_data_says_how_old_it_is(services_for):
    services = services_for(["fresh", "old", "never"])
    seed_snapshot(services, {"fresh": {"age": 50}, "old": {"age": 12 * 60},
                             "never": {"never_ok": True, "error": "SageMaker could not be reached"}},
                  interval=30)
    text = block_texts(ack(services, "status"))
    lines = {line.split("*")[1]: line for line in text.splitlines() if "_circle: *" in line}
    assert "_data" not in lines["fresh"]  # 50 s is within two passes of 30 s
    assert "_data 12 min old_" in lines["old"]
    assert "_never read successfully_" in lines["never"]
    assert "Endpoints as the worker read them 5 s ago (a pass every 30 s)" in text


def test_a_stopped_worker_is_called_out(services_for):
    services = services_for(["churn"])
    seed_snapshot(services, {"churn": {"age": 3600}}, pass_age=3600)
    text = block_texts(ack(services, "status"))
    assert "The worker's last endpoint snapshot finished 60 min ago: is it running?" in text
    assert "_data 60 min old_" in text


@pytest.mark.parametrize("count", [1, 50, 1000])
def test_every_payload_fits_slacks_limits(services_for, count):
    names = [f"model-{i:04d}-with-a-rather-long-name-for-its-team" for i in range(count)]
    services = services_for(names)
    long_error = "SageMaker did not describe endpoint: " + "x" * 5000
    variants = [{"name": f"variant-{k}-" + "v" * 40, "weight": 1.0, "desired_weight": None,
                 "instance_type": "ml.g5.48xlarge", "instance_count": 40} for k in range(6)]
    rows = {n: ({"error": long_error, "variants": variants} if i % 3 == 0 else {"variants": variants})
            for i, n in enumerate(names)}
    seed_snapshot(services, rows)
    pages = -(-count // 25)
    for page in sorted({1, pages}):
        reply = ack(services, f"status --page {page}")
        assert within_slack_limits(reply) == [], reply
        assert len(model_order(reply)) == min(25, count - 25 * (page - 1))
        if page == 1:  # the unreadable ones come first, their long errors cut, not dropped
            assert "x…" in block_texts(reply)
    detail = ack(services, f"status {names[0]}")
    assert within_slack_limits(detail) == []
    assert f"{count} model" in block_texts(ack(services, "status"))
