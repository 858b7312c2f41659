"""Pricing as a user meets it: `modelbot prices refresh` fills the table, then `/model pricing` over HTTP."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.endpoints import create_endpoint
from tests.harness import ROOT, AppProcess, app_env, wait_until
from sandbox import price_catalog as catalog
from sandbox.price_list import FakePriceList

pytestmark = pytest.mark.e2e


@pytest.fixture
def priced_app(tmp_path, moto_url, aws, slack, models_file):
    fake = FakePriceList(catalog.region_records("us-east-1")).start()
    env = app_env(slack=slack, moto_url=moto_url, database_url=f"sqlite:///{tmp_path / 'm.db'}",
                  models_file=models_file, AWS_ENDPOINT_URL_PRICING=fake.url)
    app = AppProcess(env, tmp_path / "app.log").start()
    yield app, env
    app.stop()
    fake.stop()


def test_refresh_then_cheapest_fit_and_model_comparison(priced_app, slack):
    app, env = priced_app
    refresh = subprocess.run([sys.executable, "-m", "bot.cli", "prices", "refresh", "--region", "us-east-1",
                              "--source", "api"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert refresh.returncode == 0, refresh.stderr + refresh.stdout
    assert "us-east-1" in refresh.stdout + refresh.stderr

    resp, rid = app.command("pricing 2 8", slack=slack)
    assert resp.status_code == 200
    reply = wait_until(lambda: slack.responses_for(rid), timeout=20, message="the pricing reply")[-1].body
    assert "ml." in reply["text"] and "month" in reply["text"]
    assert any(b["type"] == "header" for b in reply["blocks"])

    create_endpoint("churn-prod", {"v41": 1.0}, instance_type="ml.m5.4xlarge")
    resp, rid = app.command("pricing churn", slack=slack)
    reply = wait_until(lambda: slack.responses_for(rid), timeout=20, message="the model pricing reply")[-1].body
    assert "ml.m5.4xlarge" in reply["text"]
    assert "fits for" in reply["text"]


def test_bad_pricing_input_is_a_usage_message(priced_app, slack):
    app, _ = priced_app
    resp, rid = app.command("pricing lots 8", slack=slack)
    assert resp.status_code == 200
    text = wait_until(lambda: slack.responses_for(rid), timeout=20, message="the usage reply")[-1].body["text"]
    assert "Usage:" in text and "lots" in text
