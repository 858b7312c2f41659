"""Reading SageMaker's two JSON Lines formats: data capture records and Model Monitor ground-truth records.

Data capture (one line per request, under <DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/):

    {"captureData": {"endpointInput": {...}, "endpointOutput": {"observedContentType": "application/json",
     "mode": "OUTPUT", "data": "{\"predictions\": [0.73]}", "encoding": "JSON"}},
     "eventMetadata": {"eventId": "...", "inferenceId": "...", "inferenceTime": "2024-03-01T10:11:12Z"},
     "eventVersion": "0"}

Ground truth (one line per labelled request, under <labels>/yyyy/mm/dd/hh/, the hour the label was collected):

    {"groundTruthData": {"data": "1", "encoding": "CSV"}, "eventMetadata": {"eventId": "..."}, "eventVersion": "0"}

The join is Model Monitor's: on the capture's inferenceId when the caller gave one, else its eventId; the label's
eventMetadata.eventId carries whichever it is. A request may carry several instances (modelbot-serve answers
{"predictions": [...]} with one per instance). Model Monitor documents no convention for that, so modelbot
reads the label's CSV data as one value per instance, in the request's order: "1,0,1" (or one per line)
labels a three-instance request. A label whose count differs from its request's predictions joins nothing
and is counted with the labels that join nothing.

Every function here is pure and fast: a day of a million records goes through it in seconds. A line that
cannot be read raises Unreadable with the problem's kind and a short reason; the reader counts it and goes on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from datetime import date

# Problem kinds, counted per model and day in quality_problems and shown by /model quality.
CAPTURE_MALFORMED = "capture_malformed"  # not a data capture record: another tool's file, or truncated
CAPTURE_NO_OUTPUT = "capture_no_output"  # captured without endpointOutput (the config captures Input only)
PREDICTION_UNREADABLE = "prediction_unreadable"  # endpointOutput holds no number per instance
PREDICTION_DUPLICATE = "prediction_duplicate"  # an id captured before: the first prediction is kept
LABEL_MALFORMED = "label_malformed"  # not a ground-truth record
LABEL_NOT_NUMERIC = "label_not_numeric"  # groundTruthData.data is not numbers
LABEL_DUPLICATE = "label_duplicate"  # an id labelled before: the first label is kept
LABEL_UNMATCHED = "label_unmatched"  # no captured prediction has its id (yet)

KINDS = {
    CAPTURE_MALFORMED: "capture lines that are not SageMaker data capture records (another tool's file, or cut off)",
    CAPTURE_NO_OUTPUT: "captured requests without their prediction (the endpoint config captures Input only)",
    PREDICTION_UNREADABLE: "captured predictions that are not one number per instance",
    PREDICTION_DUPLICATE: "captured requests whose id was captured before (the first one counts)",
    LABEL_MALFORMED: "label lines that are not Model Monitor ground-truth records",
    LABEL_NOT_NUMERIC: "labels that are not numbers",
    LABEL_DUPLICATE: "labels given again for an id already labelled (the first one counts)",
    LABEL_UNMATCHED: "labels that join no captured prediction (unknown id, or a label count that differs "
                     "from the request's predictions)",
}

# Keys of a single-number prediction object, in the order they are tried ({"score": 0.7, "label": 1}).
SCORE_FIELDS = ("score", "probability", "prediction", "predicted_value", "value")


class Unreadable(Exception):
    def __init__(self, kind: str, why: str):
        super().__init__(why)
        self.kind = kind
        self.why = why


def join_key(model: str, record_id: str, index: int = 0, count: int = 1) -> int:
    """The 64-bit key a prediction and its label meet on: the model, the record's id and, for a request with
    several instances, the instance's place and the request's size (so a label count that differs joins
    nothing instead of labelling the wrong instances). Two of ten million ids collide with a chance of 3e-6."""
    text = f"{model}\x1f{record_id}" if count == 1 else f"{model}\x1f{record_id}\x1f{index}/{count}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


_DAYS: dict[str, date] = {}


def day_of(timestamp, fallback: date) -> date:
    """The UTC day of an ISO 8601 inferenceTime ("2024-03-01T10:11:12Z"); `fallback` when there is none."""
    if not isinstance(timestamp, str) or len(timestamp) < 10:
        return fallback
    head = timestamp[:10]
    found = _DAYS.get(head)
    if found is None:
        try:
            found = date.fromisoformat(head)
        except ValueError:
            return fallback
        if len(_DAYS) > 10_000:
            _DAYS.clear()
        _DAYS[head] = found
    return found


def _decode(part: dict, what: str, kind: str) -> tuple[object, str]:
    """(the payload, its content type) of an endpointOutput or groundTruthData object."""
    data = part.get("data")
    encoding = str(part.get("encoding") or "").upper()
    content_type = str(part.get("observedContentType") or "").lower()
    if encoding == "BASE64":
        if not isinstance(data, str):
            raise Unreadable(kind, f"{what} is BASE64 but its data is not a string")
        try:
            data = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise Unreadable(kind, f"{what} is not valid BASE64 UTF-8 text") from None
        encoding = "JSON" if "json" in content_type else "CSV"
    return data, encoding


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _prediction(value) -> float:
    number = _number(value)
    if number is not None:
        return number
    if isinstance(value, list) and len(value) == 1:
        return _prediction(value[0])
    if isinstance(value, dict):
        for name in SCORE_FIELDS:
            if name in value:
                number = _number(value[name])
                if number is not None:
                    return number
        numbers = [v for v in value.values() if _number(v) is not None]
        if len(numbers) == 1:
            return _number(numbers[0])
        raise Unreadable(PREDICTION_UNREADABLE, "a prediction is an object without one number to score "
                                                f"(give it a field named {' or '.join(SCORE_FIELDS[:2])})")
    raise Unreadable(PREDICTION_UNREADABLE, f"a prediction is {type(value).__name__} {str(value)[:40]!r}, "
                                            "not a number")


def _csv_values(text: str, kind: str, what: str) -> list[str]:
    rows = [row.strip() for row in text.replace("\r", "").split("\n") if row.strip()]
    if len(rows) == 1 and "," in rows[0]:
        rows = [cell.strip() for cell in rows[0].split(",")]
    if not rows:
        raise Unreadable(kind, f"{what} is empty")
    return rows


def predictions_of(output: dict) -> list[float]:
    """The numbers of an endpointOutput: {"predictions": [...]} (modelbot-serve), a JSON list or number, or CSV
    with one number per line."""
    if output.get("encoding") == "JSON":  # modelbot-serve's answer, captured as is: the common case, kept quick
        data = output.get("data")
        if isinstance(data, str):
            try:
                found = json.loads(data)
            except ValueError:
                raise Unreadable(PREDICTION_UNREADABLE, f"endpointOutput data {data[:40]!r} is not JSON") from None
            values = found.get("predictions") if isinstance(found, dict) else None
            if isinstance(values, list) and values and all(type(v) is float or type(v) is int for v in values):
                if all(math.isfinite(v) for v in values):
                    return values
            output = {**output, "data": found}
    data, encoding = _decode(output, "endpointOutput", PREDICTION_UNREADABLE)
    if encoding == "CSV" or (encoding != "JSON" and "csv" in str(output.get("observedContentType", "")).lower()):
        if not isinstance(data, str):
            raise Unreadable(PREDICTION_UNREADABLE, "endpointOutput is CSV but its data is not text")
        rows = _csv_values(data, PREDICTION_UNREADABLE, "endpointOutput")
        values = [_number(r) for r in rows]
        if any(v is None for v in values):
            raise Unreadable(PREDICTION_UNREADABLE, f"endpointOutput CSV {data[:40]!r} is not one number per line")
        return values  # type: ignore[return-value]
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            raise Unreadable(PREDICTION_UNREADABLE, f"endpointOutput data {data[:40]!r} is not JSON") from None
    if isinstance(data, dict):
        if "predictions" not in data:
            keys = ", ".join(list(map(str, data))[:5]) or "none"
            raise Unreadable(PREDICTION_UNREADABLE, f"endpointOutput has no \"predictions\" (keys: {keys})")
        data = data["predictions"]
    if not isinstance(data, list):
        return [_prediction(data)]
    if not data:
        raise Unreadable(PREDICTION_UNREADABLE, "endpointOutput holds no predictions")
    return [_prediction(v) for v in data]


def _record(line: bytes | str, part: str, kind: str, what: str) -> tuple[dict, dict]:
    """(the JSON Lines record, its `part` object), or Unreadable(kind) saying the line is not `what`."""
    try:
        record = json.loads(line)
    except ValueError:
        raise Unreadable(kind, "not JSON (cut off, or not JSON Lines)") from None
    found = record.get(part) if isinstance(record, dict) else None
    if not isinstance(found, dict):
        raise Unreadable(kind, f"no {part}: not {what}")
    return record, found


def parse_capture(line: bytes | str, fallback_day: date) -> tuple[str, date, list[float]]:
    """(the join id, the prediction's day, one number per instance) of one data capture line."""
    record, capture = _record(line, "captureData", CAPTURE_MALFORMED, "a SageMaker data capture record")
    meta = record.get("eventMetadata")
    if not isinstance(meta, dict):
        raise Unreadable(CAPTURE_MALFORMED, "no eventMetadata")
    record_id = meta.get("inferenceId") or meta.get("eventId")
    if not isinstance(record_id, str) or not record_id:
        raise Unreadable(CAPTURE_MALFORMED, "eventMetadata has neither inferenceId nor eventId")
    output = capture.get("endpointOutput")
    if not isinstance(output, dict):
        raise Unreadable(CAPTURE_NO_OUTPUT, "no endpointOutput (the endpoint config captures Input only)")
    return record_id, day_of(meta.get("inferenceTime"), fallback_day), predictions_of(output)


def labels_of(truth: dict) -> list[float]:
    data = truth.get("data")
    if truth.get("encoding") == "CSV" and isinstance(data, str) and "," not in data:  # one label: the common case
        try:
            value = float(data)
        except ValueError:
            value = None
        if value is not None and math.isfinite(value):
            return [value]
    data, encoding = _decode(truth, "groundTruthData", LABEL_NOT_NUMERIC)
    if encoding == "JSON":
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                raise Unreadable(LABEL_NOT_NUMERIC, f"label data {data[:40]!r} is not JSON") from None
        values = data if isinstance(data, list) else [data]
        numbers = [_number(v) for v in values]
    else:
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            data = str(data)
        if not isinstance(data, str):
            raise Unreadable(LABEL_NOT_NUMERIC, "groundTruthData.data is not text")
        cells = _csv_values(data, LABEL_NOT_NUMERIC, "groundTruthData.data")
        numbers = [_number(c) for c in cells]
    if not numbers or any(n is None for n in numbers):
        shown = data if isinstance(data, str) else json.dumps(data)[:40]
        raise Unreadable(LABEL_NOT_NUMERIC, f"label {str(shown)[:40]!r} is not a number")
    return numbers  # type: ignore[return-value]


def parse_label(line: bytes | str) -> tuple[str, list[float]]:
    """(the join id, one label per instance) of one ground-truth line."""
    record, truth = _record(line, "groundTruthData", LABEL_MALFORMED, "a Model Monitor ground-truth record")
    meta = record.get("eventMetadata")
    record_id = meta.get("eventId") if isinstance(meta, dict) else None
    if not isinstance(record_id, str) or not record_id:
        raise Unreadable(LABEL_MALFORMED, "eventMetadata.eventId is missing")
    return record_id, labels_of(truth)


def hour_of(relative_key: str) -> str | None:
    """"2024/03/01/10" of "2024/03/01/10/file.jsonl" (a key below a capture or labels prefix), else None."""
    parts = relative_key.split("/", 4)
    if len(parts) < 5:
        return None
    y, m, d, h = parts[:4]
    if not (len(y) == 4 and len(m) == 2 and len(d) == 2 and len(h) == 2 and (y + m + d + h).isdigit()):
        return None
    return f"{y}/{m}/{d}/{h}"


def hour_day(hour: str) -> date:
    y, m, d, _ = hour.split("/")
    return date(int(y), int(m), int(d))
