"""A rollback's page exists, and reaches PagerDuty, whatever Slack is doing (issue 21, items 1, 7, 8, 19).

- The page and its PagerDuty trigger do not queue behind the rollout's older Slack messages: with Slack
  stalled from the 50% step on, PagerDuty has the trigger within two controller ticks of the rollback, and
  the page's Slack part follows once Slack answers, once.
- A rollout that has no thread (Slack refused its first message) still pages.
- A database blip while the page is delivered never gives the page up.
- PagerDuty gets plain text: no Slack markup.

moto behind the UpdateEndpoint fake, the Slack emulator (behind a stalling proxy), a local PagerDuty;
SQLite and PostgreSQL.
"""

from __future__ import annotations

import importlib
import re
from datetime import timedelta

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from bot.paging import messages
from bot.paging import service as pager
from bot.rollouts import executor
from bot.rollouts import service as rollouts
from bot.slack.client import make_web_client
from jobs import rollout_controller
from tests.faults.conftest import hanging_slack  # noqa: F401 -- fixture
from tests.rollout.conftest import Traffic, churn_endpoint, deliver_all, rollout_aws, run_ticks, t0, weights  # noqa: F401
from tests.rollout.test_scenarios import churn, deploy

GOOD = dict(per_minute=20_000, rate_5xx={"v41": 0.004, "v42": 0.004})
BAD = dict(per_minute=20_000, rate_5xx={"v41": 0.004, "v42": 0.05})


def pages_posted(slack) -> list[dict]:
    return [m for m in slack.messages("C0ALERTS") if m.get("thread_ts") in (None, m["ts"])
            and "was rolled back" in m["text"]]


def triggers(pagerduty) -> list[dict]:
    return [e for e in pagerduty.events if e["event_action"] == "trigger"]


def pagerduty_pass(services) -> None:
    """The PagerDuty delivery job's pass, where this design has one (it runs on its own worker thread)."""
    try:
        job = importlib.import_module("jobs.pagerduty_delivery")
    except ImportError:
        return
    job.run_once(services)


def test_the_page_reaches_pagerduty_within_two_ticks_while_slack_stalls(make_services, slack, hanging_slack,
                                                                        pagerduty, churn_endpoint, t0):
    services = make_services(SLACK_API_URL=hanging_slack.api_url)
    # Short Slack timeouts: waiting out a stalled Slack costs this test a second a call, not ten.
    services.slack = make_web_client(services.slack.token, services.slack.base_url, retries=False, timeout=1)
    rollout_id, parent = deploy(services, slack, t0)
    now = run_ticks(services, Traffic(**GOOD), t0, 8, stop=lambda: weights()["v42"] == 0.25)
    assert weights() == {"v41": 0.75, "v42": 0.25}
    hanging_slack.hang()  # from the 50% step on, every Slack call times out: its messages stay owed
    good = Traffic(**GOOD)
    while weights()["v42"] != 0.5:
        good.write(now, 10)
        now += timedelta(minutes=10)
        rollout_controller.tick(services, now)
    deliver_all(services)
    bad = Traffic(**BAD)
    rounds, rolled_back_in, triggered_in = 0, None, None
    while rounds < 6 and triggered_in is None:
        rounds += 1
        bad.write(now, 10)
        now += timedelta(minutes=10)
        rollout_controller.tick(services, now)
        pagerduty_pass(services)  # beside the controller, on the worker's PagerDuty thread
        if rolled_back_in is None and rollouts.load(services, rollout_id).state == "rolled_back":
            rolled_back_in = rounds
        if triggers(pagerduty):
            triggered_in = rounds
    assert rolled_back_in is not None and weights() == {"v41": 1.0, "v42": 0.0}
    assert triggered_in is not None and triggered_in - rolled_back_in <= 1, (rolled_back_in, triggered_in)
    [trigger] = triggers(pagerduty)
    assert trigger["dedup_key"] == f"modelbot-rollout-{rollout_id}" and "churn" in trigger["payload"]["summary"]
    assert pages_posted(slack) == []  # Slack has said nothing yet

    # Slack answers again: the page's own delivery posts it, once; the thread gets the rollback, once.
    hanging_slack.release()
    for later in (timedelta(minutes=10), timedelta(minutes=20)):
        deliver_all(services, later)
    assert len(pages_posted(slack)) == 1
    assert len([m for m in slack.thread("C0CHURN", parent) if m["text"].startswith(":rotating_light:")]) == 1
    assert len(triggers(pagerduty)) == 1


def test_a_rollout_without_a_thread_still_pages(services, slack, pagerduty, churn_endpoint, t0):
    slack.refuse_channel("C0CHURN", "is_archived")  # the rollout thread's first message is refused
    model = churn(services)
    outcome = rollouts.force_promote(services, model, user_id="U0ALICE", reason="hotfix", now=t0)
    assert rollouts.load(services, outcome.rollout_id).thread_ts is None
    rollouts.rollback(services, model, user_id="U0ALICE", reason="errors after the hotfix",
                      now=t0 + timedelta(minutes=5))
    assert weights() == {"v41": 1.0, "v42": 0.0}
    for later in (timedelta(0), timedelta(minutes=10)):
        deliver_all(services, later)
    [page] = pages_posted(slack)
    assert "errors after the hotfix" in page["text"]
    [trigger] = triggers(pagerduty)
    assert trigger["dedup_key"] == f"modelbot-rollout-{outcome.rollout_id}"


def test_a_database_blip_never_gives_a_page_up(services, slack, pagerduty, churn_endpoint, t0, monkeypatch):
    rollout_id, _ = deploy(services, slack, t0)
    Traffic(**BAD).write(t0, 30)
    blip = {"left": 0}

    def fail_pages(conn, cursor, statement, parameters, context, executemany):
        # A failover: statements on the pages table fail for a while (each is one more failed attempt).
        if blip["left"] > 0 and re.search(r"\bpages\b", statement):
            blip["left"] -= 1
            raise OperationalError(statement, parameters, Exception("server closed the connection unexpectedly"))

    event.listen(services.store.engine, "before_cursor_execute", fail_pages)
    real_crash_point = executor.crash_point

    def crash_point(name: str) -> None:
        if name == "after_intent":  # the rollback is committed; the blip starts
            blip["left"] = 12
        real_crash_point(name)

    monkeypatch.setattr(executor, "crash_point", crash_point)
    try:
        rollout_controller.tick(services, t0 + timedelta(minutes=30))
        assert rollouts.load(services, rollout_id).state == "rolled_back"
        for k in range(16):
            deliver_all(services, timedelta(hours=k + 1))
    finally:
        event.remove(services.store.engine, "before_cursor_execute", fail_pages)
    assert blip["left"] == 0
    deliver_all(services, timedelta(hours=20))
    assert len(pages_posted(slack)) == 1, "the page was given up"
    assert len(triggers(pagerduty)) == 1


def test_pagerduty_gets_plain_text(services, slack, pagerduty, rollout_thread):
    reason = ("candidate `v42` 5XX rate *3.00%* vs stable 0.40%, see <https://grafana.example/d/1|the dashboard> "
              "&amp; ask <@U0ALICE> or <#C0CHURN|ml-churn>")
    pager.page_rollback(services, model_name="churn", rollout_id=7, reason=reason, channel="C0CHURN",
                        thread_ts=rollout_thread(), automatic=False, actor="U0ALICE")
    pagerduty_pass(services)
    [trigger] = triggers(pagerduty)
    summary = trigger["payload"]["summary"]
    assert not re.search(r"[`*<>]|&amp;", summary), summary
    assert "candidate v42 5XX rate 3.00% vs stable 0.40%" in summary
    assert "the dashboard (https://grafana.example/d/1)" in summary and "& ask @U0ALICE or #ml-churn" in summary
    assert "churn was rolled back by @U0ALICE" in summary
    assert messages.plain_summary(pager.page_for_rollout(services, 7)) == summary
