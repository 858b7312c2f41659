"""A paused rollout's buttons, and the audit log of what buttons and commands change (issue 21, items 12, 16).

- Continue / Roll back on a paused rollout's message work for as long as it stays paused (not 15 minutes).
- An action and its audit row are one transaction: a process that dies right after the action committed still
  leaves the action audited.

In process, the Slack emulator, moto behind the UpdateEndpoint fake; SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.rollouts import executor, prompts
from bot.rollouts import service as rollouts
from bot.slack.command_line import parse
from bot.store.foundation import AuditEntry
from handlers.actions import rollout_buttons
from handlers.commands import pause as pause_command
from handlers.commands.spec import Invocation
from tests.harness import wait_until
from tests.rollout.test_scenarios import buttons, churn, deploy


class Killed(BaseException):
    """Not an Exception: nothing catches it, as nothing catches SIGKILL."""


def die_after_the_commit(monkeypatch) -> None:
    def crash_point(name: str) -> None:
        if name == "after_intent":
            raise Killed(name)

    monkeypatch.setattr(executor, "crash_point", crash_point)


def audit_rows(services, action: str) -> list[tuple[str, str]]:
    with services.store.session() as s:
        return [(a.user_id, a.outcome) for a in s.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))]


def test_a_paused_rollouts_buttons_work_while_it_stays_paused(services, slack, churn_endpoint, t0):
    rollout_id, parent = deploy(services, slack, t0)
    rollouts.pause(services, churn(services), user_id="U0ALICE", reason="weekend", now=t0)
    [message] = [m for m in slack.thread("C0CHURN", parent) if buttons(m)]
    value = json.loads(buttons(message)["rollout_continue"]["value"])
    in_an_hour, in_a_day = time.time() + 3600, time.time() + 86400
    assert prompts.stale_reason(services, "churn", value, now=in_an_hour) is None
    assert prompts.stale_reason(services, "churn", value, now=in_a_day) is None

    rollouts.resume(services, churn(services), user_id="U0ALICE", now=t0 + timedelta(minutes=5))
    assert "out of date" in prompts.stale_reason(services, "churn", value, now=in_an_hour)
    rollouts.rollback(services, churn(services), user_id="U0ALICE", now=t0 + timedelta(minutes=6))
    assert "out of date" in prompts.stale_reason(services, "churn", value)


def test_a_rollback_button_is_audited_even_when_the_process_dies_right_after(services, slack, churn_endpoint, t0,
                                                                            monkeypatch):
    rollout_id, parent = deploy(services, slack, t0)
    rollouts.pause(services, churn(services), user_id="U0ALICE", reason="weekend", now=t0)
    [message] = [m for m in slack.thread("C0CHURN", parent) if buttons(m)]
    body = {"user": {"id": "U0ALICE"}, "channel": {"id": "C0CHURN"},
            "actions": [buttons(message)["rollout_paused_rollback"]]}
    die_after_the_commit(monkeypatch)
    answers = []
    rollout_buttons.on_paused_rollback(lambda *a, **k: None, body, {"services": services},
                                       lambda **kw: answers.append(kw))
    wait_until(lambda: rollouts.load(services, rollout_id).state == "rolled_back", timeout=20,
               message="the rollback committed")
    time.sleep(0.5)  # whatever the dying thread would still have done
    assert answers == []  # it died before answering
    assert audit_rows(services, "rollback") == [("U0ALICE", "ok")]


def test_a_pause_command_is_audited_even_when_the_process_dies_right_after(services, slack, churn_endpoint, t0,
                                                                          monkeypatch):
    rollout_id, _ = deploy(services, slack, t0)
    die_after_the_commit(monkeypatch)
    inv = Invocation(services=services, user_id="U0ALICE", channel_id="C0CHURN",
                     line=parse("pause churn checking dashboards"), model=churn(services),
                     reply=lambda **kw: None, client=services.slack)
    with pytest.raises(Killed):
        pause_command._act(inv, "pause")
    assert rollouts.load(services, rollout_id).state == "paused"
    assert audit_rows(services, "pause") == [("U0ALICE", "ok")]
