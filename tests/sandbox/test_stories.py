"""The sandbox's stories, and the things a person does on its page, in real Chromium.

The stories run side by side (the `retrains` fixture starts both from the composer; the drift test turns
churn's world on right after); each test then waits for what its story shows. Every wait is for something
visible on the page.
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


def test_try_a_request_answers_and_names_the_fields_of_a_400(page, sandbox):
    slack = Slack(page, sandbox.url)
    box = slack.panels.get_by_role("region", name="Try a request")
    box.get_by_role("combobox", name="Endpoint").select_option("churn-prod")
    box.get_by_role("button", name="Example").click()
    expect(box.get_by_role("textbox", name="Request body")).to_have_value(re.compile(r'"tenure_z"'))
    box.get_by_role("button", name="Send request").click()
    answer = box.get_by_role("status", name="Answer")
    expect(answer).to_contain_text(re.compile(r"^200 from v\d+"), timeout=MINUTE)
    expect(answer).to_contain_text('"predictions"')
    box.get_by_role("button", name="A bad request").click()  # tenure_z out of range, complaints_z a string
    box.get_by_role("button", name="Send request").click()
    expect(answer).to_contain_text("400 from v", timeout=MINUTE)
    fields = answer.get_by_role("list", name="Field errors")
    expect(fields).to_contain_text("instances[0].tenure_z")
    expect(fields).to_contain_text("greater than the maximum of 10")
    expect(fields).to_contain_text("instances[0].complaints_z")
    expect(fields).to_contain_text('is not of type "number"')
    box.scroll_into_view_if_needed()
    screenshot(page, "try")


def test_drift_decays_churn_quality_and_says_so_in_the_channel(page, sandbox, retrains):
    slack = Slack(page, sandbox.url)
    slack.open_channel("#ml-churn")
    world = slack.panels.get_by_role("region", name="churn's world")
    expect(world).to_contain_text("days behind today", timeout=MINUTE)
    world.get_by_role("button", name="Start drift").click()
    expect(world.get_by_role("button", name="Stop drift")).to_have_attribute("aria-pressed", "true")
    decay = slack.message("has decayed").filter(has=page.get_by_role("button", name="Retrain")).last
    expect(decay).to_be_visible(timeout=6 * MINUTE)
    expect(decay).to_contain_text(re.compile(r"auc over the last 3 days is \S+ on [\d,]+ labels, worse than its reference"))
    slack.open_thread_of("has decayed")
    expect(slack.thread.get_by_role("img").first).to_be_visible(timeout=MINUTE)
    world.scroll_into_view_if_needed()
    screenshot(page, "quality")


def test_fraud_rolls_back_by_itself_and_pages(page, sandbox, retrains):
    slack = Slack(page, sandbox.url)
    slack.open_channel("#ml-fraud")
    slack.open_thread_of(re.compile(r"fraud.* retraining run"), timeout=2 * MINUTE)
    expect(slack.thread).to_contain_text("rolled back automatically", timeout=6 * MINUTE)
    # Its 5XX are its own: modelbot-serve refused the candidate's predictions (above 1) by its RESPONSE_SCHEMA.
    candidate = re.search(r"Candidate `?(v\d+)`? is on endpoint", slack.thread.inner_text()).group(1)
    served = slack.served("fraud-prod", candidate)
    expect(served).to_contain_text(re.compile(r"real sample: 5XX [1-9]"))
    expect(served).to_contain_text("last 500: the model's predictions do not match its response schema "
                                   "(fraud_model.RESPONSE_SCHEMA)")
    expect(served).to_contain_text("is greater than the maximum of 1")
    expect(slack.served("fraud-prod", "v17")).to_contain_text("real sample: 5XX 0.0%")
    served.scroll_into_view_if_needed()
    screenshot(page, "fraud")

    slack.open_channel("#ml-alerts")
    alert = slack.message("fraud").filter(has=page.get_by_role("button", name="Acknowledge")).last
    expect(alert).to_be_visible(timeout=MINUTE)
    alert.get_by_role("button", name="Acknowledge").click()
    expect(slack.message("Acknowledged").last).to_be_visible(timeout=MINUTE)
    pagerduty = page.get_by_role("list").filter(has_text=re.compile("trigger"))
    expect(page.locator("#pagerduty")).to_contain_text("acknowledge", timeout=MINUTE)
    expect(pagerduty).to_contain_text("trigger")
    slack.panels.get_by_role("region", name="PagerDuty").scroll_into_view_if_needed()
    screenshot(page, "alerts")


def test_traffic_panel_turns_a_healthy_rollout_into_a_rollback(page, sandbox, retrains):
    slack = Slack(page, sandbox.url)
    slack.open_channel("#ml-fraud")
    # After fraud's first candidate rolled back, retrain it as the bounded logistic model: a healthy candidate.
    slack.open_thread_of(re.compile(r"fraud.* retraining run"), timeout=2 * MINUTE)
    expect(slack.thread).to_contain_text("rolled back automatically", timeout=7 * MINUTE)
    slack.retrain("fraud", "link=logit")
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
