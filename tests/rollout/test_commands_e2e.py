"""/model promote --force, rollback, pause and the rollout buttons through the running app (`python -m bot`),
sent as signed requests exactly as Slack sends them; SageMaker in moto, Slack in the emulator."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from bot.store import Store
from bot.store.foundation import AuditEntry
from tests.conftest import MODELS_TOML, provision_database
from tests.endpoints import create_endpoint
from tests.harness import AppProcess, app_env, wait_until
from tests.rollout.conftest import weights

pytestmark = pytest.mark.e2e


@pytest.fixture
def app(tmp_path, moto_url, slack, sagemaker_proxy, rollout_aws):
    """The app as a process, on a fresh database, with churn-prod as a deploy leaves it."""
    url, cleanup = provision_database("sqlite", tmp_path)
    models = tmp_path / "models.toml"
    models.write_text(MODELS_TOML)
    env = app_env(slack=slack, moto_url=moto_url, database_url=url, models_file=models,
                  AWS_ENDPOINT_URL_SAGEMAKER=sagemaker_proxy.url)
    create_endpoint("churn-prod", {"v41": 1.0, "v42": 0.0})
    process = AppProcess(env, tmp_path / "app.log").start()
    process.database_url = url
    yield process
    process.stop()
    cleanup()


def reply(slack, rid: str, timeout: float = 20) -> dict:
    return wait_until(lambda: slack.responses_for(rid), timeout=timeout, message=f"a reply to {rid}")[-1].body


def button(blocks: list[dict], action_id: str) -> dict:
    [found] = [e for b in blocks if b["type"] == "actions" for e in b["elements"] if e["action_id"] == action_id]
    return found


def click(app, slack, *, user: str, button: dict, channel: str = "C0CHURN", message_ts: str = "1.0",
          ephemeral: bool = True) -> str:
    """A block_actions payload as Slack sends it after the confirm dialog was accepted; returns the
    response_url's name."""
    name = f"click{time.monotonic_ns()}"
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0EMULATOR"},
        "api_app_id": "A0MODELBOT",
        "token": "deprecated-verification-token",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": ephemeral},
        "trigger_id": f"{time.time_ns()}.trigger",
        "team": {"id": "T0EMULATOR", "domain": "example"},
        "channel": {"id": channel, "name": "ml"},
        "state": {"values": {}},
        "response_url": slack.response_url(name),
        "actions": [{**button, "block_id": "b", "action_ts": f"{time.time():.6f}"}],
    }
    assert app.action(payload).status_code == 200
    return name


def audit(app) -> list[tuple[str, str, str, str | None]]:
    store = Store(app.database_url)
    try:
        with store.session() as s:
            return [(a.user_id, a.action, a.outcome, a.reason)
                    for a in s.scalars(select(AuditEntry).where(AuditEntry.model == "churn").order_by(AuditEntry.id))]
    finally:
        store.dispose()


def test_forced_promotion_asks_for_confirmation_rechecks_rights_and_announces(app, slack):
    resp, rid = app.command("promote churn --force hotfix INC-7", slack=slack, user_id="U0ALICE")
    assert resp.status_code == 200 and "Looking at *churn*" in resp.json()["text"]
    question = reply(slack, rid)
    assert "Force the promotion of churn?" in question["text"] and "`v42` takes 100%" in question["text"]
    force = button(question["blocks"], "rollout_force_confirm")
    assert force["confirm"]["style"] == "danger" and force["style"] == "danger"
    assert weights() == {"v41": 1.0, "v42": 0.0}  # nothing happens before the click

    # Bob is on call, not an owner: the click is refused and changes nothing.
    denied = click(app, slack, user="U0BOB", button=force)
    assert ":no_entry:" in reply(slack, denied)["text"]
    assert weights() == {"v41": 1.0, "v42": 0.0}

    done = click(app, slack, user="U0ALICE", button=force)
    outcome = reply(slack, done)
    assert "Forced promotion of *churn*" in outcome["text"] and outcome.get("replace_original") is True
    assert weights() == {"v41": 0.0, "v42": 1.0}
    [loud] = [m for m in slack.messages("C0CHURN") if "Forced promotion by <@U0ALICE>" in m["text"]]
    assert loud.get("reply_broadcast") is True and "hotfix INC-7" in loud["text"]
    [alert] = [m for m in slack.messages("C0ALERTS") if "Forced promotion of churn" in m["text"]]
    assert "<@U0ALICE>" in alert["text"]
    assert ("U0ALICE", "promote_force", "requested", "hotfix INC-7") in audit(app)
    assert ("U0BOB", "promote_force", "denied", None) in audit(app)
    assert ("U0ALICE", "promote_force", "ok", "hotfix INC-7") in audit(app)


def test_promote_pause_continue_and_roll_back_from_slack(app, slack):
    # Carol owns fraud, not churn: refused before anything is looked at.
    resp, rid = app.command("promote churn", slack=slack, user_id="U0CAROL")
    assert resp.json()["text"].startswith(":no_entry: Only the owners of *churn* or an admin may promote")
    assert weights() == {"v41": 1.0, "v42": 0.0}

    resp, rid = app.command("promote churn", slack=slack, user_id="U0ALICE")
    assert "Rollout of *churn* started" in reply(slack, rid)["text"]
    assert weights() == {"v41": 0.9, "v42": 0.1}

    resp, rid = app.command("pause churn checking dashboards", slack=slack, user_id="U0ADMIN")
    assert "Paused the rollout of *churn* at 10%" in reply(slack, rid)["text"]
    [paused] = [m for m in slack.messages("C0CHURN") if m.get("blocks") and "Paused by <@U0ADMIN>" in m["text"]]
    cont = button(paused["blocks"], "rollout_continue")
    click(app, slack, user="U0ALICE", button=cont, message_ts=paused["ts"], ephemeral=False)
    wait_until(lambda: "Continued by <@U0ALICE>" in next(m for m in slack.messages("C0CHURN")
                                                        if m["ts"] == paused["ts"])["text"],
               timeout=20, message="the paused message closed")

    resp, rid = app.command("rollback churn p99 latency up", slack=slack, user_id="U0ALICE")
    question = reply(slack, rid)
    assert "Roll back churn?" in question["text"] and "goes back to `v41`" in question["text"]
    confirm = button(question["blocks"], "rollout_rollback_confirm")
    assert confirm["confirm"]["style"] == "danger"
    done = click(app, slack, user="U0ALICE", button=confirm)
    assert "Rolled back *churn*" in reply(slack, done)["text"]
    assert weights() == {"v41": 1.0, "v42": 0.0}
    [page] = [m for m in slack.messages("C0ALERTS") if "was rolled back" in m["text"]]
    assert "<@U0BOB>" in page["text"] and "p99 latency up" in page["text"]
    [broadcast] = [m for m in slack.messages("C0CHURN") if m["text"].startswith(":rotating_light:")]
    assert broadcast.get("reply_broadcast") is True

    # The same confirm button clicked again (an old prompt): the rollout is over, nothing happens twice.
    again = click(app, slack, user="U0ALICE", button=confirm)
    assert "nothing was changed" in reply(slack, again)["text"]
    assert len([m for m in slack.messages("C0ALERTS") if "was rolled back" in m["text"]]) == 1

    resp, rid = app.command("status churn", slack=slack, user_id="U0ALICE")
    assert "rolled back by <@U0ALICE>" in reply(slack, rid)["text"]
