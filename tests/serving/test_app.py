"""The serving app in process: what a caller gets back for each kind of request, right and wrong."""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from serving.access_log import clean_id
from serving.app import ServingApp
from serving.loading import load_served_model
from serving.payloads import to_frame
from serving.schemas import Schema
from tests.serving.conftest import ROOT, SCALE, call

LIMIT = 4000


@pytest.fixture(scope="module")
def tabular(tabular_model_dir):
    return ServingApp(load_served_model("tabular", str(tabular_model_dir)), max_request_bytes=LIMIT)


@pytest.fixture(scope="module")
def records(records_model_dir):
    return ServingApp(load_served_model("records", str(records_model_dir)), max_request_bytes=LIMIT)


def invoke(app, body, content_type="application/json", **kw):
    return call(app, "POST", "/invocations", body, content_type, **kw)


def score(row: dict) -> float:
    return SCALE * (row["tenure_months"] % 100) / 100 + (0.25 if row["plan"] == "pro" else 0.0)


# ---------------------------------------------------------------- valid requests

def test_json_instances_get_one_prediction_each_in_order(tabular):
    rows = [{"tenure_months": 12, "monthly_spend": 30.5, "plan": "pro"}, {"tenure_months": 40, "plan": "basic"}]
    answer = invoke(tabular, {"instances": rows})
    assert answer.code == 200, answer.body
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {"predictions": [pytest.approx(score(r)) for r in rows]}


def test_ping_and_schema(tabular):
    assert call(tabular, "GET", "/ping").code == 200
    schema = call(tabular, "GET", "/schema").json()
    assert schema["features"] == ["tenure_months", "monthly_spend", "plan"]
    assert schema["request"]["properties"]["plan"] == {"enum": ["basic", "pro"]}


def test_csv_rows_in_features_order_with_or_without_a_header(tabular):
    body = "12,30.5,pro\n40,,basic\n"
    expected = [pytest.approx(score({"tenure_months": 12, "plan": "pro"})),
                pytest.approx(score({"tenure_months": 40, "plan": "basic"}))]
    plain = invoke(tabular, body, "text/csv")
    assert plain.code == 200, plain.body
    assert plain.json() == {"predictions": expected}
    headed = invoke(tabular, "tenure_months,monthly_spend,plan\r\n" + body, "text/csv; charset=utf-8")
    assert headed.json() == {"predictions": expected}


def test_a_module_without_features_takes_json_objects_in_schema_order_and_answers_objects(records):
    """pydantic schemas ($defs, Optional as anyOf), nested objects, load(model_dir), numpy values in dicts."""
    rows = [{"age": 30, "address": {"country": "DE"}}, {"age": 80, "income": 1.5, "address": {"country": "FR"}}]
    answer = invoke(records, {"instances": rows})
    assert answer.code == 200, answer.body
    first, second = answer.json()["predictions"]
    assert first == {"label": "stay", "score": pytest.approx(0.3), "scores": [pytest.approx(0.7), pytest.approx(0.3)]}
    assert second["label"] == "leave"


def test_the_example_churn_model_serves_numbers_as_one_float_frame(tmp_path, monkeypatch):
    """dags/examples/churn_model.py, trained and pickled as the pipeline does, answers what it predicts in
    process; its all-number columns arrive as float64 even when a request's values are whole numbers."""
    monkeypatch.syspath_prepend(str(ROOT / "dags" / "examples"))
    import churn_model

    frames = churn_model.preprocess({})
    model = churn_model.train(frames["train"], {})
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(model))
    served = load_served_model("churn_model", str(tmp_path))
    app = ServingApp(served, max_request_bytes=LIMIT)
    rows = frames["validation"].drop(columns=["churned"]).iloc[:5].to_dict(orient="records")
    rows[0] = {"tenure_z": 1, "complaints_z": 0}
    answer = invoke(app, {"instances": rows})
    assert answer.code == 200, answer.body
    direct = churn_model.predict(model, pd.DataFrame(rows, columns=churn_model.FEATURES).astype(float))
    assert answer.json()["predictions"] == pytest.approx(direct.tolist())
    frame = to_frame(served, rows)
    assert list(frame.columns) == churn_model.FEATURES and set(frame.dtypes) == {np.dtype("float64")}
    # built from its block, the frame is the one pandas' constructor makes, and predict may change it
    pd.testing.assert_frame_equal(frame, pd.DataFrame(rows, columns=churn_model.FEATURES, dtype=float),
                                  check_index_type=True, check_column_type=True)
    assert frame.to_numpy().flags.c_contiguous
    frame["risk"] = frame["tenure_z"] * 2
    frame.loc[0, "tenure_z"] = 9.0
    frame.insert(0, "one", 1.0)
    del frame["complaints_z"]
    assert list(frame.columns) == ["one", "tenure_z", "risk"] and frame.loc[0, "tenure_z"] == 9.0
    pd.testing.assert_frame_equal(to_frame(served, rows), pd.DataFrame(rows, columns=churn_model.FEATURES,
                                                                       dtype=float))
    sparse = to_frame(served, [{"tenure_z": 1.5}, {"complaints_z": -2}])
    assert sparse.to_dict(orient="list") == {"tenure_z": [1.5, pytest.approx(math.nan, nan_ok=True)],
                                             "complaints_z": [pytest.approx(math.nan, nan_ok=True), -2.0]}


def test_mixed_columns_are_inferred_as_pandas_infers_records(tabular, records):
    rows = [{"tenure_months": 12, "plan": "pro"}, {"tenure_months": 40, "monthly_spend": 30.5, "plan": "basic"}]
    pd.testing.assert_frame_equal(to_frame(tabular.model, rows),
                                  pd.DataFrame.from_records(rows, columns=["tenure_months", "monthly_spend", "plan"]))
    nested = [{"age": 30, "address": {"country": "DE"}}, {"age": 80, "income": None, "address": {"country": "FR"}}]
    frame = to_frame(records.model, nested)
    pd.testing.assert_frame_equal(frame, pd.DataFrame.from_records(nested, columns=list(frame.columns)))


# ---------------------------------------------------------------- bad requests: 400 naming each field

def test_a_request_breaking_the_schema_names_every_failing_field(tabular):
    rows = [{"tenure_months": -1, "monthly_spend": "lots", "plan": "gold", "colour": "red"},
            {"tenure_months": 3, "plan": "pro"},
            {"monthly_spend": 1}]
    answer = invoke(tabular, {"instances": rows})
    assert answer.code == 400
    body = answer.json()
    assert body["error"] == "2 of 3 instances do not match the request schema"
    fields = {e["field"]: e["message"] for e in body["errors"]}
    assert set(fields) == {"instances[0].tenure_months", "instances[0].monthly_spend", "instances[0].plan",
                           "instances[0].colour", "instances[2].tenure_months", "instances[2].plan"}
    assert "minimum of 0" in fields["instances[0].tenure_months"]
    assert "number" in fields["instances[0].monthly_spend"]
    assert "basic" in fields["instances[0].plan"] and "pro" in fields["instances[0].plan"]
    assert fields["instances[2].plan"] == "is required but missing"
    assert "not a field" in fields["instances[0].colour"]


def test_nested_fields_and_optional_types_are_named_by_their_path(records):
    rows = [{"age": 12, "income": "high", "address": {"country": "Germany", "zip": 5}}]
    body = invoke(records, {"instances": rows}).json()
    fields = {e["field"]: e["message"] for e in body["errors"]}
    assert set(fields) == {"instances[0].age", "instances[0].income", "instances[0].address.country",
                           "instances[0].address.zip"}
    assert fields["instances[0].income"] == '"high" is not a number or null'
    assert fields["instances[0].address.zip"] == "5 is not a string or null"


@pytest.mark.parametrize("body,error", [
    ('{"instances": [{"tenure_months": 1,}]}', "the body is not valid JSON: Expecting property name enclosed in "
                                               "double quotes at line 1 column 36"),
    (b"{\"instances\": [{\"plan\": \"\xff\"}]}", "the body is not UTF-8 text (invalid start byte at byte 25)"),
    ("", 'the body is empty: send {"instances": [{...}, ...]}'),
    ('[{"tenure_months": 1}]', 'the body must be a JSON object {"instances": [...]}; it is a list'),
    ('{"rows": [{"tenure_months": 1}]}', 'the body has no "instances" (its keys: rows)'),
    ('{"instances": {"tenure_months": 1}}', '"instances" must be a list of objects, one per row; it is an object: '
                                            "wrap a single instance in a list"),
    ('{"instances": []}', '"instances" is empty'),
    ('{"instances": [{"tenure_months": 1, "plan": "pro"}, 7]}', "1 of 2 instances are not JSON objects"),
    # Not JSON, though Python's json reads them: refused here, not passed on to fail in the schema or the log.
    ('{"instances": [{"tenure_months": 1, "monthly_spend": NaN, "plan": "pro"}]}',
     "the body is not valid JSON: NaN is not a JSON number (JSON has no NaN or Infinity)"),
    ('{"instances": [{"tenure_months": 1, "monthly_spend": -Infinity, "plan": "pro"}]}',
     "the body is not valid JSON: -Infinity is not a JSON number"),
    ('{"instances": [{"tenure_months": 1, "monthly_spend": 1e400, "plan": "pro"}]}',
     "the number 1e400 is past the range of a 64-bit float"),
    ('{"instances": [{"tenure_months": 1, "plan": "pro\\ud800"}]}',
     'the body is not valid JSON: a string holds "\\ud800", half of a UTF-16 surrogate pair, which is not text'),
])
def test_malformed_bodies_are_400_saying_what_is_wrong(tabular, body, error):
    answer = invoke(tabular, body)
    assert answer.code == 400
    assert answer.json()["error"].startswith(error)


def test_json_is_read_exactly_as_sent(tabular):
    """orjson reads bodies, except where it would read them otherwise than the standard library (an integer past
    64 bits would become a float: 10**25 + 1 % 100 is 1, not 64) or refuses what is JSON (a byte order mark)."""
    huge = '{"instances": [{"tenure_months": 10000000000000000000000001, "plan": "pro"}]}'
    assert invoke(tabular, huge).json() == {"predictions": [pytest.approx(SCALE * 1 / 100 + 0.25)]}
    marked = '\ufeff{"instances": [{"tenure_months": 12, "plan": "pro\\u00e9"}]}'
    assert invoke(tabular, marked).json()["errors"][0]["message"] == '"proé" is not one of "basic" or "pro"'


def test_csv_rows_that_do_not_fit_are_400_by_row(tabular):
    answer = invoke(tabular, "12,30.5,pro\n40,basic\n7,x,pro\n-3,1,basic\n", "text/csv")
    assert answer.code == 400
    assert answer.json()["errors"] == [
        {"field": "rows[1]", "message": "has 2 values; FEATURES has 3 columns: tenure_months, monthly_spend, plan"}]
    typed = invoke(tabular, "7,x,pro\n-3,1,basic\n3.0,1,pro\n", "text/csv").json()
    fields = {e["field"]: e["message"] for e in typed["errors"]}
    assert set(fields) == {"rows[0].monthly_spend", "rows[1].tenure_months"}, typed
    assert invoke(tabular, "", "text/csv").json()["error"].startswith("the CSV has no rows")


def test_wrong_content_types_are_415_naming_what_is_accepted(tabular, records):
    answer = invoke(tabular, "tenure_months=1", "application/x-www-form-urlencoded")
    assert answer.code == 415
    assert answer.json()["error"] == ("Content-Type application/x-www-form-urlencoded is not accepted: send "
                                      "application/json or text/csv")
    csv = invoke(records, "30,DE\n", "text/csv")
    assert csv.code == 415
    assert "only when records defines FEATURES" in csv.json()["error"]
    assert invoke(records, "x", "text/plain").json()["error"].endswith("send application/json")


def test_bodies_over_the_limit_are_413_unread(tabular):
    big = json.dumps({"instances": [{"tenure_months": 1, "plan": "pro"}] * 200})
    assert len(big) > LIMIT
    answer = invoke(tabular, big)
    assert answer.code == 413
    assert f"over this server's limit of {LIMIT} bytes (MODELBOT_SERVE_MAX_REQUEST_BYTES)" in answer.json()["error"]
    assert invoke(tabular, big, chunked=True).code == 413
    small = json.dumps({"instances": [{"tenure_months": 1, "plan": "pro"}]})
    assert invoke(tabular, small, chunked=True).code == 200


def test_other_paths_and_methods(tabular):
    assert call(tabular, "GET", "/invocations").code == 405
    assert call(tabular, "GET", "/predict").code == 404
    assert call(tabular, "HEAD", "/ping").body == b""


# ---------------------------------------------------------------- the model's faults: 500

def test_a_prediction_breaking_the_response_schema_is_500_naming_it(tabular, caplog):
    rows = [{"tenure_months": 1, "plan": "pro"}, {"tenure_months": 2, "monthly_spend": 666, "plan": "pro"}]
    with caplog.at_level("ERROR", logger="modelbot.serve"):
        answer = invoke(tabular, {"instances": rows}, headers={"X-Amzn-SageMaker-Inference-Id": "inf-500"})
    assert answer.code == 500
    body = answer.json()
    assert body["error"] == "the model's predictions do not match its response schema (tabular.RESPONSE_SCHEMA)"
    assert body["errors"] == [{"field": "predictions[1]", "message": "1.5 is greater than the maximum of 1"}]
    assert "500" in caplog.text and "inference_id=inf-500" in caplog.text and "predictions[1]" in caplog.text


def test_an_object_prediction_breaking_its_schema_names_the_field(records):
    answer = invoke(records, {"instances": [{"age": 40, "address": {"country": "XX"}}]})
    assert answer.code == 500
    assert answer.json()["errors"][0]["field"] == "predictions[0].label"


def test_predict_raising_is_500_with_the_exception_and_logged_with_its_traceback(tabular, caplog):
    with caplog.at_level("ERROR", logger="modelbot.serve"):
        answer = invoke(tabular, {"instances": [{"tenure_months": 999, "plan": "pro"}]},
                        headers={"X-Amzn-SageMaker-Inference-Id": "inf-raise"})
    assert answer.code == 500
    assert answer.json() == {"error": "tabular.predict raised ValueError: tenure_months 999 is a sentinel, not a "
                                      "tenure"}
    assert "inference_id=inf-raise" in caplog.text and "Traceback" in caplog.text


@pytest.mark.parametrize("output,error", [
    (lambda f: [0.5], "returned 1 predictions for 2 rows"),
    (lambda f: 0.5, "returned float; it must return one prediction per row"),
    (lambda f: np.array([0.5, math.nan]), "the model predicted NaN or infinity"),
    (lambda f: [0.5, object()], "predictions[1] is a object, which JSON cannot carry"),
])
def test_predict_returning_the_wrong_thing_is_500_saying_what(tabular_model_dir, output, error):
    served = load_served_model("tabular", str(tabular_model_dir))
    app = ServingApp(replace(served, predict=lambda m, f: output(f)), max_request_bytes=LIMIT)
    answer = invoke(app, {"instances": [{"tenure_months": 1, "plan": "pro"}, {"tenure_months": 2, "plan": "pro"}]})
    assert answer.code == 500
    assert error in answer.body.decode()


def test_numpy_and_pandas_outputs_become_json(tabular_model_dir):
    served = load_served_model("tabular", str(tabular_model_dir))
    rows = {"instances": [{"tenure_months": 1, "plan": "pro"}, {"tenure_months": 2, "plan": "basic"}]}
    for output, expected in [
        (pd.Series([0.25, 0.5]), [0.25, 0.5]),
        (np.array([[0.1, 0.9], [0.8, 0.2]], dtype=np.float32), [[pytest.approx(0.1), pytest.approx(0.9)],
                                                                [pytest.approx(0.8), pytest.approx(0.2)]]),
        (pd.DataFrame({"p": [0.1, 0.2], "label": ["a", "b"]}), [{"p": 0.1, "label": "a"}, {"p": 0.2, "label": "b"}]),
        ([np.int64(1), np.float32(0.5)], [1, 0.5]),
        # written by the standard library, as orjson cannot (past 64 bits) or writes NaN's way (null)
        ([2**70, None], [2**70, None]),
        (["café", "\u00e9t\u00e9"], ["café", "été"]),
    ]:
        app = ServingApp(replace(served, predict=lambda m, f, o=output: o, response=Schema.compile({}, "any")),
                         max_request_bytes=LIMIT)
        answer = invoke(app, rows)
        assert answer.code == 200, answer.body
        assert answer.json()["predictions"] == expected


def test_a_fault_of_the_runtime_itself_is_a_json_500_logged_with_the_inference_id(tabular_model_dir, caplog):
    served = load_served_model("tabular", str(tabular_model_dir))
    app = ServingApp(replace(served, columns=None), max_request_bytes=LIMIT)  # breaks the DataFrame step
    with caplog.at_level("ERROR", logger="modelbot.serve"):
        answer = invoke(app, {"instances": [{"tenure_months": 1, "plan": "pro"}]},
                        headers={"X-Amzn-SageMaker-Inference-Id": "inf-bug"})
    assert answer.code == 500
    assert answer.json()["error"].startswith("modelbot-serve failed on this request: TypeError")
    assert "inference_id=inf-bug" in caplog.text and "Traceback" in caplog.text


def test_inference_ids_reach_the_log_printable_and_bounded():
    assert clean_id(None) == clean_id("") == "-"
    assert clean_id("7f9c2a-11") == "7f9c2a-11"
    assert clean_id("a b\x1bc") == "a?b?c"
    assert clean_id("x" * 500) == "x" * 128
