"""An old confirmation prompt changes nothing: `/model promote fraud --force` is shown, a gradual rollout then
starts and is rolled back, and the old Force button is clicked. Through the running app (`python -m bot`),
signed requests as Slack sends them, SageMaker in moto, Slack in the emulator, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from bot.rollouts import prompts
from bot.store import Store
from bot.store.foundation import AuditEntry
from tests.endpoints import create_endpoint
from tests.harness import AppProcess, app_env
from tests.rollout.conftest import weights
from tests.rollout.test_commands_e2e import button, click, reply

pytestmark = pytest.mark.e2e


@pytest.fixture
def app(tmp_path, moto_url, slack, sagemaker_proxy, rollout_aws, database_url, models_file):
    env = app_env(slack=slack, moto_url=moto_url, database_url=database_url, models_file=models_file,
                  AWS_ENDPOINT_URL_SAGEMAKER=sagemaker_proxy.url)
    create_endpoint("fraud-prod", {"v1": 1.0, "v2": 0.0})
    process = AppProcess(env, tmp_path / "app.log").start(timeout=90)
    process.database_url = database_url
    yield process
    process.stop()


def audit(app) -> list[tuple[str, str, str]]:
    store = Store(app.database_url)
    try:
        with store.session() as s:
            return [(a.user_id, a.action, a.outcome)
                    for a in s.scalars(select(AuditEntry).where(AuditEntry.model == "fraud").order_by(AuditEntry.id))]
    finally:
        store.dispose()


def test_an_old_force_prompt_changes_nothing_after_a_rollout_started_and_ended(app, slack):
    _, rid = app.command("promote fraud --force hotfix", slack=slack, user_id="U0CAROL", channel_id="C0FRAUD")
    force = button(reply(slack, rid)["blocks"], "rollout_force_confirm")
    assert weights("fraud-prod") == {"v1": 1.0, "v2": 0.0}

    _, rid = app.command("promote fraud", slack=slack, user_id="U0CAROL", channel_id="C0FRAUD")
    assert "Rollout of *fraud* started" in reply(slack, rid, timeout=40)["text"]
    assert weights("fraud-prod") == {"v1": 0.9, "v2": 0.1}
    _, rid = app.command("rollback fraud looks bad", slack=slack, user_id="U0CAROL", channel_id="C0FRAUD")
    confirm = button(reply(slack, rid, timeout=40)["blocks"], "rollout_rollback_confirm")
    done = click(app, slack, user="U0CAROL", button=confirm, channel="C0FRAUD")
    assert "Rolled back *fraud*" in reply(slack, done, timeout=40)["text"]
    assert weights("fraud-prod") == {"v1": 1.0, "v2": 0.0}

    old = click(app, slack, user="U0CAROL", button=force, channel="C0FRAUD")
    answer = reply(slack, old, timeout=40)["text"]
    assert "out of date" in answer and "nothing was changed" in answer
    time.sleep(1)  # anything the click might have started would have reached moto by now
    assert weights("fraud-prod") == {"v1": 1.0, "v2": 0.0}
    assert ("U0CAROL", "promote_force", "stale") in audit(app)
    assert ("U0CAROL", "promote_force", "ok") not in audit(app)


def test_a_prompt_expires_after_fifteen_minutes_and_names_its_candidate(make_services):
    services = make_services()
    value = prompts.bind(model="fraud", candidate="v2", latest_id=None, now=1_000_000.0, reason="x" * 5000)
    assert len(value["reason"]) == prompts.REASON_CHARS
    emoji = prompts.bind(model="fraud", candidate="v2", latest_id=None, reason="🚀" * 3000)
    assert len(json.dumps(emoji)) <= 2000 and emoji["reason"].startswith("🚀")
    assert prompts.stale_reason(services, "fraud", value, now=1_000_000.0 + 14 * 60, candidate_now="v2") is None
    assert "15 minutes" in prompts.stale_reason(services, "fraud", value, now=1_000_000.0 + 16 * 60)
    assert "`v3`" in prompts.stale_reason(services, "fraud", value, now=1_000_000.0 + 60, candidate_now="v3")
    # A value without the binding (an old prompt, or a forged one) never acts.
    assert "out of date" in prompts.stale_reason(services, "fraud", {"model": "fraud", "variant": "v2"})
