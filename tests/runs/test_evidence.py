"""What the thread says about an evaluation, and which XCom values follow the contract."""

from __future__ import annotations

import pytest

from bot.registry import load_registry
from bot.runs.messages import evaluation_text
from bot.slack.formatting import duration
from bot.runs.service import parse_deploy, parse_evaluation


@pytest.fixture
def registry(models_file):
    return load_registry(models_file)


@pytest.mark.parametrize(
    "value, problem",
    [
        ([0.9], "it returned list, not an object"),
        ({"metric": "auc", "candidate": "0.9", "production": 0.8, "promote": True}, "`candidate` is not a number"),
        ({"metric": "auc", "candidate": 0.9, "production": 0.8, "promote": "yes"}, "`promote` is not true/false"),
        ({"candidate": 0.9, "production": 0.8, "promote": True}, "`metric` (a name) is missing"),
        ({"metric": "auc", "candidate": float("nan"), "production": 0.8, "promote": True}, "`candidate` is not a number"),
        ({"metric": "auc", "candidate": True, "production": 0.8, "promote": True}, "`candidate` is not a number"),
    ],
)
def test_evaluations_that_break_the_contract_say_how(value, problem):
    parsed, why = parse_evaluation(value)
    assert parsed is None and problem in why


def test_a_first_model_has_no_production_to_compare(registry):
    ev, _ = parse_evaluation({"metric": "auc", "candidate": 0.8, "production": None, "promote": True})
    assert "Candidate *0.8*; nothing in production to compare with." in evaluation_text(ev, registry.get("churn"))


def test_lower_is_better_for_a_minimized_metric(registry):
    ev, _ = parse_evaluation({"metric": "logloss", "candidate": 0.31, "production": 0.35, "promote": True,
                              "diagnostics_uri": "s3://b/k.csv"})
    text = evaluation_text(ev, registry.get("fraud"))
    assert "on `logloss` (lower is better)" in text
    assert "Candidate *0.31* vs production *0.35*: -0.04, better." in text
    assert "Verdict: *promote*" in text and "Diagnostics: `s3://b/k.csv`" in text
    assert ":warning:" not in text


def test_a_verdict_that_contradicts_the_numbers_is_pointed_out(registry):
    ev, _ = parse_evaluation({"metric": "auc", "candidate": 0.85, "production": 0.89, "promote": True})
    text = evaluation_text(ev, registry.get("churn"))
    assert "-0.04, worse." in text
    assert "The DAG says promote although the candidate is not better on `auc`." in text


def test_deploy_values():
    assert parse_deploy({"endpoint": "e", "stable_variant": "v1", "candidate_variant": "v2"})[0] == {
        "endpoint": "e", "stable_variant": "v1", "candidate_variant": "v2"}
    assert parse_deploy({"endpoint": "e", "stable_variant": "v1"})[1] == "`candidate_variant` missing"
    assert "the same" in parse_deploy({"endpoint": "e", "stable_variant": "v1", "candidate_variant": "v1"})[1]


@pytest.mark.parametrize("seconds, text", [(None, "—"), (4.4, "4s"), (192, "3m 12s"), (7380, "2h 03m")])
def test_durations(seconds, text):
    assert duration(seconds) == text
