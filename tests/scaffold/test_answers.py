"""Each answer is checked with the models file's own rules (bot/registry.py), and the message names the rule."""

from __future__ import annotations

import pytest

from bot.pipelines import dag_file
from bot.registry import PIPELINE_METRICS
from bot.scaffold import answers


@pytest.mark.parametrize("question,value,says", [
    ("model_name", "churn v2", "letters, digits, '_', '-' and '.'"),
    ("model_name", "-churn", "starting with a letter or digit"),
    ("channel", "general", "is not a Slack channel ID"),
    ("owners", "U0ALICE alice", "item 2: 'alice' is not a Slack user ID"),
    ("oncall", "#oncall", "user group (S...) or user (U...)"),
    ("dag_id", "churn pipeline", "is not a valid Airflow dag_id"),
    ("endpoint", "churn_prod", "is not a SageMaker endpoint name"),
    ("endpoint", "x" * 64, "at most 63"),
    ("module", "churn-model", "is not an importable module name"),
    ("module", "churn.model", "without dots"),
    ("module", "pandas", "a module the package needs itself"),
    ("module", "class", "a Python keyword"),
    ("artifacts", "ml-artifacts/churn", "is not an S3 location"),
    ("image", "Churn Serving", "is not an image reference"),
    ("min_improvement", -0.1, "greater than or equal to 0"),
    ("test_size", 1.5, "between 0 and 1"),
    ("serving_memory_gib", 0, "greater than 0"),
    ("training_vcpu", -2, "greater than 0"),
    ("region", "us-east1", "not a region SageMaker is offered in"),
    ("schedule", "daily", "is not a cron expression"),
    ("schedule", "@fortnightly", "is not an Airflow preset"),
    ("serving_instance_type", "m5.large", "is not a SageMaker instance type"),
    ("kind", "ranking", "classification or regression"),
    ("label", 'churned"""', "letters, digits, spaces and _ . : / -"),
    ("label", " churned", "letters, digits, spaces"),
])
def test_a_bad_answer_names_the_rule(question, value, says):
    problem = answers.problem(question, value, {"kind": "classification", "features": ["amount"]})
    assert says in problem


@pytest.mark.parametrize("question,value", [
    ("model_name", "churn-v2.1"), ("channel", "C0CHURN"), ("owners", "U0ALICE, U0BOB"), ("oncall", "S0ONCALL"),
    ("oncall", ""), ("dag_id", "churn.v2_pipeline"), ("endpoint", "churn-v2-prod"), ("module", "churn_v2_model"),
    ("artifacts", "s3://ml-artifacts/churn"), ("image", "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn:v3"),
    ("min_improvement", 0.002), ("test_size", 0.25), ("region", "eu-west-1"), ("schedule", ""),
    ("schedule", "@daily"), ("schedule", "0 3 * * 1-5"), ("serving_instance_type", "ml.m5.xlarge"),
    ("label", "is churned"), ("label", "revenue_30d"),
])
def test_a_good_answer_passes(question, value):
    assert answers.problem(question, value, {"serving_vcpu": 1, "serving_memory_gib": 2, "region": "us-east-1"}) == ""


def test_the_label_may_not_be_a_feature():
    assert "one of the starter features" in answers.problem("label", "amount", {"features": ["amount", "visits"]})


def test_metrics_follow_the_kind_and_the_pipelines_own_tables():
    steps = dag_file.load()
    assert answers.metrics_for("classification") == tuple(steps.CLASSIFICATION)
    assert answers.metrics_for("regression") == tuple(steps.REGRESSION)
    assert set(steps.CLASSIFICATION) | set(steps.REGRESSION) == set(PIPELINE_METRICS)
    assert "is not a regression metric" in answers.problem("metric", "auc", {"kind": "regression"})
    assert answers.direction("logloss") == "minimize" and answers.direction("r2") == "maximize"


def test_the_models_file_being_joined_refuses_taken_names():
    token = answers.EXISTING.set(answers.Existing(path="models.toml", names=frozenset({"churn"}),
                                                  dag_ids={"churn_pipeline": "churn"},
                                                  endpoints={"churn-prod": "churn"}))
    try:
        assert "already has a model 'churn'" in answers.problem("model_name", "churn", {})
        assert "model 'churn''s" in answers.problem("dag_id", "churn_pipeline", {})
        assert "model 'churn''s" in answers.problem("endpoint", "churn-prod", {})
    finally:
        answers.EXISTING.reset(token)


def test_derived_defaults_follow_the_rules():
    assert answers.default_module("3d-churn.v2") == "m3d_churn_v2_model"
    assert answers.problem("module", answers.default_module("3d-churn.v2"), {}) == ""
    assert answers.default_endpoint("churn_v2.x") == "churn-v2-x-prod"
    long_name = "a" * 80
    assert answers.problem("endpoint", answers.default_endpoint(long_name), {}) == ""
    assert answers.problem("image", answers.default_image("Churn_V2", "eu-west-1"), {}) == ""
