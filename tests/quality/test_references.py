"""The reference a variant is judged against when its run's offline evaluation is not known: the first full window
after it took all traffic (the rollout's bake), else the first full window of labelled data."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from bot.pipelines import dag_file
from bot.quality import formats, join, measure
from bot.quality.reading import Days
from bot.quality.tables import QualityDay
from bot.rollouts.tables import Rollout, RolloutEvent
from tests.quality.conftest import TODAY, at


def add_pairs(services, variant: str, day, pairs: list[tuple[int, float]]) -> None:
    """Labelled predictions of one day, straight into the join (no S3)."""
    days = Days(services.store, "churn")
    day_id = days.id(variant, day)
    keys = [formats.join_key("churn", f"{variant}-{day}-{i}") for i in range(len(pairs))]
    with services.store.engine.begin() as conn:
        join.add_predictions(conn, [(k, day_id, s) for k, (_, s) in zip(keys, pairs)])
        join.add_labels(conn, "churn", day, [(k, float(y)) for k, (y, _) in zip(keys, pairs)])
        conn.execute(update(QualityDay).where(QualityDay.id == day_id).values(dirty=True))


def day_of_pairs(k: int) -> list[tuple[int, float]]:
    """Eight pairs whose AUC moves with k."""
    return [(1, 0.9), (0, 0.1), (1, 0.6 - k / 10), (0, 0.5), (1, 0.7), (0, 0.3 + k / 10), (1, 0.8), (0, 0.2)]


def test_the_first_full_window_after_the_variant_took_all_traffic(services):
    took_all = TODAY - timedelta(days=4)
    with services.store.session() as s:
        rollout = Rollout(model="churn", source="airflow", endpoint="churn-prod", region="us-east-1",
                          stable_variant="v41", candidate_variant="v42", steps=[10, 100], state="promoted",
                          step_index=1, owns_parent=False)
        s.add(rollout)
        s.flush()
        s.add(RolloutEvent(rollout_id=rollout.id, at=at(took_all, 15), kind="bake", state="baking", step_index=1,
                           candidate_percent=100.0, detail={}))
    add_pairs(services, "v42", took_all, [(1, 0.0), (0, 1.0)] * 5)  # the day it took over: not a full day
    expected_y, expected_s = [], []
    for k in range(1, 4):  # the three full days after it
        add_pairs(services, "v42", took_all + timedelta(days=k), day_of_pairs(k))
        expected_y += [y for y, _ in day_of_pairs(k)]
        expected_s += [s for _, s in day_of_pairs(k)]
    model = services.registry.get("churn")
    changed = measure.recompute_days(services, model)
    [window] = measure.judge_windows(services, model, TODAY, changed)
    ref = window.reference
    assert ref.source == "takeover" and ref.labels == 24
    assert ref.value == pytest.approx(dag_file.load().metric_value("auc", expected_y, expected_s))
    start = took_all + timedelta(days=1)
    assert ref.detail == (f"the first 3 full days after v42 took all traffic, {start:%Y-%m-%d} to "
                          f"{start + timedelta(days=2):%Y-%m-%d}")


def test_the_first_full_window_of_labelled_data_once_it_is_complete_and_has_enough_labels(services):
    model = services.registry.get("churn")

    def reference():
        [window] = measure.judge_windows(services, model, TODAY, measure.recompute_days(services, model))
        return window

    add_pairs(services, "v41", TODAY - timedelta(days=2), day_of_pairs(0))
    window = reference()
    assert window.judgement.state == "no reference"
    assert window.reference.missing.endswith(f"complete after {TODAY:%Y-%m-%d}")
    add_pairs(services, "v41", TODAY - timedelta(days=3), [(1, 0.9)])  # a label of an earlier day, late
    assert reference().reference.missing.endswith("which has 9 labels (it needs 10)")
    add_pairs(services, "v41", TODAY - timedelta(days=1), day_of_pairs(1))
    ref = reference().reference
    assert (ref.source, ref.labels) == ("first", 17)
    assert ref.detail == (f"the first 3 days of labelled data, {TODAY - timedelta(days=3):%Y-%m-%d} to "
                          f"{TODAY - timedelta(days=1):%Y-%m-%d}")
