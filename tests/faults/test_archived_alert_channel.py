"""A page always reaches someone: an archived alert channel, a refused thread, 100 pages that keep failing,
a 10,000-character reason, and /healthz naming a page owed for too long. Real Slack Web API calls against the
Slack emulator, real SQL (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from bot.app import build_app
from bot.paging import service as pager
from bot.paging.tables import Page
from bot.store.base import utcnow
from bot.web import WebApp
from jobs import page_escalation


def posts_to(slack, channel: str) -> list:
    return [c for c in slack.calls_to("chat.postMessage") if c.args.get("channel") == channel]


def later(times: int = 1):
    return utcnow() + times * timedelta(seconds=pager.BACKOFF_CAP_SECONDS + 1)


def page_churn(services, thread_ts: str, rollout_id: int = 7, reason: str = "candidate 5XX 1.2% vs 0.4%"):
    pager.page_rollback(services, model_name="churn", rollout_id=rollout_id, reason=reason, channel="C0CHURN",
                        thread_ts=thread_ts, automatic=True, actor=None)


def test_archived_alert_channel_pages_in_the_rollout_thread_and_is_not_retried(make_services, slack):
    services = make_services()
    slack.refuse_channel("C0ALERTS", "is_archived")
    thread_ts = services.slack.chat_postMessage(channel="C0CHURN", text="Rollout of churn: v42 replacing v41")["ts"]

    page_churn(services, thread_ts)

    # In the rollout's thread, broadcast to the channel, mentioning the on-call, saying why it is there.
    [page] = [m for m in slack.thread("C0CHURN", thread_ts)[1:] if "was rolled back" in m["text"]]
    assert page.get("reply_broadcast") is True
    assert "<@U0BOB>" in page["text"]
    assert "refused it in <#C0ALERTS> (is_archived)" in str(page["blocks"])
    assert {"page_acknowledge", "page_resolve"} <= {e["action_id"] for b in page["blocks"]
                                                    if b["type"] == "actions" for e in b["elements"]}
    assert pager.page_for_rollout(services, 7).settled_version == pager.page_for_rollout(services, 7).version

    # Many passes later (and an acknowledge that updates the message): the archived channel was tried once.
    for i in range(1, 6):
        page_escalation.run_once(services, now=later(i))
    assert pager.acknowledge(services, pager.page_for_rollout(services, 7).id, "U0BOB")
    page_escalation.run_once(services, now=later(7))
    assert len(posts_to(slack, "C0ALERTS")) == 1
    [updated] = [m for m in slack.thread("C0CHURN", thread_ts) if m["ts"] == page["ts"]]
    assert "Acknowledged" in str(updated["blocks"])


def test_every_refusing_place_is_passed_on_to_the_admins_dm(make_services, slack):
    services = make_services()
    slack.refuse_channel("C0ALERTS", "is_archived")
    slack.refuse_channel("C0CHURN", "not_in_channel")  # the rollout's thread and the model's channel
    page_churn(services, "1700000000.000100")

    [dm] = slack.messages("DU0ADMIN")
    assert "was rolled back" in dm["text"] and "<@U0BOB>" in dm["text"]
    assert len(posts_to(slack, "C0ALERTS")) == 1 and len(posts_to(slack, "C0CHURN")) == 1


def test_a_hundred_failing_pages_do_not_starve_a_new_one(make_services, slack):
    services = make_services()
    # 100 pages whose every place refuses them (their alert channel is gone, the admins cannot be DMed).
    slack.refuse_channel("C0GONE", "channel_not_found")
    slack.refuse_channel("DU0ADMIN", "user_disabled")
    old = [pager.open_page(services, kind="rollback", dedup_key=f"old-{i}", model_name=None,
                           title=f"old page {i}", reason="gone") for i in range(100)]
    with services.store.session() as s:
        s.execute(update(Page).where(Page.id.in_(old)).values(alert_channel="C0GONE"))
    # A new page whose first delivery did not happen (the process died right after writing it).
    new_id = pager.open_page(services, kind="rollback", dedup_key="modelbot-rollout-500", model_name="churn",
                             rollout_id=500, title="*churn* was rolled back", reason="5XX up")

    # Three passes at one moment (a slow shared machine cannot stretch them past the first backoff).
    moment = utcnow()
    for _ in range(3):
        page_escalation.run_once(services, now=moment)

    assert [m for m in slack.messages("C0ALERTS") if "churn" in m["text"]], "the new page never went out"
    assert pager.get_page(services, new_id).alert_ts
    # The failing ones back off: tried once each in those passes, not on every pass.
    tries = [c.args["text"].split("old page ")[1].split(".")[0] for c in posts_to(slack, "C0GONE")]
    assert sorted(tries) == sorted(str(i) for i in range(100))


def test_a_page_with_a_ten_thousand_character_reason_posts(make_services, slack):
    services = make_services()
    thread_ts = services.slack.chat_postMessage(channel="C0CHURN", text="Rollout of churn")["ts"]
    page_churn(services, thread_ts, reason="x" * 10_000)

    [alert] = [m for m in slack.messages("C0ALERTS") if "was rolled back" in m["text"]]
    assert all(len(b["text"]["text"]) <= 3000 for b in alert["blocks"] if b["type"] == "section")
    assert "…" in str(alert["blocks"])
    assert len(pager.page_for_rollout(services, 7).reason) == 10_000  # kept whole for PagerDuty and the record


def test_healthz_is_degraded_and_names_a_page_owed_for_more_than_five_minutes(make_services, slack):
    services = make_services(AIRFLOW_URL="http://admin:hunter2@airflow.internal:8080")
    web = WebApp(services, build_app(services, token_verification=False))
    slack.refuse_channel("C0ALERTS", "is_archived")
    slack.refuse_channel("C0CHURN", "is_archived")
    slack.refuse_channel("DU0ADMIN", "user_disabled")
    page_churn(services, "1700000000.000100")
    status, report = web.health()
    assert report["status"] == "ok"  # owed, but not for long yet

    with services.store.session() as s:
        s.execute(update(Page).values(owed_since=utcnow() - timedelta(minutes=6)))
    status, report = web.health()
    assert report["status"] == "degraded"
    [owed] = report["pages_owed"]
    assert owed["page"] == "modelbot-rollout-7" and "alert" in owed["owes"]
    assert "slack:every_place_refused" in owed["errors"]
    # Credentials never show.
    assert "hunter2" not in str(report) and "admin" not in report["integrations"]["airflow"]
    assert "airflow.internal:8080" in report["integrations"]["airflow"]
