"""The [models.X.pipeline] section as modelbot loads it, and `modelbot pipeline check` on a good and a broken
module (the console script's code, run in-process; no AWS is reachable or needed)."""

from __future__ import annotations

import io

import pytest

from bot import cli
from bot.registry import RegistryError, load_registry
from tests.pipelines.conftest import PIPELINE_TOML


def write(tmp_path, text: str):
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


def test_the_pipeline_section_loads(tmp_path):
    model = load_registry(write(tmp_path, PIPELINE_TOML)).get("churn")
    assert model.pipeline.module == "churn_model" and model.pipeline.min_improvement == 0.0
    assert model.pipeline.schedule is None and model.pipeline.instance_type is None


@pytest.mark.parametrize("old, new, expected", [
    ('module = "churn_model"', 'module = "churn-model.py"', "field 'pipeline.module': 'churn-model.py' is not an "
                                                            "importable module name"),
    ('artifacts = "s3://ml-artifacts/churn"', 'artifacts = "/tmp/x"', "field 'pipeline.artifacts': '/tmp/x' is not "
                                                                       "an S3 location"),
    ('label = "churned"', 'lable = "churned"', "field 'pipeline.lable': unknown field (did you mean 'label'?)"),
    ('label = "churned"', '', "field 'pipeline.label': is required"),
    ('metric = "auc"', 'metric = "mape"', "field 'metric': 'mape' is not a metric the pipeline computes"),
    ('direction = "maximize"', 'direction = "minimize"', "field 'direction': auc is better when higher; set "
                                                         "direction = \"maximize\""),
    ('endpoint = "churn-prod"', '', "field 'endpoint': is required for a model with a pipeline"),
    ('[models.churn.pipeline]', '[models.churn.pipeline]\nmin_improvement = -1', "field 'pipeline.min_improvement'"),
])
def test_a_bad_pipeline_section_names_file_model_and_field(tmp_path, old, new, expected):
    path = write(tmp_path, PIPELINE_TOML.replace(old, new))
    with pytest.raises(RegistryError) as err:
        load_registry(path)
    assert f"{path}: model 'churn', {expected}" in str(err.value)


def check(monkeypatch, models, *argv) -> tuple[int, str, str]:
    monkeypatch.setenv("MODELS_FILE", str(models))
    # No AWS at all: a check that tried to reach it would fail here rather than pass quietly.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["pipeline", "check", *argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_check_runs_the_three_functions_and_says_what_the_dag_would_do(tmp_path, monkeypatch, modules, steps):
    models = write(tmp_path, PIPELINE_TOML)
    code, out, err = check(monkeypatch, models, "churn", "epochs=50", "rows=300", "--rows", "120")
    assert code == 0, err
    assert "preprocess: train 200 rows, validation 100 rows, 2 features (tenure_z, complaints_z)" in out
    assert "checking on a sample of 120 train and 100 validation rows" in out
    assert "train: returned a dict" in out
    assert "evaluate: auc 0." in out and "promote: true" in out
    for name in ("train.pkl", "validation.pkl", "model.pkl", "model.tar.gz", "diagnostics.csv", "evaluation.json"):
        assert f"  s3://ml-artifacts/churn/churn_pipeline/<run_id>/{name}" in out
    assert "put it on endpoint churn-prod at weight 0" in out and "Nothing was sent to AWS." in out

    # Against a production model given by hand: the same comparison the DAG makes, the same verdict rule.
    import pickle

    from tests.pipelines.conftest import first_feature_model

    production = tmp_path / "model.tar.gz"
    production.write_bytes(steps.model_tarball(pickle.dumps(first_feature_model())))
    code, out, err = check(monkeypatch, models, "churn", "--production-model", str(production))
    assert code == 0, err
    assert "evaluate: auc candidate 0." in out and "vs production 0." in out
    assert "promote: true (direction maximize, min_improvement 0)" in out


def test_check_of_a_broken_module_names_the_function_and_what_was_wrong(tmp_path, monkeypatch, modules):
    modules("churn_model", """
        import pandas as pd
        def preprocess(conf):
            frame = pd.DataFrame({"tenure_z": [0.1, 0.2], "complaints_z": [1.0, 0.0]})
            return {"train": frame, "validation": frame}
        def train(frame, conf):
            return {}
        def predict(model, features):
            return [0.5] * len(features)
    """)
    code, out, err = check(monkeypatch, write(tmp_path, PIPELINE_TOML), "churn")
    assert code == 1 and out == ""
    assert err.strip() == ("Pipeline check of churn failed: churn_model.preprocess(conf)['train'] has no label "
                           "column 'churned' (columns: tenure_z, complaints_z); the models file names it in "
                           "pipeline.label")

    modules("churn_model", "def preprocess(conf):\n    return {}\n", schemas=False)
    code, _, err = check(monkeypatch, write(tmp_path, PIPELINE_TOML), "churn")
    assert code == 1
    assert "churn_model.train is missing: define train(frame, conf) -> model" in err
    assert "churn_model.predict is missing: define predict(model, features) -> sequence of numbers" in err
    assert "churn_model.REQUEST_SCHEMA is missing: declare the JSON Schema (draft 2020-12) of one request" in err
    assert "churn_model.RESPONSE_SCHEMA is missing: declare the JSON Schema of one prediction" in err


def test_check_of_an_unknown_model_or_one_without_a_pipeline(tmp_path, monkeypatch):
    models = write(tmp_path, PIPELINE_TOML + '\n[models.plain]\nchannel = "C1"\n')
    code, _, err = check(monkeypatch, models, "chrun")
    assert code == 2 and "no model 'chrun'" in err and "did you mean churn" in err
    code, _, err = check(monkeypatch, models, "plain")
    assert code == 1 and "model 'plain' has no [models.plain.pipeline] section" in err


# ---------------------------------------------------------------- the DAG file's loader agrees with modelbot's (issue 21, item 9)

SECOND = """
[models.{name}]
dag_id = "{dag_id}"
endpoint = "{endpoint}"
channel = "C0SECOND"
metric = "auc"
[models.{name}.pipeline]
module = "churn_model"
label = "churned"
image = "img"
artifacts = "s3://ml-artifacts/{name}"
"""

FILES = {
    "fine": PIPELINE_TOML + SECOND.format(name="upsell", dag_id="upsell_pipeline", endpoint="upsell-prod"),
    "capture settings": PIPELINE_TOML.replace('[models.churn.pipeline]', '[models.churn.pipeline]\ncapture_percent = 20\n'
                                                                         'capture_uri = "s3://ml-capture/churn"'),
    "shared endpoint": PIPELINE_TOML + SECOND.format(name="upsell", dag_id="upsell_pipeline", endpoint="churn-prod"),
    "shared dag_id": PIPELINE_TOML + SECOND.format(name="upsell", dag_id="churn_pipeline", endpoint="upsell-prod"),
    "dag_id with a space": PIPELINE_TOML + SECOND.format(name="upsell", dag_id="upsell pipeline",
                                                         endpoint="upsell-prod"),
    "dag_id of 251 characters": PIPELINE_TOML + SECOND.format(name="upsell", dag_id="d" * 251,
                                                              endpoint="upsell-prod"),
    "dag_id with a slash": PIPELINE_TOML + SECOND.format(name="upsell", dag_id="team/upsell", endpoint="upsell-prod"),
    "a shared endpoint with a model without a pipeline": PIPELINE_TOML + '\n[models.plain]\nchannel = "C1"\n'
                                                                         'endpoint = "churn-prod"\n',
    "capture_percent over 100": PIPELINE_TOML.replace('[models.churn.pipeline]',
                                                      '[models.churn.pipeline]\ncapture_percent = 150'),
}


@pytest.mark.parametrize("case", sorted(FILES))
def test_the_dag_file_and_modelbot_refuse_the_same_models_files(tmp_path, steps, case):
    path = write(tmp_path, FILES[case])
    try:
        load_registry(path)
        modelbot_refuses = False
    except RegistryError:
        modelbot_refuses = True
    try:
        steps.load_pipelines(path)
        dag_refuses = False
    except steps.PipelineConfigError:
        dag_refuses = True
    assert dag_refuses == modelbot_refuses, case
    assert dag_refuses == (case not in ("fine", "capture settings")), case


def test_the_dag_file_validates_dag_ids_as_airflow_and_modelbot_do(steps):
    from bot.registry import DAG_ID

    assert steps.DAG_ID.pattern == DAG_ID.pattern == r"^[A-Za-z0-9_.-]{1,250}$"


@pytest.mark.parametrize("case, message", [
    ("shared endpoint", "models 'churn' and 'upsell', field 'endpoint': both name 'churn-prod'; two models may not "
                        "share an endpoint"),
    ("shared dag_id", "models 'churn' and 'upsell', field 'dag_id': both name 'churn_pipeline'; two models may not "
                      "share a dag_id"),
    ("dag_id with a space", "model 'upsell', field 'dag_id': 'upsell pipeline' is not a valid Airflow dag_id: at "
                            "most 250 letters, digits, '_', '-' and '.'"),
])
def test_one_bad_entry_refuses_itself_and_names_both_models_the_rest_still_build(tmp_path, steps, case, message):
    path = write(tmp_path, FILES[case])
    pipelines, refused = steps.read_models_file(path)
    problems = [p for r in refused for p in r.problems]
    assert f"{path}: {message}" in problems
    if case == "dag_id with a space":  # churn still builds; upsell cannot be named in Airflow: no stand-in
        assert [p.model for p in pipelines] == ["churn"]
        assert [(r.models, r.dag_id) for r in refused] == [(("upsell",), None)]
    elif case == "shared endpoint":  # both refused; each dag_id gets a stand-in DAG that fails saying why
        assert pipelines == []
        assert sorted((r.models, r.dag_id) for r in refused) == [(("churn",), "churn_pipeline"),
                                                                 (("upsell",), "upsell_pipeline")]
    else:  # one dag_id, one stand-in naming both
        assert pipelines == []
        assert [(r.models, r.dag_id) for r in refused] == [(("churn", "upsell"), "churn_pipeline")]


def test_capture_settings_reach_the_pipeline(tmp_path, steps):
    [p] = steps.load_pipelines(write(tmp_path, FILES["capture settings"]))
    assert (p.capture_percent, p.capture_destination, p.capture_set) == (
        20, "s3://ml-capture/churn", frozenset({"capture_percent", "capture_uri"}))
    [p] = steps.load_pipelines(write(tmp_path, PIPELINE_TOML))
    assert (p.capture_percent, p.capture_destination, p.capture_set) == (
        100, "s3://ml-artifacts/churn/capture", frozenset())
