"""`pip install "modelbot[serving]"` gives the runtime and only its small set: no Slack, Airflow client, AWS SDK,
database or plotting in a model's image. (make serving-image-test installs it into a fresh venv and an image.)"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib

from tests.serving.conftest import ROOT, base_env

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# What the app needs and a model's image must not carry (import names).
APP_ONLY = ("slack_sdk", "slack_bolt", "sqlalchemy", "alembic", "matplotlib", "boto3", "botocore", "sagemaker",
            "airflow_client", "psycopg", "pydantic_settings", "prometheus_client", "ijson", "bot", "handlers", "jobs",
            "charts", "sandbox")
# The distribution of each import name the runtime may use, beside the standard library.
RUNTIME_IMPORTS = {"serving": "modelbot", "pandas": "pandas", "numpy": "numpy", "gunicorn": "gunicorn",
                   "jsonschema_rs": "jsonschema-rs", "orjson": "orjson"}


def requirement_name(spec: str) -> str:
    return re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0].lower()


def test_the_core_dependencies_are_the_runtimes_and_the_app_has_its_extra():
    project = PYPROJECT["project"]
    core = {requirement_name(r) for r in project["dependencies"]}
    assert core == set(RUNTIME_IMPORTS.values()) - {"modelbot"}
    extras = project["optional-dependencies"]
    assert "serving" in extras and not {requirement_name(r) for r in extras["serving"]} - core
    app = {requirement_name(r) for r in extras["app"]}
    assert {"slack-bolt", "slack-sdk", "boto3", "sqlalchemy", "matplotlib", "apache-airflow-client"} <= app
    assert project["scripts"]["modelbot-serve"] == project["scripts"]["serve"] == "serving.cli:entry"
    setuptools = PYPROJECT["tool"]["setuptools"]
    assert "serving*" in setuptools["packages"]["find"]["include"]
    assert "Dockerfile" in setuptools["package-data"]["serving"]


def test_the_runtime_imports_only_the_standard_library_and_its_dependencies():
    """Read from the source, so an import of anything else fails here, not in someone's image."""
    allowed = set(sys.stdlib_module_names) | set(RUNTIME_IMPORTS)
    found = {}
    for path in (ROOT / "serving").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                if name.split(".")[0] not in allowed:
                    found[f"{path.relative_to(ROOT)}:{node.lineno}"] = name
    assert found == {}


def test_importing_the_runtime_loads_no_app_dependency():
    code = ("import json, sys\n"
            "import serving, serving.cli, serving.app, serving.server, serving.loading, serving.payloads\n"
            "print(json.dumps(sorted(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=base_env(), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = {name.split(".")[0] for name in json.loads(proc.stdout)}
    assert {"serving", "pandas", "gunicorn", "jsonschema_rs", "orjson"} <= loaded
    assert loaded.isdisjoint(APP_ONLY), sorted(loaded & set(APP_ONLY))
