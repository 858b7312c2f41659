"""The schemas before deploy, in the generated DAG's steps and in `modelbot pipeline check`: broken schemas,
validation rows REQUEST_SCHEMA refuses, predictions RESPONSE_SCHEMA refuses (each with the row, field and rule),
and the request schema compared with the one production's Model Registry package carries (allow_breaking_schema).
Real pandas/numpy; AWS is moto with the UpdateEndpoint fake."""

from __future__ import annotations

import json

import boto3
import pytest

from tests.endpoints import create_endpoint
from tests.pipelines.conftest import BUCKET, PIPELINE_TOML, REGION, first_feature_model, pipeline, \
    register_production, run_pipeline, weights
from tests.pipelines.test_models_file_and_check import check, write

# The example's schemas, as an earlier version of the model had them: `segment` optional, tenure unbounded.
PRODUCTION_REQUEST = {
    "type": "object",
    "properties": {"tenure_z": {"type": "number"}, "complaints_z": {"type": "number"},
                   "segment": {"type": "string"}},
    "required": ["tenure_z", "complaints_z"],
}


def module_with(request_schema: dict, response_schema: dict | None = None, *, rows: str = "") -> str:
    """The example model with other schemas (and extra validation rows)."""
    from tests.pipelines.conftest import EXAMPLE

    source = EXAMPLE.read_text()
    source = source.replace("REQUEST_SCHEMA = {", "_EXAMPLE_REQUEST = {", 1)
    source = source.replace("RESPONSE_SCHEMA = {", "_EXAMPLE_RESPONSE = {", 1)
    source += f"\nREQUEST_SCHEMA = {request_schema!r}\nRESPONSE_SCHEMA = {response_schema or {'type': 'number'}!r}\n"
    if rows:
        source += rows
    return source


# ---------------------------------------------------------------- the steps

@pytest.mark.parametrize("schemas_source, message", [
    ("", "broken.REQUEST_SCHEMA is missing: declare the JSON Schema (draft 2020-12) of one request instance"),
    ('REQUEST_SCHEMA = {"type": "object", "properties": {"x": {"type": "numbr"}}}\nRESPONSE_SCHEMA = {}\n',
     "broken.REQUEST_SCHEMA is not a valid JSON Schema (draft 2020-12): at properties.x.type: 'numbr' is not valid"),
    ('REQUEST_SCHEMA = {"type": "object"}\n', "broken.RESPONSE_SCHEMA is missing: declare the JSON Schema of one "
                                              "prediction"),
    ('REQUEST_SCHEMA = {"type": "object"}\nRESPONSE_SCHEMA = {"type": "number"}\nFEATURES = "x"\n',
     "broken.FEATURES must be a list of column names (strings)"),
])
def test_a_module_with_broken_schemas_fails_before_training(steps, modules, schemas_source, message):
    modules("broken", "def preprocess(conf): return {}\ndef train(frame, conf): return {}\n"
                      "def predict(model, features): return []\n" + schemas_source, schemas=False)
    with pytest.raises(steps.DefinitionError) as err:
        steps.step_preprocess(pipeline(steps, module="broken"), {}, "r", steps.MemoryArtifacts())
    assert message in str(err.value)


def test_validation_rows_the_request_schema_refuses_fail_preprocess_naming_row_field_and_rule(steps, modules):
    modules("churn_model", module_with(
        {"type": "object", "properties": {"tenure_z": {"type": "number", "minimum": -1}}, "required": ["tenure_z"]}))
    with pytest.raises(steps.DefinitionError) as err:
        steps.step_preprocess(pipeline(steps), {"rows": "90"}, "r", steps.MemoryArtifacts())
    text = str(err.value)
    assert text.startswith("churn_model.REQUEST_SCHEMA refuses ")
    assert " of 30 validation rows, so modelbot-serve would answer 400 to requests like them: validation row " in text
    assert "tenure_z: " in text and "is less than the minimum of -1 (rule minimum: -1)" in text


def test_features_must_be_in_the_validation_frame(steps, modules):
    modules("churn_model", """
        import pandas as pd
        FEATURES = ["tenure_z", "age"]
        def preprocess(conf):
            f = pd.DataFrame({"tenure_z": [0.1, 0.9], "churned": [0, 1]})
            return {"train": f, "validation": f}
        def train(frame, conf): return {}
        def predict(model, features): return [0.5] * len(features)
    """)
    with pytest.raises(steps.DefinitionError, match=r"churn_model.FEATURES names 'age', which churn_model.preprocess"
                                                    r"\(conf\)\['validation'\] lacks \(columns: tenure_z\)"):
        steps.step_preprocess(pipeline(steps), {}, "r", steps.MemoryArtifacts())


def test_predictions_the_response_schema_refuses_fail_evaluate_naming_row_and_rule(steps, modules):
    modules("churn_model", module_with({"type": "object"}, {"type": "number", "maximum": 0.5}))
    p, artifacts = pipeline(steps), steps.MemoryArtifacts()
    data = steps.step_preprocess(p, {}, "r", artifacts)
    trained = steps.step_train(p, {}, "r", data, artifacts)
    with pytest.raises(steps.DefinitionError) as err:
        steps.step_evaluate(p, "r", data, trained, artifacts, lambda: None)
    text = str(err.value)
    assert text.startswith("churn_model.RESPONSE_SCHEMA refuses ") and " of 200 predictions of the candidate model" in text
    assert "so modelbot-serve would answer 500 to requests like them: validation row " in text
    assert "(the whole instance): 0." in text and "is greater than the maximum of 0.5 (rule maximum: 0.5)" in text


# ---------------------------------------------------------------- compatibility with production's request schema

def test_a_new_required_field_is_not_deployed_unless_the_run_allows_it(steps, modules, pipeline_aws):
    create_endpoint("churn-prod", {"v41": 1.0})
    prod_arn = register_production(steps, first_feature_model(),
                                   schemas={"request": PRODUCTION_REQUEST, "response": {"type": "number"}})
    p = pipeline(steps)  # the example: `segment` removed (additionalProperties false), both fields bounded
    _, trained, evaluation = run_pipeline(steps, p, "manual__1")
    schema = evaluation["schema"]
    assert schema["compared"] and schema["production_package"] == prod_arn
    assert schema["blocked"] and not schema["allowed"] and evaluation["promote"] is False
    assert schema["breaking"] == [
        {"field": "segment", "change": "removed: requests that send it are refused now (additional properties are "
                                       "not allowed)"},
        {"field": "complaints_z", "change": "lower bound tightened: none -> >= -10"},
        {"field": "complaints_z", "change": "upper bound tightened: none -> <= 10"},
        {"field": "tenure_z", "change": "lower bound tightened: none -> >= -10"},
        {"field": "tenure_z", "change": "upper bound tightened: none -> <= 10"},
        {"field": "(the whole request)", "change": "fields it does not declare are refused now "
                                                   "(additionalProperties: false)"},
    ]
    assert schema["breaking_count"] == 6
    sm = steps.aws_client("sagemaker", REGION)
    with pytest.raises(steps.AirflowSkipException, match="not deployed: the candidate's REQUEST_SCHEMA would refuse "
                                                         "requests production accepts \\(6 breaking changes"):
        steps.step_deploy(p, {}, "manual__1", evaluation, trained, sm)
    assert weights() == {"v41": 1.0}

    conf = {"allow_breaking_schema": "true"}
    _, trained, evaluation = run_pipeline(steps, p, "manual__2", conf)
    assert evaluation["schema"]["allowed"] and not evaluation["schema"]["blocked"] and evaluation["promote"]
    result = steps.step_deploy(p, conf, "manual__2", evaluation, trained, sm)
    assert weights() == {"v41": 1.0, result["candidate_variant"]: 0.0}

    # The package says where its schemas are; they are the module's, ready for the next comparison.
    package = sm.describe_model_package(ModelPackageName=result["model_package_arn"])
    uri = package["CustomerMetadataProperties"]["modelbot_schemas"]
    assert uri == f"s3://{BUCKET}/churn/churn_pipeline/manual__2/schemas.json"
    stored = json.loads(boto3.client("s3", region_name=REGION).get_object(
        Bucket=BUCKET, Key="churn/churn_pipeline/manual__2/schemas.json")["Body"].read())
    import churn_model

    assert stored == {"request": churn_model.REQUEST_SCHEMA, "response": churn_model.RESPONSE_SCHEMA,
                      "features": churn_model.FEATURES}


def test_a_compatible_schema_deploys_and_says_what_changed(steps, modules, pipeline_aws):
    create_endpoint("churn-prod", {"v41": 1.0})
    register_production(steps, first_feature_model(),
                        schemas={"request": PRODUCTION_REQUEST, "response": {"type": "number"}})
    modules("churn_model", module_with({**PRODUCTION_REQUEST, "properties": {
        **PRODUCTION_REQUEST["properties"], "region": {"type": "string"}}}))
    _, _, evaluation = run_pipeline(steps, pipeline(steps), "manual__1")
    schema = evaluation["schema"]
    assert schema["compared"] and not schema["blocked"] and evaluation["promote"] is True
    assert schema["breaking"] == [] and schema["compatible"] == [{"field": "region", "change": "new optional field"}]


def test_a_production_package_without_schemas_is_not_compared_and_says_so(steps, modules, pipeline_aws):
    create_endpoint("churn-prod", {"v41": 1.0})
    arn = register_production(steps, first_feature_model())
    _, _, evaluation = run_pipeline(steps, pipeline(steps), "manual__1")
    schema = evaluation["schema"]
    assert not schema["compared"] and not schema["blocked"] and evaluation["promote"] is True
    assert schema["note"] == (f"the production package {arn} carries no schemas (registered before modelbot kept "
                              "them), so the candidate's request schema was not compared with production's")


def test_allow_breaking_schema_must_say_true_or_false(steps, modules, pipeline_aws):
    with pytest.raises(steps.Unretryable, match="run conf allow_breaking_schema='maybe': say "
                                                "allow_breaking_schema=true or allow_breaking_schema=false"):
        run_pipeline(steps, pipeline(steps), "manual__1", {"allow_breaking_schema": "maybe"})


# ---------------------------------------------------------------- `modelbot pipeline check`

def test_check_reports_the_schemas_and_compares_with_production(tmp_path, monkeypatch, modules, steps):
    import pickle

    models = write(tmp_path, PIPELINE_TOML)
    code, out, err = check(monkeypatch, models, "churn", "rows=300")
    assert code == 0, err
    assert "schemas: REQUEST_SCHEMA (draft 2020-12) accepts all 100 validation rows" in out
    assert "schemas: RESPONSE_SCHEMA accepts all 100 predictions of the candidate" in out
    assert "request schema: not compared: nothing in production to compare the request schema with" in out
    assert f"data capture: requests and predictions, 100% of them, to s3://{BUCKET}/churn/capture" in out

    production = tmp_path / "model.tar.gz"
    production.write_bytes(steps.model_tarball(pickle.dumps(first_feature_model())))
    schemas_json = tmp_path / "schemas.json"
    schemas_json.write_text(json.dumps({"request": PRODUCTION_REQUEST, "response": {"type": "number"}}))
    code, out, err = check(monkeypatch, models, "churn", "--production-model", str(production),
                           "--production-schemas", str(schemas_json))
    assert code == 0, err
    assert "request schema: 6 changes refuse requests production accepts" in out
    assert "  breaking: segment: removed: requests that send it are refused now" in out
    assert ("promote: false (direction maximize, min_improvement 0; the request schema would refuse requests "
            "production accepts: allow_breaking_schema=true deploys it anyway)") in out
    assert "deploy would be skipped" in out

    code, out, _ = check(monkeypatch, models, "churn", "allow_breaking_schema=true", "--production-model",
                         str(production), "--production-schemas", str(schemas_json))
    assert code == 0 and "(allowed by allow_breaking_schema=true)" in out and "promote: true" in out


def test_check_names_the_row_a_schema_refuses(tmp_path, monkeypatch, modules):
    modules("churn_model", module_with(
        {"type": "object", "properties": {"complaints_z": {"type": "number", "maximum": 0}}}))
    code, out, err = check(monkeypatch, write(tmp_path, PIPELINE_TOML), "churn")
    assert code == 1 and out == ""
    assert err.startswith("Pipeline check of churn failed: churn_model.REQUEST_SCHEMA refuses ")
    assert "complaints_z: " in err and "(rule maximum: 0)" in err


def test_a_production_schema_that_cannot_be_compared_is_said_not_fatal(steps):
    class Contract:  # the report reads only the candidate's request schema
        request_schema = {"type": "object"}

    production = steps.Production(model=None, arn="arn:aws:sagemaker:us-east-1:1:model-package/churn/3",
                                  schemas={"request": {"$ref": "https://example.com/remote.json"}})
    report = steps.schema_report(Contract(), production, allow=False, uri="s3://b/schemas.json", requests=1,
                                 predictions=1)
    assert not report["compared"] and not report["blocked"]
    assert report["note"].startswith("production's request schema (arn:aws:sagemaker:us-east-1:1:model-package/"
                                     "churn/3) could not be compared (")
