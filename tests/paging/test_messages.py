"""The page's wording (bot/paging/messages.py) straight from plain data: no database, no Slack."""

from __future__ import annotations

from datetime import datetime, timezone

from bot.paging import messages
from bot.paging.tables import ACKNOWLEDGED, ALERT_CHANNEL, OPEN, RESOLVED, ROLLOUT_THREAD, Page

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
WHEN_T0 = "<!date^1772366400^{date_short_pretty} at {time}|2026-03-01 12:00 UTC>"


def page(**values) -> Page:
    row = {"id": 7, "kind": "rollback", "dedup_key": "modelbot-rollout-3", "model": "churn", "rollout_id": 3,
           "title": "*churn* was rolled back by <@U0ALICE>", "reason": "p99 <2x>", "actor": "U0ALICE",
           "notify": "U0ONCALL", "state": OPEN, "created_at": T0, "alert_channel": "C0ALERTS",
           "source_channel": "C0CHURN", "source_link": None, "alert_ts": None, "alert_place": ALERT_CHANNEL,
           "refusals": None, "escalated_at": None, "acknowledged_at": None, "resolved_at": None}
    row.update(values)
    return Page(**row)


def test_rollback_title_names_who_rolled_back():
    assert messages.rollback_title("a<b", automatic=True, actor=None) == \
        "*a&lt;b* was rolled back automatically by the rollout controller"
    assert messages.rollback_title("churn", automatic=False, actor="U0ALICE") == \
        "*churn* was rolled back by <@U0ALICE>"
    assert messages.rollback_title("churn", automatic=False, actor=None) == "*churn* was rolled back by hand"


def test_open_alert_text_blocks_and_buttons():
    text, blocks = messages.render(page(), escalation_minutes=15, admins=["U0ADMIN"])
    assert text == ":rotating_light: <@U0ONCALL> *churn* was rolled back by <@U0ALICE>. Reason: p99 &lt;2x&gt;"
    assert blocks[0]["text"]["text"] == ":rotating_light: *churn* was rolled back by <@U0ALICE>\nPaging <@U0ONCALL>."
    assert blocks[1]["text"]["text"] == "*Reason:* p99 &lt;2x&gt;\nIn <#C0CHURN>"
    assert [e["text"] for e in blocks[2]["elements"]] == [
        f":red_circle: *Open* since {WHEN_T0}. Escalates to the admins if nobody acknowledges it within 15 minutes."]
    assert [(b["action_id"], b["value"]) for b in blocks[3]["elements"]] == [
        (messages.ACK_ACTION, "7"), (messages.RESOLVE_ACTION, "7")]


def test_dm_and_moved_on_alert():
    text, blocks = messages.render(page(), escalation_minutes=15, admins=[], for_dm=True)
    assert text == ":rotating_light: *churn* was rolled back by <@U0ALICE>. Reason: p99 &lt;2x&gt;"
    assert blocks[0]["text"]["text"].endswith("You are on call for this page (also posted in <#C0ALERTS>).")
    moved = page(alert_ts="1.2", alert_place=ROLLOUT_THREAD, refusals="alert_channel C0ALERTS is_archived\n",
                 source_link="https://slack.example/p1")
    _, blocks = messages.render(moved, escalation_minutes=15, admins=[])
    assert blocks[1]["text"]["text"] == ("*Reason:* p99 &lt;2x&gt;\n<https://slack.example/p1|Open the rollout thread>"
                                         "\n:warning: Posted here because Slack refused it in <#C0ALERTS> "
                                         "(is_archived).")


def test_state_lines_after_escalation_acknowledge_and_resolve():
    escalated = page(escalated_at=T0)
    assert messages.state_lines(escalated, escalation_minutes=2.5, admins=[]) == [
        f":red_circle: *Open* since {WHEN_T0}, not acknowledged: escalated to nobody (no admins set) {WHEN_T0}."]
    acked = page(state=ACKNOWLEDGED, acknowledged_by="U0BOB", acknowledged_at=T0)
    assert messages.state_lines(acked, escalation_minutes=15, admins=[]) == [
        f":large_yellow_circle: *Acknowledged* by <@U0BOB> {WHEN_T0}."]
    resolved = page(state=RESOLVED, resolved_by=None, resolved_at=T0)
    assert messages.state_lines(resolved, escalation_minutes=15, admins=[]) == [
        f":white_check_mark: *Resolved* by modelbot {WHEN_T0}."]
    assert messages.buttons(resolved) is None
    text, _ = messages.render(resolved, escalation_minutes=15, admins=[])
    assert text.startswith(":white_check_mark: <@U0ONCALL> *churn*") and "(resolved)." in text
    assert messages.when(None) == "at an unknown time"


def test_pagerduty_summary_escalation_and_refusal_texts():
    assert messages.plain_summary(page()) == "churn was rolled back by @U0ALICE: p99 <2x>"
    assert messages.escalation_text(15.0, ["U0ONCALL", "U0ADMIN"]) == (
        ":rotating_light: *Escalated:* nobody has acknowledged this page in 15 minutes. "
        "<@U0ONCALL> <@U0ADMIN> please acknowledge or resolve it.")
    assert messages.not_allowed_text("acknowledge", oncall={"S0GROUP"}, model_name="churn", owners=["U0OWN"],
                                     admins=["U0ADMIN"], unlisted_group="S0GROUP") == (
        "Only the on-call <!subteam^S0GROUP>, the owners of *churn* (<@U0OWN>), an admin (<@U0ADMIN>) may "
        "acknowledge this page. (Slack did not list the members of <!subteam^S0GROUP>, so on-call membership "
        "was not checked)")
    assert messages.not_allowed_text("resolve", oncall=set(), model_name=None, owners=(), admins=()) == \
        "Only the on-call an admin may resolve this page."
