"""Paging on a rollback, against the Slack emulator, a fake PagerDuty and a real database (SQLite, PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.paging import service as pager
from bot.store.base import as_utc
from jobs import page_escalation, pagerduty_delivery

DEDUP = "modelbot-rollout-7"


def page_churn(services, thread_ts, **kw):
    args = dict(model_name="churn", rollout_id=7, reason="candidate 5XX rate 1.2% vs 0.4% <!channel>",
                channel="C0CHURN", thread_ts=thread_ts, automatic=True, actor=None)
    args.update(kw)
    pager.page_rollback(services, **args)


def alerts(slack):
    """Top-level messages in the alert channel (thread replies excluded)."""
    return [m for m in slack.messages("C0ALERTS") if m.get("thread_ts") in (None, m["ts"])]


def block_text(message) -> str:
    parts = []
    for block in message.get("blocks") or []:
        if block.get("text"):
            parts.append(block["text"]["text"])
        for element in block.get("elements") or []:
            parts.append(element.get("text") if isinstance(element.get("text"), str) else
                         (element.get("text") or {}).get("text", ""))
    return "\n".join(p for p in parts if p)


def buttons(message) -> dict[str, str]:
    found = {}
    for block in message.get("blocks") or []:
        if block["type"] == "actions":
            for element in block["elements"]:
                found[element["action_id"]] = element["text"]["text"]
    return found


def after_backoff(times: int = 1):
    """A moment when any page that failed is due again (the backoff is capped)."""
    from bot.store.base import utcnow

    return utcnow() + times * timedelta(seconds=pager.BACKOFF_CAP_SECONDS + 1)


def created_at(services):
    return as_utc(pager.page_for_rollout(services, 7).created_at)


def test_page_posts_in_alert_channel_mentions_user_oncall_and_dms_them(services, slack, pagerduty, rollout_thread):
    thread_ts = rollout_thread()
    page_churn(services, thread_ts)

    [alert] = alerts(slack)
    assert "<@U0BOB>" in alert["text"] and "<@U0BOB>" in block_text(alert)
    assert "churn" in alert["text"]
    # The user-typed reason is shown escaped: it cannot ping the channel.
    assert "&lt;!channel&gt;" in block_text(alert) and "<!channel>" not in block_text(alert)
    assert buttons(alert) == {"page_acknowledge": "Acknowledge", "page_resolve": "Resolve"}
    # A link to the rollout thread, as Slack names it.
    permalink = f"https://emulator.slack/archives/C0CHURN/p{thread_ts.replace('.', '')}"
    assert permalink in block_text(alert)

    [opened] = slack.calls_to("conversations.open")
    assert opened.args["users"] == "U0BOB"
    [dm] = slack.messages("DU0BOB")
    assert buttons(dm) == {"page_acknowledge": "Acknowledge", "page_resolve": "Resolve"}
    assert "<#C0ALERTS>" in block_text(dm)

    [event] = pagerduty.events
    assert event["event_action"] == "trigger" and event["dedup_key"] == DEDUP
    assert event["routing_key"] == "R0UTINGKEY0123456789abcdef012345"
    assert event["payload"]["severity"] == "error" and "churn" in event["payload"]["summary"]
    # PagerDuty went first and asked Slack nothing: the thread's archive link (it opens in the reader's
    # workspace) until the Slack part has recorded the permalink.
    archive = f"https://slack.com/archives/C0CHURN/p{thread_ts.replace('.', '')}"
    assert event["links"] == [{"href": archive, "text": "Rollout thread in Slack"}]


def test_group_oncall_is_mentioned_and_nobody_is_dmed(services, slack, pagerduty, rollout_thread):
    thread_ts = rollout_thread("C0FRAUD", "Rollout of fraud")
    pager.page_rollback(services, model_name="fraud", rollout_id=8, reason="manual", channel="C0FRAUD",
                        thread_ts=thread_ts, automatic=False, actor="U0CAROL")
    [alert] = alerts(slack)
    assert "<!subteam^S0ONCALL>" in alert["text"]
    assert "rolled back by <@U0CAROL>" in block_text(alert)
    assert slack.calls_to("conversations.open") == []


def test_paging_the_same_rollout_twice_sends_everything_once(services, slack, pagerduty, rollout_thread):
    thread_ts = rollout_thread()
    page_churn(services, thread_ts)
    page_churn(services, thread_ts, reason="a retry of the controller's tick")
    assert page_escalation.run_once(services) == "nothing owed, nothing to escalate"

    assert len(alerts(slack)) == 1
    assert len(slack.messages("DU0BOB")) == 1
    assert [e["event_action"] for e in pagerduty.events] == ["trigger"]


def test_slack_failure_leaves_the_page_owed_and_the_job_delivers_it_once(services, slack, pagerduty, rollout_thread):
    thread_ts = rollout_thread()
    # HTTP 500 on the first try and on both of the Slack client's own retries.
    slack.fail_next("chat.postMessage", status=500, count=3)
    page_churn(services, thread_ts)  # does not raise: the page is written and stays owed

    assert alerts(slack) == []
    assert len(slack.messages("DU0BOB")) == 1  # the DM did not wait for the alert channel
    page = pager.page_for_rollout(services, 7)
    assert "Slack did not post the page modelbot-rollout-7" in page.last_error

    # Not retried at once: the page backs off. A pass after the backoff delivers it.
    assert page_escalation.run_once(services) == "nothing owed, nothing to escalate"
    summary = page_escalation.run_once(services, now=after_backoff())
    assert "completed the deliveries of 1 page" in summary
    page_escalation.run_once(services, now=after_backoff())
    page_churn(services, thread_ts)

    [alert] = alerts(slack)
    assert "<@U0BOB>" in alert["text"]
    assert len(slack.messages("DU0BOB")) == 1
    assert [e["event_action"] for e in pagerduty.events] == ["trigger"]


def test_unacknowledged_page_escalates_after_the_configured_time_exactly_once(make_services, slack, pagerduty):
    services = make_services(MODELBOT_PAGE_ESCALATION_MINUTES=5)
    thread_ts = services.slack.chat_postMessage(channel="C0CHURN", text="Rollout of churn")["ts"]
    page_churn(services, thread_ts)
    [alert] = alerts(slack)
    start = created_at(services)

    page_escalation.run_once(services, now=start + timedelta(minutes=4))
    assert slack.thread("C0ALERTS", alert["ts"])[1:] == []

    summary = page_escalation.run_once(services, now=start + timedelta(minutes=6))
    assert "escalated 1" in summary
    page_escalation.run_once(services, now=start + timedelta(minutes=7))
    page_escalation.run_once(services, now=start + timedelta(hours=3))

    replies = slack.thread("C0ALERTS", alert["ts"])[1:]
    assert len(replies) == 1
    assert "<@U0BOB>" in replies[0]["text"] and "<@U0ADMIN>" in replies[0]["text"]
    assert "5 minutes" in replies[0]["text"]
    assert replies[0].get("reply_broadcast") is True
    [updated] = [m for m in slack.messages("C0ALERTS") if m["ts"] == alert["ts"]]
    assert "escalated to <@U0ADMIN>" in block_text(updated)
    assert buttons(updated) == {"page_acknowledge": "Acknowledge", "page_resolve": "Resolve"}


def test_acknowledge_stops_escalation_and_acknowledges_pagerduty(services, slack, pagerduty, rollout_thread):
    page_churn(services, rollout_thread())
    page = pager.page_for_rollout(services, 7)
    assert pager.acknowledge(services, page.id, "U0BOB") is True
    assert pager.acknowledge(services, page.id, "U0ALICE") is False  # already acknowledged by Bob

    page_escalation.run_once(services, now=created_at(services) + timedelta(hours=1))
    [alert] = alerts(slack)
    assert slack.thread("C0ALERTS", alert["ts"])[1:] == []
    assert "Acknowledged* by <@U0BOB>" in block_text(alert)
    assert buttons(alert) == {"page_resolve": "Resolve"}
    [dm] = slack.messages("DU0BOB")
    assert buttons(dm) == {"page_resolve": "Resolve"}
    assert [(e["event_action"], e["dedup_key"]) for e in pagerduty.events] == [("trigger", DEDUP),
                                                                             ("acknowledge", DEDUP)]


def test_resolve_for_rollout_resolves_pagerduty_with_the_same_dedup_key(services, slack, pagerduty, rollout_thread):
    page_churn(services, rollout_thread())
    pager.resolve_for_rollout(services, 7, actor="U0ALICE")
    pager.resolve_for_rollout(services, 7)  # again: nothing more happens
    pager.resolve_for_rollout(services, 999)  # a rollout that never paged

    [alert] = alerts(slack)
    assert "Resolved* by <@U0ALICE>" in block_text(alert)
    assert buttons(alert) == {}
    assert [(e["event_action"], e["dedup_key"]) for e in pagerduty.events] == [("trigger", DEDUP), ("resolve", DEDUP)]
    # Resolved pages never escalate.
    page_escalation.run_once(services, now=created_at(services) + timedelta(hours=1))
    assert slack.thread("C0ALERTS", alert["ts"])[1:] == []


def test_pagerduty_outage_is_retried_with_backoff_then_by_the_job(services, slack, pagerduty, rollout_thread):
    pagerduty.fail_next(429, count=1, retry_after=0)
    page_churn(services, rollout_thread())
    assert [r.status for r in pagerduty.received] == [429, 202]  # retried within the call

    pager.resolve_for_rollout(services, 7)
    pagerduty.fail_next(500, count=10)  # down for longer than the client's retries
    pager.page_rollback(services, model_name="churn", rollout_id=9, reason="again", channel="C0CHURN",
                        thread_ts=alerts(slack)[0]["ts"], automatic=True, actor=None)
    page = pager.page_for_rollout(services, 9)
    assert "PagerDuty did not accept the trigger event for modelbot-rollout-9 (HTTP 500" in page.pd_last_error
    assert "no PagerDuty incident was opened" in page.pd_last_error
    assert len(alerts(slack)) == 2  # Slack got the page regardless
    assert "pagerduty_trigger" in pager.owed_parts(page)

    # The PagerDuty job retries it after its back-off, however long PagerDuty refuses.
    assert "not accepted by PagerDuty yet" in pagerduty_delivery.run_once(services, now=after_backoff())
    pagerduty._faults.clear()
    assert "sent what 1 page(s) owed PagerDuty" in pagerduty_delivery.run_once(services, now=after_backoff(2))
    pagerduty_delivery.run_once(services, now=after_backoff(3))
    page_escalation.run_once(services, now=after_backoff(3))
    triggers = [e for e in pagerduty.events if e["event_action"] == "trigger" and e["dedup_key"] == "modelbot-rollout-9"]
    assert len(triggers) == 1
    assert len(alerts(slack)) == 2


def test_no_pagerduty_without_a_routing_key(make_services, slack, pagerduty):
    services = make_services(PAGERDUTY_ROUTING_KEY=None)
    ts = services.slack.chat_postMessage(channel="C0CHURN", text="Rollout")["ts"]
    page_churn(services, ts)
    pager.resolve_for_rollout(services, 7)
    assert pagerduty.received == []
    assert len(alerts(slack)) == 1


def test_only_oncall_owners_and_admins_may_acknowledge(services, slack, rollout_thread):
    from bot.rights import NotAllowed

    page_churn(services, rollout_thread())
    page = pager.page_for_rollout(services, 7)
    for allowed in ("U0BOB", "U0ALICE", "U0ADMIN"):
        pager.require_page_rights(services, allowed, page, "acknowledge")
    with pytest.raises(NotAllowed) as denied:
        pager.require_page_rights(services, "U0CAROL", page, "acknowledge")
    assert "<@U0BOB>" in str(denied.value) and "<@U0ALICE>" in str(denied.value)

    # A group on call: its members may, others may not.
    slack.set_usergroup("S0ONCALL", ["U0DAVE"])
    pager.page_rollback(services, model_name="fraud", rollout_id=8, reason="r", channel="C0FRAUD",
                        thread_ts=rollout_thread("C0FRAUD"), automatic=True, actor=None)
    fraud = pager.page_for_rollout(services, 8)
    pager.require_page_rights(services, "U0DAVE", fraud, "acknowledge")
    with pytest.raises(NotAllowed):
        pager.require_page_rights(services, "U0ERIN", fraud, "resolve")
    slack.set_usergroup("S0ONCALL", [])


def test_pagerduty_client_names_pagerduty_and_what_was_not_done(pagerduty):
    from bot.integrations.pagerduty import PagerDuty, PagerDutyError

    bad_key = PagerDuty(routing_key="short", events_url=pagerduty.url, backoff=0.01)
    with pytest.raises(PagerDutyError) as exc:
        bad_key.resolve("modelbot-rollout-1")
    assert "PagerDuty did not accept the resolve event for modelbot-rollout-1 (HTTP 400" in str(exc.value)
    assert "routing_key" in str(exc.value) and "the PagerDuty incident was not resolved" in str(exc.value)
    assert len(pagerduty.received) == 1  # a rejected event is not retried

    unreachable = PagerDuty(routing_key="x" * 32, events_url="http://127.0.0.1:9/v2/enqueue", backoff=0.01,
                            attempts=2, timeout=2)
    with pytest.raises(PagerDutyError) as exc:
        unreachable.acknowledge("modelbot-rollout-1")
    assert "unreachable" in str(exc.value) and "was not acknowledged" in str(exc.value)


def test_the_escalation_job_is_registered():
    import jobs

    assert page_escalation.NAME in jobs.MODULES


def test_a_page_written_but_never_sent_is_delivered_by_the_job(services, slack, pagerduty, rollout_thread):
    """As if the process died right after writing the page row: nothing was posted, nothing is lost."""
    from sqlalchemy import update

    from bot.store.base import utcnow
    from bot.paging.tables import Page

    thread_ts = rollout_thread()
    page_id = pager.open_page(services, kind=pager.KIND_ROLLBACK, dedup_key=DEDUP, model_name="churn", rollout_id=7,
                              title="*churn* was rolled back automatically", reason="5XX up",
                              source_channel="C0CHURN", source_ts=thread_ts, automatic=True)
    # The dead process still holds the page: nobody else delivers it until its claim runs out.
    with services.store.session() as s:
        s.execute(update(Page).where(Page.id == page_id)
                  .values(claim_holder="dead-worker", claim_until=utcnow() + timedelta(minutes=1)))
    page_escalation.run_once(services)
    assert alerts(slack) == []
    with services.store.session() as s:
        s.execute(update(Page).where(Page.id == page_id).values(claim_until=utcnow() - timedelta(seconds=1)))

    page_escalation.run_once(services)
    page_escalation.run_once(services)
    assert len(alerts(slack)) == 1
    assert len(slack.messages("DU0BOB")) == 1
    assert pagerduty.events == []  # PagerDuty has its own job, and its own claim
    pagerduty_delivery.run_once(services)
    pagerduty_delivery.run_once(services)
    assert [e["event_action"] for e in pagerduty.events] == ["trigger"]


def test_concurrent_pages_for_one_rollout_post_once(services, slack, pagerduty, rollout_thread):
    """The web process (a /model rollback) and a worker paging the same rollout at the same moment."""
    from concurrent.futures import ThreadPoolExecutor

    thread_ts = rollout_thread()
    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(page_churn, services, thread_ts) for _ in range(4)]:
            future.result()
    page_escalation.run_once(services)
    assert len(alerts(slack)) == 1
    assert len(slack.messages("DU0BOB")) == 1
    assert [e["event_action"] for e in pagerduty.events] == ["trigger"]


def test_a_resolve_before_the_acknowledge_went_out_closes_the_incident_without_it(services, slack, pagerduty,
                                                                                rollout_thread, monkeypatch):
    from sqlalchemy import update

    from bot.store.base import utcnow
    from bot.paging.tables import Page

    page_churn(services, rollout_thread())
    page = pager.page_for_rollout(services, 7)
    # Another process is busy delivering this page, to Slack and to PagerDuty: the clicks change its state
    # and leave the sending to it.
    with services.store.session() as s:
        s.execute(update(Page).where(Page.id == page.id)
                  .values(claim_holder="other", claim_until=utcnow() + timedelta(minutes=2),
                          pd_claim_holder="other", pd_claim_until=utcnow() + timedelta(minutes=2)))
    monkeypatch.setattr(pager, "CLICK_CLAIM_WAIT_SECONDS", 0.1)
    assert pager.acknowledge(services, page.id, "U0BOB")
    assert pager.resolve(services, page.id, "U0BOB", wait=0.1)
    assert [e["event_action"] for e in pagerduty.events] == ["trigger"]
    with services.store.session() as s:
        s.execute(update(Page).where(Page.id == page.id).values(claim_holder=None, claim_until=None,
                                                                 pd_claim_holder=None, pd_claim_until=None))

    assert pager.deliver(services, page.id)
    # Acknowledging an incident that is being resolved is moot: PagerDuty gets the resolve, once.
    assert [(e["event_action"], e["dedup_key"]) for e in pagerduty.events] == [
        ("trigger", "modelbot-rollout-7"), ("resolve", "modelbot-rollout-7")]
    assert pager.deliver(services, page.id)
    assert len(pagerduty.events) == 2
