"""How numbers, times and money read in every capability's messages (bot/slack/formatting.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.integrations.sagemaker import EndpointState, Variant
from bot.slack import formatting


@pytest.mark.parametrize("m, text", [(0, "0 min"), (0.5, "30 s"), (0.25, "15 s"), (1, "1 min"), (30, "30 min"),
                                     (179, "179 min"), (180, "3.0 h"), (-5, "0 min")])
def test_minutes(m, text):
    assert formatting.minutes(m) == text


@pytest.mark.parametrize("usd, text", [(0, "$0"), (0.0234, "$0.0234"), (0.5, "$0.5"), (1.5, "$1.50"),
                                       (1234.567, "$1,234.57"), (12345.6, "$12,346")])
def test_money(usd, text):
    assert formatting.money(usd) == text


@pytest.mark.parametrize("delta, text", [(timedelta(seconds=30), "less than a minute"),
                                         (timedelta(minutes=1), "1 minute"), (timedelta(hours=5), "5 hours"),
                                         (timedelta(days=1, hours=3), "1 day"), (timedelta(seconds=-3), "less than a minute")])
def test_age(delta, text):
    assert formatting.age(delta) == text


@pytest.mark.parametrize("x, text", [(0.002, "0.20%"), (0, "0.00%"), (float("nan"), "–"), (None, "–"), (True, "–")])
def test_rate_shows_only_real_numbers(x, text):
    assert formatting.rate(x) == text


def test_rate_difference_and_interval_use_a_real_minus_sign():
    assert formatting.pp(-0.0123) == "−1.23 pp"
    assert formatting.interval((-0.01, float("inf"))) == "[−1.00, +∞] pp"


def test_split_line_names_each_variant_with_its_share():
    state = EndpointState(name="churn-prod", status="InService", config_name="churn-prod-2", variants=(
        Variant(name="v41", current_weight=9.0, instance_type="ml.m5.large"), Variant(name="v42", current_weight=1.0)))
    assert formatting.split_line(state) == "`v41` 90% (ml.m5.large) · `v42` 10%"
    assert formatting.split_line(EndpointState(name="x", status="Creating", config_name="x-1")) == "no variants"
