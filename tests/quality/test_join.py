"""The measuring pass on moto S3 with files in AWS's exact formats: the join on inferenceId (eventId when the caller
gave none), requests with several instances, labels that arrive days after their predictions, and a cursor that
never downloads a file twice."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.pipelines import dag_file
from bot.quality import formats, measure, reading
from bot.quality.tables import QualityDay, QualityFile, QualityProblem
from bot.registry import Model
from tests.quality.conftest import TODAY, at, capture_record, label_record


def days(services) -> dict:
    with services.store.session() as s:
        return {(r.variant, r.day): r for r in s.scalars(select(QualityDay))}


def problems(services) -> dict[str, int]:
    with services.store.session() as s:
        found: dict[str, int] = {}
        for p in s.scalars(select(QualityProblem)):
            found[p.kind] = found.get(p.kind, 0) + p.count
        return found


def test_labels_join_days_later_on_inference_id_or_event_id_and_nothing_is_read_twice(world_for):
    w = world_for()
    d1 = TODAY - timedelta(days=3)
    scores = [0.91, 0.15, 0.66, 0.42, 0.83, 0.05]
    with_id = [capture_record(f"ev-{i}", [s], at(d1, 10, i), inference_id=f"cust-{i}") for i, s in enumerate(scores)]
    plain = [capture_record(f"evx-{j}", [s], at(d1, 10, 20 + j)) for j, s in enumerate([0.7, 0.2, 0.58, 0.33])]
    batches = [capture_record("ev-b1", [0.8, 0.3, 0.6], at(d1, 10, 40), inference_id="batch-1"),
               capture_record("ev-b2", [0.9, 0.1], at(d1, 10, 41), inference_id="batch-2")]
    first = w.put_capture("v41", at(d1, 10), with_id + plain + batches)

    w.measure()
    row = days(w.services)[("v41", d1)]
    assert (row.predictions, row.labelled, row.value) == (6 + 4 + 3 + 2, 0, None)
    assert w.gets == [first]

    truth = [1, 0, 1, 0, 1, 0]
    labels = [label_record(f"cust-{i}", str(y)) for i, y in enumerate(truth)]  # the caller's inferenceId
    labels += [label_record(f"evx-{j}", y) for j, y in enumerate(["1", "0", "0", "1"])]  # no inferenceId: eventId
    labels += [label_record("batch-1", "1,0,1"),  # one label per instance, in order
               label_record("batch-2", "1,0,0"),  # three labels for two predictions: joins nothing
               label_record("ghost-1", "1"),  # an id nobody captured
               label_record("ev-0", "1"),  # the eventId of a request that had an inferenceId: not its key
               label_record("late-1", "1")]  # its prediction's file lands later
    w.put_labels(at(d1 + timedelta(days=2), 8), labels)  # collected two days after the predictions
    w.gets.clear()
    w.measure()
    row = days(w.services)[("v41", d1)]
    y = truth + [1, 0, 0, 1] + [1, 0, 1]
    s = scores + [0.7, 0.2, 0.58, 0.33] + [0.8, 0.3, 0.6]
    assert row.labelled == 13
    assert row.value == pytest.approx(dag_file.load().metric_value("auc", y, s))
    assert problems(w.services)[formats.LABEL_UNMATCHED] == 3 + 1 + 1 + 1

    w.gets.clear()
    w.measure()
    assert w.gets == [], "a pass with nothing new downloads nothing"

    # A capture file landing late in an hour before the newest one is still found, and only it is read.
    late = w.put_capture("v41", at(d1, 9), [capture_record("ev-late", [0.95], at(d1, 9, 59), inference_id="late-1")])
    w.measure()
    assert w.gets == [late]
    row = days(w.services)[("v41", d1)]
    assert (row.labelled, row.predictions) == (14, 16)
    assert row.value == pytest.approx(dag_file.load().metric_value("auc", y + [1], s + [0.95]))
    assert problems(w.services)[formats.LABEL_UNMATCHED] == 5, "the label read before its prediction joined"


def test_a_pass_that_stops_at_its_budget_resumes_the_file_where_it_stopped(world_for, monkeypatch):
    monkeypatch.setattr(reading, "BATCH", 4)
    w = world_for(endpoint=False)
    d = TODAY - timedelta(days=1)
    key = w.put_capture("v41", at(d, 10), [capture_record(f"e{i}", [i / 10], at(d, 10, i)) for i in range(10)])
    ranges = []
    client = w.services.aws_clients.client("s3", "us-east-1")
    client.meta.events.register("before-parameter-build.s3.GetObject", lambda params, **_: ranges.append(params.get("Range")))
    stored = []
    for _ in range(3):
        outcome = w.measure(budget=0.0)  # past its budget at once: one batch a pass
        stored.append(days(w.services)[("v41", d)].predictions)
    assert stored == [4, 8, 10]
    assert outcome.backlog is False
    assert ranges[0] is None and ranges[1].startswith("bytes=") and ranges[2] > ranges[1]
    with w.services.store.session() as s:
        ledger = s.get(QualityFile, ("churn", "s3://ml-capture/datacapture/churn-prod/v41/", key))
        assert ledger.done
    assert formats.PREDICTION_DUPLICATE not in problems(w.services)


METRICS = [("auc", "maximize"), ("accuracy", "maximize"), ("f1", "maximize"), ("logloss", "minimize"),
           ("rmse", "minimize"), ("mae", "minimize"), ("r2", "maximize")]


def test_each_metric_is_the_pipelines_metric_on_the_joined_pairs(world_for):
    w = world_for(endpoint=False)
    d = TODAY - timedelta(days=2)
    y = [1, 0, 1, 1, 0, 0, 1, 0, 1, 0]
    s = [0.81, 0.34, 0.62, 0.45, 0.51, 0.12, 0.97, 0.66, 0.49, 0.08]
    w.put_capture("v41", at(d, 7), [capture_record(f"m{i}", [v], at(d, 7, i)) for i, v in enumerate(s)])
    w.put_labels(at(d, 20), [label_record(f"m{i}", str(v)) for i, v in enumerate(y)])
    churn = w.services.registry.get("churn")
    dag = dag_file.load()
    for metric, direction in METRICS:
        spec = churn.spec.model_copy(update={"metric": metric, "direction": direction})
        model = dataclasses.replace(churn, name=f"churn-{metric}", spec=spec)  # its own join keys and days
        measure.measure(w.services, Model(model.name, model.spec, model.defaults))
        with w.services.store.session() as session:
            value = session.scalar(select(QualityDay.value).where(QualityDay.model == model.name))
        assert value == pytest.approx(dag.metric_value(metric, y, s), rel=1e-12), metric
