"""The sandbox's two stories, and the things a person does on its page, in real Chromium.

The stories run side by side (the `retrains` fixture starts both from the composer); each test then waits for
what its story shows. Every wait is for something visible on the page.
"""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.sandbox.conftest import screenshot
from tests.sandbox.driver import Slack

MINUTE = 60_000


def test_status_from_the_composer(page, sandbox):
    slack = Slack(page, sandbox.url)
    slack.open_channel("#ml-churn")
    # `/model` autocompletes its subcommands; Tab takes the first match.
    slack.composer.fill("/model sta")
    expect(page.get_by_role("option", name=re.compile(r"^status"))).to_be_visible()
    slack.composer.press("Tab")
    expect(slack.composer).to_have_value("/model status ")
    slack.composer.press("Enter")
    reply = slack.message("Only visible to you").filter(has_text="Model status").last
    expect(reply).to_be_visible(timeout=MINUTE)
    expect(reply).to_contain_text("churn")
    expect(reply).to_contain_text("fraud")
    # Up recalls the last command.
    slack.composer.press("ArrowUp")
    expect(slack.composer).to_have_value("/model status")
    slack.composer.fill("/model pricing 4 16")
    slack.composer.press("Enter")
    prices = slack.message("SageMaker hosting prices for 4 vCPU, 16 GiB").last
    expect(prices).to_be_visible(timeout=MINUTE)
    expect(prices).to_contain_text("ml.t2.xlarge")
    screenshot(page, "status")


def test_fraud_rolls_back_by_itself_and_pages(page, sandbox, retrains):
    slack = Slack(page, sandbox.url)
    slack.open_channel("#ml-fraud")
    slack.open_thread_of(re.compile(r"fraud.* retraining run"), timeout=2 * MINUTE)
    expect(slack.thread).to_contain_text("rolled back automatically", timeout=6 * MINUTE)
    screenshot(page, "fraud")

    slack.open_channel("#ml-alerts")
    alert = slack.message("fraud").filter(has=page.get_by_role("button", name="Acknowledge")).last
    expect(alert).to_be_visible(timeout=MINUTE)
    alert.get_by_role("button", name="Acknowledge").click()
    expect(slack.message("Acknowledged").last).to_be_visible(timeout=MINUTE)
    pagerduty = page.get_by_role("list").filter(has_text=re.compile("trigger"))
    expect(page.locator("#pagerduty")).to_contain_text("acknowledge", timeout=MINUTE)
    expect(pagerduty).to_contain_text("trigger")
    screenshot(page, "alerts")


def test_traffic_panel_turns_a_healthy_rollout_into_a_rollback(page, sandbox, retrains):
    slack = Slack(page, sandbox.url)
    slack.open_channel("#ml-fraud")
    # After fraud's first candidate rolled back, make the next new variant healthy, and retrain.
    slack.open_thread_of(re.compile(r"fraud.* retraining run"), timeout=2 * MINUTE)
    expect(slack.thread).to_contain_text("rolled back automatically", timeout=7 * MINUTE)
    # The rolled-back candidate stays on the endpoint at 0% (the next deploy reuses it): heal it, and any new one.
    stable = "v17"
    panel = page.get_by_role("region", name="Simulated traffic")
    rates = panel.get_by_label(re.compile(r"^5XX error rate \(%\) of fraud-prod "))
    expect(rates.first).to_be_visible()
    for label in [rates.nth(i).get_attribute("aria-label") for i in range(rates.count())]:
        target = label.rsplit(" ", 1)[-1] if not label.endswith("new variants") else "new variants"
        if target == stable:
            continue
        panel.get_by_label(label).fill("0.2")
        panel.get_by_role("button", name=f"Apply error rates to fraud-prod {target}").click()
        expect(panel.get_by_label(label)).to_have_value("0.20")
    slack.retrain("fraud")
    slack.open_thread_of(re.compile(r"fraud.* retraining run"), timeout=4 * MINUTE)
    # Healthy: the rollout moves past its first step.
    expect(slack.thread).to_contain_text(re.compile(r"Step 2 of"), timeout=5 * MINUTE)
    candidate = re.search(r"Candidate `?(v\d+)`? is on endpoint", slack.thread.inner_text()).group(1)
    page.get_by_label(f"5XX error rate (%) of fraud-prod {candidate}").fill("6")
    page.get_by_role("button", name=f"Apply error rates to fraud-prod {candidate}").click()
    expect(slack.thread).to_contain_text("rolled back automatically", timeout=4 * MINUTE)
    screenshot(page, "traffic")


def test_churn_rolls_out_step_by_step_and_is_promoted(page, sandbox, retrains):
    slack = Slack(page, sandbox.url)
    slack.open_channel("#ml-churn")
    slack.open_thread_of(re.compile(r"churn.* retraining run"), timeout=2 * MINUTE)
    thread = slack.thread
    parent = slack.message(re.compile(r"retraining run"), thread).first
    for task in ("preprocess", "train", "evaluate", "deploy"):
        expect(parent).to_contain_text(task, timeout=3 * MINUTE)
    expect(thread.get_by_role("img", name=re.compile(r"evaluation", re.I)).first).to_be_visible(timeout=3 * MINUTE)
    expect(thread).to_contain_text(re.compile(r"Step 1 of"), timeout=3 * MINUTE)
    expect(thread).to_contain_text("Promoted to 100%", timeout=7 * MINUTE)
    expect(thread).to_contain_text("Rollout complete", timeout=3 * MINUTE)
    screenshot(page, "churn")


def test_rollback_through_its_confirm_dialog(page, sandbox, retrains):
    slack = Slack(page, sandbox.url)
    slack.open_channel("#ml-churn")
    slack.open_thread_of(re.compile(r"churn.* retraining run"), timeout=2 * MINUTE)
    expect(slack.thread).to_contain_text("Rollout complete", timeout=9 * MINUTE)
    slack.send("/model rollback churn bad calibration")
    prompt = slack.message("Only visible to you").filter(has=page.get_by_role("button", name="Roll back")).last
    expect(prompt).to_be_visible(timeout=MINUTE)
    prompt.get_by_role("button", name="Roll back").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Roll back churn?")
    screenshot(page, "confirm")
    dialog.get_by_role("button").last.click()  # the confirm button (the deny button comes first, as in Slack)
    expect(dialog).to_be_hidden()
    expect(slack.message(re.compile(r"Rolled back \*?churn", re.I)).last).to_be_visible(timeout=MINUTE)
