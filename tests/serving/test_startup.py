"""What stops modelbot-serve from starting: one line on stderr naming what is wrong, exit status 1, the same line in
SageMaker's failure file when its directory exists; never a server answering 500 to every request.

Every case runs `serving.cli.main` in process (the module imported is fresh for each); three of them, one per
stage (settings, the module, the model), also run as real `serve` processes, the console script the image runs.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from serving import cli
from tests.serving.conftest import MODELS, VENV_BIN, base_env

GOOD = (MODELS / "tabular.py").read_text()
SCHEMAS = 'REQUEST_SCHEMA = {"type": "object"}\nRESPONSE_SCHEMA = {"type": "number"}\n'
PREDICT = "def predict(model, features):\n    return [0.5] * len(features)\n"


@dataclass(frozen=True)
class Case:
    module: str | None  # the module's source (None: MODELBOT_MODEL_MODULE unset)
    model: bytes | None  # model.pkl's bytes (None: no model.pkl)
    expected: str  # the line, after "modelbot-serve: "
    env: tuple = ()
    name: str = "case_module"


CASES = {
    "module not set": Case(None, b"", "MODELBOT_MODEL_MODULE is not set: set it to the name of your model's module"),
    "module not found": Case(GOOD, pickle.dumps({"scale": 1}), "cannot import no_such_module (MODELBOT_MODEL_MODULE): "
                             "no module of that name on the Python path", (("MODELBOT_MODEL_MODULE", "no_such_module"),)),
    "module file given": Case(GOOD, None, "MODELBOT_MODEL_MODULE=case_module.py is a file; it takes the module's "
                              "import name (case_module)", (("MODELBOT_MODEL_MODULE", "case_module.py"),)),
    "dependency missing": Case(SCHEMAS + "import sklearn_is_not_here\n" + PREDICT, None,
                               "importing case_module failed: case_module imports sklearn_is_not_here, which is not "
                               "installed (case_module.py, line 3): add it to the model's requirements"),
    "module raises": Case(SCHEMAS + PREDICT + "THRESHOLD = 1 / 0\n", None,
                          "importing case_module raised ZeroDivisionError: division by zero (case_module.py, line 5)"),
    "module exits": Case(SCHEMAS + PREDICT + "import sys\nsys.exit(2)\n", None,
                         "importing case_module called sys.exit(2) (case_module.py, line 6): code that runs the module "
                         'as a script belongs under `if __name__ == "__main__":`'),
    "no predict": Case(SCHEMAS, None, "case_module has no predict: define predict(model, features) -> one "
                       "prediction per row"),
    "predict takes one argument": Case(SCHEMAS + "def predict(features):\n    return features\n", None,
                                       "case_module.predict(features) cannot be called as predict(model, features)"),
    "no request schema": Case('RESPONSE_SCHEMA = {"type": "number"}\n' + PREDICT, None,
                              "case_module has no REQUEST_SCHEMA: define REQUEST_SCHEMA, the JSON Schema of one "
                              "request instance, an object"),
    "no response schema": Case('REQUEST_SCHEMA = {"type": "object"}\n' + PREDICT, None,
                               "case_module has no RESPONSE_SCHEMA"),
    "invalid schema": Case('REQUEST_SCHEMA = {"type": "object", "properties": {"age": {"type": "integr"}}}\n'
                           'RESPONSE_SCHEMA = {"type": "number"}\n' + PREDICT, None,
                           "case_module.REQUEST_SCHEMA is not a valid JSON Schema at properties.age.type: \"integr\" is not a "
                           "JSON type (one of object, array, string, number, integer, boolean, null)"),
    "schema of a list": Case('REQUEST_SCHEMA = {"type": "array"}\nRESPONSE_SCHEMA = {"type": "number"}\n' + PREDICT,
                             None, "case_module.REQUEST_SCHEMA says type 'array', but it describes ONE instance"),
    "pydantic class as schema": Case("from pydantic import BaseModel\nclass Row(BaseModel):\n    age: int\n"
                                     "REQUEST_SCHEMA = Row\nRESPONSE_SCHEMA = {}\n" + PREDICT, None,
                                     "case_module.REQUEST_SCHEMA must be a JSON Schema (a dict); it is a class (Row): "
                                     "write REQUEST_SCHEMA = Row.model_json_schema()"),
    "features outside the schema": Case(GOOD.replace('FEATURES = ["tenure_months"', 'FEATURES = ["age", '
                                                     '"tenure_months"'), None,
                                        "case_module.FEATURES names age, which REQUEST_SCHEMA does not define"),
    "no model.pkl": Case(GOOD, None, "no model.pkl in {model} (SM_MODEL_DIR; it holds nothing): the pipeline's "
                         "model.tar.gz has model.pkl"),
    "model.pkl unreadable": Case(GOOD, b"this is not a pickle", "{model}/model.pkl cannot be unpickled: "
                                 "UnpicklingError"),
    "model needs a package": Case(GOOD, b"\x80\x04\x95\x1b\x00\x00\x00\x00\x00\x00\x00\x8c\x0fsklearn_missing"
                                  b"\x94\x8c\x03Foo\x94\x93\x94.", "{model}/model.pkl cannot be unpickled: it needs "
                                  "the module sklearn_missing, which is not installed here"),
    "load raises": Case(SCHEMAS + PREDICT + "def load(model_dir):\n    return open(model_dir + '/weights.bin').read()\n",
                        None, "case_module.load('{model}') raised FileNotFoundError: [Errno 2] No such file or "
                        "directory: '{model}/weights.bin' (case_module.py, line 6)"),
    "bad port": Case(GOOD, b"", "SAGEMAKER_BIND_TO_PORT=http is not a whole number from 1 to 65535",
                     (("SAGEMAKER_BIND_TO_PORT", "http"),)),
}


@dataclass
class Outcome:
    returncode: int
    stderr: str
    model: Path
    failure: str | None


def lay_out(home: Path, case: Case, module_name: str) -> tuple[Path, dict]:
    """The image's layout for one case: code/, model/, output/; and its environment."""
    code, model, output = home / "code", home / "model", home / "output"
    for d in (code, model, output):
        d.mkdir(parents=True)
    if case.module is not None:
        (code / f"{module_name}.py").write_text(case.module)
    if case.model:
        (model / "model.pkl").write_bytes(case.model)
    env = {"PYTHONPATH": str(code), "SM_MODEL_DIR": str(model), "MODELBOT_SERVE_FAILURE_FILE": str(output / "failure"),
           "SAGEMAKER_BIND_TO_PORT": "1"}  # were a case to start, binding port 1 would fail it loudly
    if case.module is not None:
        env["MODELBOT_MODEL_MODULE"] = module_name
    env.update({k: v.replace(case.name, module_name) for k, v in case.env})
    return model, env


def failure(home: Path) -> str | None:
    path = home / "output" / "failure"
    return path.read_text() if path.exists() else None


def expected_line(case: Case, model: Path, module_name: str) -> str:
    text = case.expected.format(model=model).replace(case.name, module_name)
    return "modelbot-serve: " + text


@pytest.mark.parametrize("name", list(CASES))
def test_a_start_up_failure_is_one_line_naming_what_is_wrong(name, tmp_path, monkeypatch, capsys):
    case = CASES[name]
    module_name = "case_" + name.replace(" ", "_").replace(".", "_")  # a fresh import for each case
    model, env = lay_out(tmp_path, case, module_name)
    for var in ("MODELBOT_MODEL_MODULE", "SM_MODEL_DIR", "SAGEMAKER_BIND_TO_PORT"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        if var != "PYTHONPATH":
            monkeypatch.setenv(var, value)
    monkeypatch.syspath_prepend(env["PYTHONPATH"])
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, module_name, raising=False)
    assert cli.main([]) == 1
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(expected_line(case, model, module_name)), f"\n{lines[0]}\n{expected_line(case, model, module_name)}"
    assert failure(tmp_path) == lines[0] + "\n"  # SageMaker's failure reason


def run_serve(home: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "serve"), *args], cwd=home, env=base_env(**env), capture_output=True,
                          text=True, timeout=60)


def test_as_processes_each_stage_exits_1_with_one_line(tmp_path):
    """One case per stage, as the image runs them: settings, the module's contract, the model."""
    names = ["module not set", "invalid schema", "model.pkl unreadable"]
    homes = {name: tmp_path / name.replace(" ", "-") for name in names}
    laid = {name: lay_out(homes[name], CASES[name], CASES[name].name) for name in names}
    with ThreadPoolExecutor(3) as pool:
        runs = dict(zip(names, pool.map(lambda n: run_serve(homes[n], laid[n][1]), names)))
    for name, proc in runs.items():
        line = expected_line(CASES[name], laid[name][0], CASES[name].name)
        assert proc.returncode == 1, (name, proc.stderr)
        assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith(line), (name, proc.stderr)
        assert failure(homes[name]) == proc.stderr


def test_no_failure_file_where_its_directory_does_not_exist(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MODELBOT_MODEL_MODULE", raising=False)
    monkeypatch.setenv("MODELBOT_SERVE_FAILURE_FILE", str(tmp_path / "no-such-dir" / "failure"))
    assert cli.main([]) == 1
    assert capsys.readouterr().err.startswith("modelbot-serve: MODELBOT_MODEL_MODULE is not set")
    assert not (tmp_path / "no-such-dir").exists()


def test_check_reports_the_module_without_a_model(tmp_path, monkeypatch, capsys):
    """`serve --check` (the Dockerfile's last build step): the module and schemas, no model needed."""
    (tmp_path / "check_me.py").write_text(GOOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MODELBOT_MODEL_MODULE", "check_me")
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path / "none"))
    assert cli.main(["--check"]) == 0
    assert capsys.readouterr().out.strip() == (
        "check_me: predict, REQUEST_SCHEMA and RESPONSE_SCHEMA are fine; FEATURES: tenure_months, monthly_spend, "
        "plan; the model comes from model.pkl")
