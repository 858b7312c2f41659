"""The realized metric is the pipeline's metric: bot/quality/metrics.py against dags/modelbot_pipelines.py's own
functions on random data (ties, one class, constant labels included), and what production data adds (pairs the
metric cannot read are left out and counted, an undefined day says why)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.pipelines import dag_file
from bot.quality import metrics
from bot.registry import PIPELINE_METRICS


@pytest.fixture(scope="module")
def dag():
    return dag_file.load()


def test_same_metrics_and_directions_as_the_pipeline(dag):
    assert metrics.DIRECTIONS == PIPELINE_METRICS
    assert set(metrics.FUNCTIONS) == set(dag.HIGHER_IS_BETTER)
    assert {m: d == "maximize" for m, d in metrics.DIRECTIONS.items()} == dag.HIGHER_IS_BETTER
    assert set(metrics.CLASSIFICATION) == set(dag.CLASSIFICATION)


# Scores drawn from a few values make ties common (AUC's average ranks), and sizes from 1 make one-class days.
pairs = st.lists(st.tuples(st.sampled_from([0.0, 1.0]), st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5, 0.73, 0.9, 1.0])
                           | st.floats(0, 1)), min_size=1, max_size=60)
values = st.lists(st.tuples(st.floats(-50, 50), st.floats(-50, 50)), min_size=1, max_size=60)


def _pipeline(dag, name, y, s):
    try:
        return dag.metric_value(name, y, s)
    except ValueError:
        return None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=pairs)
def test_classification_metrics_equal_the_pipelines(dag, data):
    y, s = zip(*data)
    for name in metrics.CLASSIFICATION:
        expected = _pipeline(dag, name, y, s)
        got = metrics.score(name, y, s)
        if expected is None:
            assert got.value is None and got.undefined, (name, data)
        else:
            assert got.value == pytest.approx(expected, rel=1e-12, abs=1e-12), (name, data)
            assert got.labelled == len(y)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=values)
def test_regression_metrics_equal_the_pipelines(dag, data):
    y, s = zip(*data)
    for name in ("rmse", "mae", "r2"):
        expected = _pipeline(dag, name, y, s)
        got = metrics.score(name, y, s)
        if expected is None:
            assert got.value is None and "every label is" in got.undefined
        else:
            assert got.value == pytest.approx(expected, rel=1e-12, abs=1e-12), (name, data)


def test_labels_a_classifier_cannot_read_are_left_out_and_counted(dag):
    y = [1, 0, 2, 1, 0, 0.5]
    s = [0.9, 0.2, 0.8, 0.7, 1.4, 0.3]
    got = metrics.score("auc", y, s)
    assert got.not_binary == 2 and got.labelled == 4
    assert got.value == pytest.approx(dag.metric_value("auc", [1, 0, 1, 0], [0.9, 0.2, 0.7, 1.4]))
    loss = metrics.score("logloss", y, s)
    assert (loss.not_binary, loss.out_of_range, loss.labelled) == (2, 1, 3)
    assert loss.value == pytest.approx(dag.metric_value("logloss", [1, 0, 1], [0.9, 0.2, 0.7]))


def test_a_day_with_one_class_says_why_it_has_no_auc():
    got = metrics.score("auc", [0, 0, 0], [0.1, 0.7, 0.2])
    assert got.value is None and got.labelled == 3
    assert got.undefined == "auc needs both classes; every label is 0"
    assert metrics.score("r2", [3.0, 3.0], [1.0, 2.0]).undefined == "r2 is undefined: every label is 3"
    assert metrics.score("auc", [], []).undefined == "no labelled predictions"


@pytest.mark.parametrize("direction,value,reference,worse", [("maximize", 0.7, 0.8, 0.1), ("minimize", 0.5, 0.3, 0.2),
                                                             ("maximize", 0.9, 0.8, -0.1)])
def test_worse_by_reads_the_direction(direction, value, reference, worse):
    assert math.isclose(metrics.worse_by(direction, value, reference), worse)


def test_a_million_pairs_score_in_well_under_a_second():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1_000_000)
    s = np.clip(y * 0.3 + rng.random(1_000_000) * 0.7, 0, 1)
    import time

    start = time.process_time()
    got = metrics.score("auc", y, s)
    assert got.value > 0.6
    assert time.process_time() - start < 3.0  # CPU time: generous for a busy 2-core machine (~0.3 s idle)
