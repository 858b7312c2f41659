"""SageMaker's data capture and Model Monitor's ground-truth records, read as AWS writes them; every way a line
can be unusable has its kind and a reason a person can act on."""

from __future__ import annotations

import base64
import json
from datetime import date

import pytest

from bot.quality import formats
from tests.quality.conftest import at, capture_record, label_record

DAY = date(2025, 3, 1)


def line(record: dict) -> bytes:
    return json.dumps(record).encode()


def test_a_modelbot_serve_capture_record():
    record = capture_record("ev-1", [0.73], at(DAY, 10), inference_id="cust-9")
    assert formats.parse_capture(line(record), date(2000, 1, 1)) == ("cust-9", DAY, [0.73])


def test_the_event_id_when_the_caller_gave_no_inference_id_and_the_path_day_without_inference_time():
    record = capture_record("ev-2", [0.1, 0.9], at(DAY, 23, 59))
    del record["eventMetadata"]["inferenceTime"]
    assert formats.parse_capture(line(record), DAY) == ("ev-2", DAY, [0.1, 0.9])


@pytest.mark.parametrize("output,expected", [
    ({"observedContentType": "text/csv", "mode": "OUTPUT", "data": "0.2\n0.8\n", "encoding": "CSV"}, [0.2, 0.8]),
    ({"observedContentType": "application/json", "mode": "OUTPUT", "encoding": "BASE64",
      "data": base64.b64encode(b'{"predictions": [0.4]}').decode()}, [0.4]),
    ({"observedContentType": "application/json", "mode": "OUTPUT", "data": "[0.3, 0.6]", "encoding": "JSON"},
     [0.3, 0.6]),
    ({"observedContentType": "application/json", "mode": "OUTPUT", "encoding": "JSON",
      "data": json.dumps({"predictions": [{"score": 0.7, "label": 1}, {"probability": 0.2}]})}, [0.7, 0.2]),
])
def test_other_output_shapes(output, expected):
    record = capture_record("ev", [0.0], at(DAY), output=output)
    assert formats.parse_capture(line(record), DAY)[2] == expected


@pytest.mark.parametrize("raw,kind,why", [
    (b'{"captureData": {"endpointInput": {"data": "{\\"instances', formats.CAPTURE_MALFORMED, "not JSON"),
    (b"customer_id,score\n", formats.CAPTURE_MALFORMED, "not JSON"),
    (b'{"prediction": 0.4, "id": "x"}', formats.CAPTURE_MALFORMED, "no captureData"),
    (line({"captureData": {"endpointInput": {"data": "{}", "encoding": "JSON"}},
           "eventMetadata": {"eventId": "e"}, "eventVersion": "0"}), formats.CAPTURE_NO_OUTPUT, "Input only"),
    (line(capture_record("e", [0.1], at(DAY), output={"data": '{"answer": 1}', "encoding": "JSON"})),
     formats.PREDICTION_UNREADABLE, 'no "predictions"'),
    (line(capture_record("e", ["churn"], at(DAY))), formats.PREDICTION_UNREADABLE, "not a number"),
    (line(capture_record("e", [float("nan")], at(DAY))), formats.PREDICTION_UNREADABLE, "not a number"),
])
def test_unusable_capture_lines_say_why(raw, kind, why):
    with pytest.raises(formats.Unreadable) as caught:
        formats.parse_capture(raw, DAY)
    assert caught.value.kind == kind and why in caught.value.why


@pytest.mark.parametrize("record,expected", [
    (label_record("ev-1", "1"), ("ev-1", [1.0])),
    (label_record("ev-1", "1,0,1"), ("ev-1", [1.0, 0.0, 1.0])),
    (label_record("ev-1", "0\n1\n"), ("ev-1", [0.0, 1.0])),
    (label_record("ev-1", "42.5", "JSON"), ("ev-1", [42.5])),
    (label_record("ev-1", base64.b64encode(b"1").decode(), "BASE64"), ("ev-1", [1.0])),
])
def test_ground_truth_records(record, expected):
    assert formats.parse_label(line(record)) == expected


@pytest.mark.parametrize("raw,kind", [
    (line(label_record("ev-1", "yes")), formats.LABEL_NOT_NUMERIC),
    (line(label_record("ev-1", "1,maybe")), formats.LABEL_NOT_NUMERIC),
    (line({"label": 1, "id": "ev-1"}), formats.LABEL_MALFORMED),
    (line({"groundTruthData": {"data": "1", "encoding": "CSV"}, "eventMetadata": {}}), formats.LABEL_MALFORMED),
    (b'{"groundTruthData": {"data": "1", "enc', formats.LABEL_MALFORMED),
])
def test_unusable_labels(raw, kind):
    with pytest.raises(formats.Unreadable) as caught:
        formats.parse_label(raw)
    assert caught.value.kind == kind


def test_a_request_and_its_labels_meet_on_the_same_keys_only_when_the_counts_agree():
    keys_of_request = [formats.join_key("churn", "req-7", i, 3) for i in range(3)]
    assert len(set(keys_of_request)) == 3
    assert keys_of_request == [formats.join_key("churn", "req-7", i, 3) for i in range(3)]
    assert formats.join_key("churn", "req-7", 0, 2) not in keys_of_request  # a label count of 2 joins nothing
    assert formats.join_key("churn", "req-7") != formats.join_key("fraud", "req-7")


def test_hour_folders():
    assert formats.hour_of("2025/03/01/10/13-45-12-345-abc.jsonl") == "2025/03/01/10"
    assert formats.hour_of("README.md") is None
    assert formats.hour_of("2025/03/01/xx/file.jsonl") is None
    assert formats.hour_day("2025/03/01/10") == DAY
