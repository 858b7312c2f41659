"""Bad input is counted and shown in /model quality, never an exception in the worker's log: capture files from
another tool or cut off, labels with unknown ids or that are not numbers, a day whose metric is undefined."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select

from bot.quality import formats, measure
from bot.quality import service as quality
from bot.quality.tables import QualityDay, QualityProblem
from tests.quality.conftest import ENDPOINT, TODAY, at, capture_record, jsonl, label_record
from tests.status.conftest import ack


def counted(services) -> dict[str, int]:
    with services.store.session() as s:
        found: dict[str, int] = {}
        for p in s.scalars(select(QualityProblem)):
            found[p.kind] = found.get(p.kind, 0) + p.count
        return found


def test_bad_input_is_counted_once_and_shown(world_for, caplog):
    w = world_for(endpoint=False)
    d = TODAY - timedelta(days=2)
    good = [capture_record(f"a{i}", [0.1 + i / 20], at(d, 10, i)) for i in range(8)]
    no_output = capture_record("a-in", [0.5], at(d, 10, 30))
    del no_output["captureData"]["endpointOutput"]
    cut_off = jsonl([capture_record("a-cut", [0.4], at(d, 10, 31))])[:-40]  # the upload stopped mid-line
    w.put_capture("v41", at(d, 10), None,
                  raw=jsonl(good + [no_output, capture_record("a-str", ["churn"], at(d, 10, 32))]) + cut_off)
    w.put_capture("v41", at(d, 10), None, raw=b"customer_id,score\nc-1,0.31\n", name="export")  # another tool's
    w.s3.put_object(Bucket="ml-capture", Key=f"datacapture/{ENDPOINT}/v41/README.txt", Body=b"capture of churn")
    labels = [label_record(f"a{i}", "0") for i in range(7)]  # every label of the day is 0: no AUC that day
    labels += [label_record("a7", "2"),  # not 0/1: left out of a classifier's metric
               label_record("ghost", "1"),  # nobody captured it
               label_record("a-in", "yes")]  # not a number
    w.put_labels(at(d + timedelta(days=1), 8), None, raw=jsonl(labels) + b"{not json\n")

    with caplog.at_level(logging.WARNING):
        w.measure()
        first = counted(w.services)
        w.measure()  # nothing new: nothing counted again, nothing logged
    assert first == counted(w.services) == {
        formats.CAPTURE_MALFORMED: 1 + 2 + 1,  # the cut-off line, the CSV file's two lines, the README
        formats.CAPTURE_NO_OUTPUT: 1,
        formats.PREDICTION_UNREADABLE: 1,
        formats.LABEL_UNMATCHED: 1,
        formats.LABEL_NOT_NUMERIC: 1,
        formats.LABEL_MALFORMED: 1,
    }
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    with w.services.store.session() as s:
        day = s.scalars(select(QualityDay).where(QualityDay.day == d)).one()
    assert (day.value, day.labelled, day.not_binary) == (None, 7, 1)
    assert day.undefined == "auc needs both classes; every label is 0"

    reply = ack(w.services, "quality churn")
    text = reply["text"] + "".join(b["text"]["text"] for b in reply["blocks"] if b["type"] == "section")
    assert reply["follow_up"] is True
    for words in ["4 capture lines that are not SageMaker data capture records",
                  "1 captured requests without their prediction",
                  "1 captured predictions that are not one number per instance",
                  "1 labels that join no captured prediction", "1 labels that are not numbers",
                  "1 label lines that are not Model Monitor ground-truth records",
                  "auc needs both classes; every label is 0", "1 labels not 0/1 left out",
                  "README.txt: not in a yyyy/mm/dd/hh/ folder"]:
        assert words in text, words


def test_what_is_missing_before_anything_is_read(world_for):
    w = world_for(endpoint=False)
    reply = ack(w.services, "quality churn")
    assert "not measured yet: the worker (`python -m jobs`) measures it on its next pass" in reply["text"]
    w.measure()
    report = quality.report(w.services, w.services.registry.get("churn"))
    assert f"nothing captured yet under s3://ml-capture/datacapture/{ENDPOINT}/" in report.notes
    assert "no labels read yet under `s3://ml-labels/churn/ground-truth/`" in ack(w.services, "quality churn")["text"]
    assert "SageMaker endpoint `churn-prod` was not found in us-east-1" in report.notes


def test_a_pass_that_keeps_failing_logs_its_traceback_once_and_shows_the_error(services, monkeypatch, caplog):
    model = services.registry.get("churn")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(measure, "measure", broken)
    with caplog.at_level(logging.WARNING):
        summaries = [quality.measure_model(services, model) for _ in range(3)]
    assert summaries == ["churn: failed (RuntimeError; logged)"] * 3
    mine = [r for r in caplog.records if r.name == "bot.quality.service"]
    assert [(r.levelname, bool(r.exc_info)) for r in mine] == [("ERROR", True), ("WARNING", False), ("WARNING", False)]
    assert "the last pass failed: RuntimeError: disk full" in ack(services, "quality churn")["text"]
