"""The package `modelbot new` makes works as generated: installed as its README says, its own tests pass
(`modelbot pipeline check` among them), its property test catches a broken predict, modelbot-serve answers the
request its schema gives as an example, and its Dockerfile is modelbot's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import requests
from jsonschema import Draft202012Validator

from tests.harness import ROOT
from tests.scaffold.conftest import copy_package, modelbot, run_generated_tests
from tests.serving.conftest import ServeProcess, base_env

GENERATED_TESTS = [
    "tests/test_model.py::test_preprocess_returns_train_and_validation_with_the_label_and_the_features",
    "tests/test_model.py::test_the_validation_share_is_the_test_set_proportion",
    "tests/test_model.py::test_train_returns_a_model_that_survives_pickling",
    "tests/test_model.py::test_predict_returns_one_finite_number_per_row",
    "tests/test_schemas.py::test_the_schemas_are_json_schema_draft_2020_12",
    "tests/test_schemas.py::test_every_validation_row_is_a_request_the_schema_accepts",
    "tests/test_schemas.py::test_every_prediction_matches_the_response_schema",
    "tests/test_schemas.py::test_any_request_the_schema_accepts_gets_predictions_the_response_schema_accepts",
    "tests/test_pipeline_check.py::test_modelbot_pipeline_check_passes",
]


def test_the_generated_tests_pass_once_installed_as_the_readme_says(made, package_venv):
    package, _ = made
    result = run_generated_tests(package_venv, package)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    for test in GENERATED_TESTS:
        assert f"PASSED {test}" in result.stdout, f"{test} did not pass:\n{result.stdout[-3000:]}"
    # Installed, not merely on a path: the venv imports the module from the package.
    where = subprocess.run([str(package_venv), "-c", "import probe_model; print(probe_model.__file__)"],
                           capture_output=True, text=True, cwd="/", timeout=60)
    assert where.stdout.strip() == str(package / "probe_model.py")


def test_a_regression_package_passes_its_tests_too(tmp_path, package_venv):
    code, _, err = modelbot("new", "spend", str(tmp_path / "spend"), "--defaults", "--data", "kind=regression",
                            "--data", "metric=r2")
    assert code == 0, err
    result = run_generated_tests(package_venv, tmp_path / "spend")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "PASSED tests/test_pipeline_check.py::test_modelbot_pipeline_check_passes" in result.stdout


def test_the_property_test_catches_predictions_that_break_the_response_schema(made, package_venv, tmp_path):
    """A predict that overflows the probability for many visits: rows preprocess makes never reach it, the
    requests generated from REQUEST_SCHEMA do."""
    package = copy_package(made[0], tmp_path / "probe")
    module = package / "probe_model.py"
    source = module.read_text()
    broken = source.replace("    return 0.5 * (1.0 + np.tanh(0.5 * z))",
                            "    p = 0.5 * (1.0 + np.tanh(0.5 * z))\n"
                            "    return np.where(features['visits'].to_numpy(dtype=float) > 5000, p + 1.0, p)")
    assert broken != source
    module.write_text(broken)
    # Hypothesis's explain phase (which parts of the failing example matter) takes seconds: not needed here.
    with open(package / "tests" / "conftest.py", "a") as conftest:
        conftest.write("\nfrom hypothesis import Phase, settings\n"
                       "settings.register_profile('no_explain', phases=[p for p in Phase if p != Phase.explain])\n")
    result = run_generated_tests(package_venv, package, "tests/test_schemas.py", "--hypothesis-seed=0",
                                 "--hypothesis-profile=no_explain")
    assert result.returncode == 1, result.stdout[-4000:]
    assert "FAILED tests/test_schemas.py::test_any_request_the_schema_accepts_gets_predictions" in result.stdout
    assert "is greater than the maximum of 1" in result.stdout
    assert "PASSED tests/test_schemas.py::test_every_prediction_matches_the_response_schema" in result.stdout


def test_modelbot_serve_answers_the_request_the_schema_gives_as_its_example(made, package_venv, tmp_path):
    package, _ = made
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    # The README's own command trains the model served locally.
    train = ("import pickle, probe_model as m; f = m.preprocess({}); "
             f"pickle.dump(m.train(f['train'], {{}}), open({str(model_dir / 'model.pkl')!r}, 'wb'))")
    subprocess.run([str(package_venv), "-c", train], check=True, cwd=package, timeout=120)
    schemas = json.loads(subprocess.run(
        [str(package_venv), "-c", "import json, probe_model as m; "
                                  "print(json.dumps([m.REQUEST_SCHEMA, m.RESPONSE_SCHEMA]))"],
        check=True, capture_output=True, text=True, cwd=package, timeout=60).stdout)
    request_schema, response_schema = schemas
    server = ServeProcess(base_env(MODELBOT_MODEL_MODULE="probe_model", SM_MODEL_DIR=str(model_dir),
                                   PYTHONPATH=str(package), SAGEMAKER_MODEL_SERVER_WORKERS="1"),
                          cwd=tmp_path, log=tmp_path / "serve.log", command="modelbot-serve")
    try:
        server.wait_ready()
        examples = request_schema["examples"]
        answer = requests.post(server.url + "/invocations", json={"instances": examples}, timeout=30)
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert len(predictions) == len(examples)
        for prediction in predictions:
            Draft202012Validator(response_schema).validate(prediction)
        bad = dict(examples[0], amount=-5)
        refused = requests.post(server.url + "/invocations", json={"instances": [bad]}, timeout=30)
        assert refused.status_code == 400 and "amount" in refused.text, refused.text
    finally:
        server.stop()


def test_the_dockerfile_is_modelbots_serving_dockerfile(made):
    package, _ = made
    assert (package / "Dockerfile").read_bytes() == (ROOT / "serving" / "Dockerfile").read_bytes(), (
        "bot/scaffold/template/project/Dockerfile must be a copy of serving/Dockerfile: copy it over")


def test_the_workflow_runs_the_tests_and_the_check(made):
    import yaml

    package, _ = made
    workflow = yaml.safe_load((package / ".github" / "workflows" / "model.yml").read_text())
    steps = workflow["jobs"]["test"]["steps"]
    commands = [s.get("run", "") for s in steps]
    assert "pip install -e '.[test]'" in commands and "pytest" in commands
    check = next(s for s in steps if s.get("run", "").startswith("modelbot pipeline check probe"))
    assert check["env"]["MODELS_FILE"] == "models.toml"


@pytest.mark.timeout(300)
def test_the_template_ships_in_modelbots_wheel(tmp_path):
    """Package data: every template file (dotfiles too) is in the wheel, so an installed modelbot can render it."""
    # Built from a copy: setuptools writes build/ beside the sources, and the working tree is shared.
    source = tmp_path / "source"
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in setup["packages"]["find"]["include"]:
        shutil.copytree(ROOT / package.rstrip("*"), source / package.rstrip("*"),
                        ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "wheel"), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "wheel").glob("modelbot-*.whl"))
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("bot/scaffold/template/")}
    template = ROOT / "bot" / "scaffold" / "template"
    expected = {f"bot/scaffold/template/{p.relative_to(template).as_posix()}" for p in template.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}
    assert expected - shipped == set(), "template files missing from the wheel: fix [tool.setuptools.package-data]"
    assert Path(ROOT / "bot" / "scaffold" / "template" / "project" / ".github").is_dir()
    # The generated package's CI runs `modelbot pipeline check` against an installed modelbot, which has no dags/
    # folder: the DAG files travel in the wheel where bot/pipelines/dag_file.py looks for them.
    dag_files = {f"bot/pipelines/dags/{p.name}" for p in (ROOT / "dags").glob("modelbot_*.py")}
    assert len(dag_files) == 4 and dag_files <= set(zipfile.ZipFile(wheel).namelist())
