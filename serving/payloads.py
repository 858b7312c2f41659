"""Request bodies to instances to a DataFrame, and predict's output to JSON values, each with its 400 or 500.

Instances are plain dicts as JSON gives them, validated against REQUEST_SCHEMA before a DataFrame exists, so
the schema sees exactly what the caller sent. A CSV row becomes the same dict: cells are read as the JSON type
the schema gives their column (an integer column's "3" is 3), an empty cell is a missing value.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import numpy as np
import orjson
import pandas as pd
from pandas.api.internals import create_dataframe_from_blocks

from serving.errors import FieldError, RequestError, bad_request, server_error, shorten
from serving.loading import ServedModel
from serving.schemas import field_path

JSON_TYPES = ("application/json", "application/x-json", "text/json")
CSV_TYPES = ("text/csv", "application/csv")


def unsupported_media_type(error: str) -> RequestError:
    return RequestError("415 Unsupported Media Type", error)


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def decode(model: ServedModel, content_type: str, body: bytes) -> tuple[list, str]:
    """(instances, the name their field paths start with)."""
    kind = media_type(content_type)
    if kind in CSV_TYPES:
        if model.features is None:
            raise unsupported_media_type(
                f"this model takes text/csv only when {model.module_name} defines FEATURES (the order of a row's "
                "values); send application/json {\"instances\": [{...}, ...]} instead")
        return decode_csv(model, body), "rows"
    if kind in JSON_TYPES or kind.endswith("+json") or kind == "":
        return decode_json(body), "instances"
    accepted = "application/json" + (" or text/csv" if model.features is not None else "")
    raise unsupported_media_type(f"Content-Type {kind} is not accepted: send {accepted}")


# Every digit mapped to "0", everything else to " ": a run of 20 zeros in the translated body is a number of 20
# digits or more, one that orjson would read as a float (it has no integers past 64 bits).
_DIGITS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_TWENTY_DIGITS = b"0" * 20


def parse_json(body: bytes) -> Any:
    """The body as the standard library's json reads it, through orjson (a tenth of the time) when that gives the
    same. What orjson refuses (invalid JSON, UTF-16, NaN, a lone surrogate) and numbers of 20 digits or more (orjson
    makes a float of an integer past 64 bits) are read by the standard library, whose error messages say where the
    JSON is broken; NaN, infinity and lone surrogates, which it would let through to fail later, are 400s here."""
    if _TWENTY_DIGITS not in body.translate(_DIGITS):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    payload = json.loads(body, parse_constant=_no_constant, parse_float=_finite_float)
    try:
        json.dumps(payload, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        raise bad_request(f"the body is not valid JSON: a string holds {json.dumps(exc.object[exc.start])}, half "
                          "of a UTF-16 surrogate pair, which is not text") from None
    return payload


def _no_constant(name: str):
    raise bad_request(f"the body is not valid JSON: {name} is not a JSON number (JSON has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise bad_request(f"the number {shorten(text, 40)} is past the range of a 64-bit float")
    return value


def decode_json(body: bytes) -> list:
    if not body.strip():
        raise bad_request('the body is empty: send {"instances": [{...}, ...]}, one object per row')
    try:
        payload = parse_json(body)
    except UnicodeDecodeError as exc:
        raise bad_request(f"the body is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise bad_request(f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") \
            from None
    if not isinstance(payload, dict):
        raise bad_request(f'the body must be a JSON object {{"instances": [...]}}; it is {_json_kind(payload)}')
    if "instances" not in payload:
        keys = ", ".join(map(str, list(payload)[:8])) or "none"
        raise bad_request(f'the body has no "instances" (its keys: {keys}): send {{"instances": [{{...}}, ...]}}, '
                          "one object per row")
    instances = payload["instances"]
    if not isinstance(instances, list):
        hint = ": wrap a single instance in a list" if isinstance(instances, dict) else ""
        raise bad_request(f'"instances" must be a list of objects, one per row; it is {_json_kind(instances)}{hint}')
    if not instances:
        raise bad_request('"instances" is empty: send at least one instance')
    not_objects = [FieldError(f"instances[{i}]", f"is {_json_kind(v)}; each instance is an object of field: value")
                   for i, v in enumerate(instances) if not isinstance(v, dict)]
    if not_objects:
        raise bad_request(f"{len(not_objects)} of {len(instances)} instances are not JSON objects", not_objects)
    return instances


def decode_csv(model: ServedModel, body: bytes) -> list:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise bad_request(f"the CSV is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        rows = [row for row in csv.reader(io.StringIO(text)) if row]
    except csv.Error as exc:
        raise bad_request(f"the CSV cannot be read: {exc}") from None
    features = model.features
    if rows and [cell.strip() for cell in rows[0]] == list(features):
        rows = rows[1:]  # a header naming FEATURES in order is allowed, and skipped
    if not rows:
        raise bad_request("the CSV has no rows: send one line per instance, values in FEATURES order "
                          f"({', '.join(features)})")
    types = [model.request.property_types(name) for name in features]
    instances, problems = [], []
    for i, row in enumerate(rows):
        if len(row) != len(features):
            problems.append(FieldError(f"rows[{i}]", f"has {len(row)} values; FEATURES has {len(features)} columns: "
                                       f"{shorten(', '.join(features), 200)}"))
            continue
        instance = {}
        for name, cell, allowed in zip(features, row, types):
            if cell.strip() != "":
                instance[name] = read_cell(cell.strip(), allowed)
        instances.append(instance)
    if problems:
        raise bad_request(f"{len(problems)} of {len(rows)} CSV rows do not have one value per feature", problems)
    return instances


def read_cell(cell: str, allowed: frozenset[str]) -> Any:
    """The cell as the JSON type its column allows; left a string when it reads as none, for the schema to refuse."""
    anything = not allowed
    if anything or "integer" in allowed:
        try:
            return int(cell)
        except ValueError:
            pass
    if anything or "number" in allowed or "integer" in allowed:
        try:
            value = float(cell)
        except ValueError:
            value = None
        if value is not None and math.isfinite(value):
            if "number" in allowed or anything:
                return value
            if value.is_integer():  # "3.0" in an integer column
                return int(value)
    if (anything or "boolean" in allowed) and cell.lower() in ("true", "false"):
        return cell.lower() == "true"
    return cell


def check_request(model: ServedModel, instances: list, prefix: str) -> None:
    valid = model.request.is_valid
    if all(valid(instance) for instance in instances):
        return
    fields: list[FieldError] = []
    failing = 0
    for i, instance in enumerate(instances):
        if not valid(instance):
            failing += 1
            fields.extend(model.request.errors(instance, f"{prefix}[{i}]"))
    raise bad_request(f"{failing} of {len(instances)} {'instance' if prefix == 'instances' else 'row'}"
                      f"{'s' if len(instances) > 1 else ''} do not match the request schema", fields)


# Per column tuple: its Index, and where its columns sit in the block (read-only: pandas makes new placements
# when a predict adds or drops columns, and never writes these).
_LAYOUTS: dict[tuple[str, ...], tuple[pd.Index, np.ndarray]] = {}


def _layout(columns: tuple[str, ...]) -> tuple[pd.Index, np.ndarray]:
    layout = _LAYOUTS.get(columns)
    if layout is None:
        placement = np.arange(len(columns))
        placement.flags.writeable = False
        layout = _LAYOUTS[columns] = (pd.Index(columns), placement)
    return layout


def to_frame(model: ServedModel, instances: list) -> pd.DataFrame:
    if model.float_columns:
        # All-number columns: one float64 array (a missing value is NaN), and a number column stays float64 even
        # when a request's values happen to be whole. The frame is made from that array as its one block, the
        # layout DataFrame(values) gives, through pandas' public block constructor: it skips the constructor's
        # inference, which touches several times more of pandas (about 7 us at one row on a warm CPU against 9
        # for DataFrame(values) and 60-85 for from_records, and 75 against 110 when its caches are cold, as they
        # are between requests on a busy server).
        columns = model.columns
        try:
            values = np.array([instance.get(c) for instance in instances for c in columns], dtype=float)
        except (OverflowError, TypeError, ValueError):  # a number past float64's range: let pandas keep it
            pass
        else:
            index, placement = _layout(columns)
            rows = len(instances)
            return create_dataframe_from_blocks([(values.reshape(rows, len(columns)).T, placement)],
                                                index=pd.RangeIndex.from_range(range(rows)), columns=index)
    columns = list(model.columns)
    if model.other_columns:
        seen = set(columns)
        for instance in instances:
            for key in instance:
                if key not in seen:
                    seen.add(key)
                    columns.append(key)
    # The constructor reads a list of dicts as from_records does (the same conversion, column by column), without
    # from_records' reordering: 80 us instead of 115 for a row of four mixed columns.
    return pd.DataFrame(instances, columns=columns)


def to_predictions(model: ServedModel, output: Any, rows: int) -> list:
    """predict's output as a list of JSON values, one per row (numpy and pandas values made plain)."""
    where = f"{model.module_name}.predict"
    if isinstance(output, pd.DataFrame):
        values = output.to_dict(orient="records")
    elif isinstance(output, (pd.Series, pd.Index, np.ndarray)):
        values = output.tolist()
    elif isinstance(output, (list, tuple)):
        values = list(output)
    else:
        raise server_error(f"{where} returned {type(output).__name__}; it must return one prediction per row "
                           "(a list, a numpy array, a pandas Series or DataFrame)")
    if len(values) != rows:
        raise server_error(f"{where} returned {len(values)} predictions for {rows} rows")
    if isinstance(output, (np.ndarray, pd.Series)) and output.dtype.kind in "biuf":
        return values  # tolist() already gave Python numbers
    return [_plain(v, i) for i, v in enumerate(values)]


def check_response(model: ServedModel, predictions: list) -> None:
    valid = model.response.is_valid
    if all(valid(p) for p in predictions):
        return
    fields: list[FieldError] = []
    for i, prediction in enumerate(predictions):
        if not valid(prediction):
            fields.extend(model.response.errors(prediction, f"predictions[{i}]"))
    raise server_error(f"the model's predictions do not match its response schema ({model.module_name}."
                       "RESPONSE_SCHEMA)", fields)


def encode(predictions: list) -> bytes:
    try:
        answer = orjson.dumps({"predictions": predictions})
    except orjson.JSONEncodeError:  # an integer past 64 bits, a lone surrogate: the standard library writes them
        answer = b"null"
    # orjson writes NaN and infinity as null: an answer with a null in it is written again by the standard
    # library, which refuses them (and writes a None the model returned as null, as orjson did).
    if b"null" not in answer:
        return answer
    try:
        return json.dumps({"predictions": predictions}, allow_nan=False).encode()
    except ValueError:
        fields = [FieldError(path, f"is {value}")
                  for i, p in enumerate(predictions) for path, value in _non_finite(p, f"predictions[{i}]")]
        raise server_error("the model predicted NaN or infinity, which JSON cannot carry", fields) from None


_PLAIN = (str, int, float, bool, type(None))


def _plain(value: Any, index: int, path: tuple = ()) -> Any:
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, pd.Series)):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v, index, (*path, str(k))) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, index, (*path, j)) for j, v in enumerate(value)]
    if hasattr(value, "isoformat"):  # dates and timestamps travel as ISO strings
        return value.isoformat()
    raise server_error(f"{field_path(f'predictions[{index}]', path)} is a {type(value).__name__}, which JSON "
                       "cannot carry: return numbers, strings, lists or dicts")


def _non_finite(value: Any, path: str):
    if isinstance(value, float) and not math.isfinite(value):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _non_finite(v, field_path(path, [k]))
    elif isinstance(value, list):
        for j, v in enumerate(value):
            yield from _non_finite(v, f"{path}[{j}]")


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"
