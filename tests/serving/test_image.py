"""The real image: serving/Dockerfile built and run with Docker, and modelbot[serving] installed into a fresh venv.

Minutes of work, so it runs from `make serving-image-test` (MODELBOT_IMAGE_TEST=1) and only where a Docker daemon
answers; anywhere else it is skipped with the reason. The build is offline: the modelbot wheel is built from this
checkout and its dependencies downloaded beside it into the context's wheels/ (PIP_NO_INDEX=1), which is also how
an air-gapped build works. The base image is MODELBOT_IMAGE_BASE (e.g. python:3.11-slim where a registry is
reachable); by default one made here from Debian's packages with mmdebstrap (python3, python3-venv), as no
registry is reachable on this project's machines.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.docker_images import base_image, download_wheels, image_test_skip, sh
from tests.serving.conftest import ROOT, base_env

IMAGE = "modelbot-serving-test:churn"
BROKEN_IMAGE = "modelbot-serving-test:broken"

if (_skip := image_test_skip()) is not None:
    pytestmark = _skip


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    """modelbot's wheel from this checkout and every wheel its `serving` extra needs."""
    path = tmp_path_factory.mktemp("wheels")
    pip = [sys.executable, "-m", "pip"]
    sh(*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(path), str(ROOT))
    (wheel,) = path.glob("modelbot-*.whl")
    return download_wheels(path, f"{wheel}[serving]")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> tuple[Path, object]:
    sys.path.insert(0, str(ROOT / "dags" / "examples"))
    import churn_model

    frames = churn_model.preprocess({})
    model = churn_model.train(frames["train"], {})
    path = tmp_path_factory.mktemp("model")
    (path / "model.pkl").write_bytes(pickle.dumps(model))
    os.chmod(path, 0o755)
    return path, model


def context(root: Path, wheels: Path, module_source: str) -> Path:
    """A model's directory as the Dockerfile expects it: the module, requirements.txt, wheels/."""
    root.mkdir(parents=True)
    (root / "churn_model.py").write_text(module_source)
    (root / "requirements.txt").write_text("# what predict needs beyond modelbot[serving]: numpy and pandas, which "
                                           "it already has\nnumpy\n")
    shutil.copytree(wheels, root / "wheels")
    return root


def build(ctx: Path, tag: str, base: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh("docker", "build", "--force-rm", "--file", str(ROOT / "serving" / "Dockerfile"), "--tag", tag,
              "--build-arg", f"BASE_IMAGE={base}", "--build-arg", "MODEL_MODULE=churn_model",
              "--build-arg", "PIP_NO_INDEX=1", str(ctx), check=check, env={**os.environ, "DOCKER_BUILDKIT": "0"})


@pytest.fixture(scope="module")
def image(tmp_path_factory, wheels) -> str:
    tmp = tmp_path_factory.mktemp("image")
    ctx = context(tmp / "ctx", wheels, (ROOT / "dags" / "examples" / "churn_model.py").read_text())
    build(ctx, IMAGE, base_image(tmp))
    yield IMAGE
    sh("docker", "image", "rm", "--force", IMAGE, check=False)


def test_the_image_serves_the_model_as_sagemaker_runs_it(image, model_dir, capsys):
    """`docker run IMAGE serve` with the model mounted at /opt/ml/model, as SageMaker does."""
    path, model = model_dir
    size = int(sh("docker", "image", "inspect", "--format", "{{.Size}}", image).stdout)
    with capsys.disabled():
        print(f"\nthe churn_model image: {size / 1e6:.0f} MB")
    name = f"modelbot-serve-test-{os.getpid()}"
    sh("docker", "run", "--detach", "--name", name, "--publish", "127.0.0.1::8080",
       "--volume", f"{path}:/opt/ml/model:ro", image, "serve")
    try:
        port = sh("docker", "port", name, "8080").stdout.strip().splitlines()[0].rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/ping", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, sh("docker", "logs", name, check=False).stderr
            time.sleep(0.3)
        import churn_model
        import pandas as pd

        rows = [{"tenure_z": 0.4, "complaints_z": -1.0}, {"tenure_z": -2.0, "complaints_z": 1.5}]
        answer = requests.post(url + "/invocations", json={"instances": rows}, timeout=10,
                               headers={"X-Amzn-SageMaker-Inference-Id": "image-test-1"})
        assert answer.status_code == 200, answer.text
        expected = churn_model.predict(model, pd.DataFrame(rows, columns=churn_model.FEATURES)).tolist()
        assert answer.json()["predictions"] == pytest.approx(expected)
        csv = requests.post(url + "/invocations", data="0.4,-1.0\n-2.0,1.5\n", timeout=10,
                            headers={"Content-Type": "text/csv"})
        assert csv.json()["predictions"] == pytest.approx(expected)
        bad = requests.post(url + "/invocations", json={"instances": [{"tenure_z": 50}]}, timeout=10)
        assert bad.status_code == 400 and {e["field"] for e in bad.json()["errors"]} == {
            "instances[0].tenure_z", "instances[0].complaints_z"}
        logs = sh("docker", "logs", name).stderr
        assert "inference_id=image-test-1" in logs
        assert sh("docker", "exec", name, "id", "-u").stdout.strip() == "1000"  # not root
    finally:
        sh("docker", "rm", "--force", name, check=False)


def test_a_container_that_cannot_start_says_why_in_one_line_and_the_failure_file(image, tmp_path):
    empty, output = tmp_path / "model", tmp_path / "output"
    empty.mkdir()
    output.mkdir()
    os.chmod(output, 0o777)  # the image runs as uid 1000
    proc = sh("docker", "run", "--rm", "--volume", f"{empty}:/opt/ml/model:ro", "--volume", f"{output}:/opt/ml/output",
              image, "serve", check=False, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("modelbot-serve: no model.pkl in /opt/ml/model (SM_MODEL_DIR; it holds nothing)")
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert (output / "failure").read_text() == proc.stderr


def test_a_module_with_a_broken_schema_fails_the_build_with_its_reason(tmp_path, wheels):
    source = (ROOT / "dags" / "examples" / "churn_model.py").read_text()
    broken = source.replace('"type": "number", "minimum": -10', '"type": "numbr", "minimum": -10', 1)
    assert broken != source
    ctx = context(tmp_path / "ctx", wheels, broken)
    proc = build(ctx, BROKEN_IMAGE, base_image(tmp_path), check=False)
    sh("docker", "image", "rm", "--force", BROKEN_IMAGE, check=False)
    assert proc.returncode != 0
    assert "modelbot-serve: churn_model.REQUEST_SCHEMA is not a valid JSON Schema at properties.tenure_z.type" in (
        proc.stdout + proc.stderr)


def test_the_serving_extra_installs_alone_into_a_fresh_venv(tmp_path, wheels, capsys):
    """What `pip install "modelbot[serving]"` brings: the runtime works, and none of the app's packages came."""
    venv = tmp_path / "venv"
    sh(sys.executable, "-m", "venv", str(venv))
    (wheel,) = wheels.glob("modelbot-*.whl")
    sh(str(venv / "bin" / "pip"), "install", "--quiet", "--no-index", "--find-links", str(wheels), f"{wheel}[serving]",
       env=base_env())
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(
        sh(str(venv / "bin" / "pip"), "list", "--format", "json", env=base_env()).stdout)}
    assert {"modelbot", "pandas", "numpy", "gunicorn", "jsonschema-rs", "orjson"} <= installed
    assert installed.isdisjoint({"slack-sdk", "slack-bolt", "sqlalchemy", "matplotlib", "boto3", "botocore",
                                 "apache-airflow-client", "sagemaker-core", "psycopg", "alembic"}), installed
    assert (venv / "bin" / "modelbot-serve").exists() and (venv / "bin" / "serve").exists()
    check = sh(str(venv / "bin" / "serve"), "--check", cwd=ROOT / "dags" / "examples",
               env=base_env(MODELBOT_MODEL_MODULE="churn_model"))
    assert check.stdout.startswith("churn_model: predict, REQUEST_SCHEMA and RESPONSE_SCHEMA are fine")
    size = sh("du", "-sh", str(venv)).stdout.split()[0]
    with capsys.disabled():
        print(f"\nmodelbot[serving] in a fresh venv: {size} ({len(installed)} distributions: "
              f"{', '.join(sorted(installed))})")
