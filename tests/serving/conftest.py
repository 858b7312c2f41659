"""Serving tests: model modules as a data scientist writes them (tests/serving/models/), their models on disk,
the WSGI app called in process, and modelbot-serve started as a process the way the image starts it."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.harness import ROOT, free_port

MODELS = Path(__file__).resolve().parent / "models"
VENV_BIN = Path(sys.executable).parent
SCALE = 0.5  # tabular's model


@pytest.fixture(scope="session", autouse=True)
def model_modules_importable():
    sys.path.insert(0, str(MODELS))
    yield
    sys.path.remove(str(MODELS))


@pytest.fixture(scope="session")
def tabular_model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tabular-model")
    (path / "model.pkl").write_bytes(pickle.dumps({"scale": SCALE}))
    return path


@pytest.fixture(scope="session")
def records_model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("records-model")
    (path / "model.json").write_text(json.dumps({"max_age": 100}))
    return path


class Answer:
    def __init__(self, status: str, headers: list, body: bytes):
        self.status = status
        self.code = int(status.split()[0])
        self.headers = dict(headers)
        self.body = body

    def json(self):
        return json.loads(self.body)


def call(app, method: str, path: str, body: bytes | str | dict = b"", content_type: str | None = "application/json",
         headers: dict | None = None, chunked: bool = False) -> Answer:
    """The WSGI app called as gunicorn calls it."""
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO(body)}
    if not chunked:
        environ["CONTENT_LENGTH"] = str(len(body))
    if content_type is not None:
        environ["CONTENT_TYPE"] = content_type
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    seen = {}

    def start_response(status, response_headers, exc_info=None):
        seen["status"], seen["headers"] = status, response_headers

    out = b"".join(app(environ, start_response))
    return Answer(seen["status"], seen["headers"], out)


class ServeProcess:
    """`serve` (the console script the image puts on PATH) as a process, its output in a log file."""

    def __init__(self, env: dict, cwd: Path, log: Path, command: str = "serve"):
        self.port = int(env.get("SAGEMAKER_BIND_TO_PORT") or free_port())
        self.env = {**env, "SAGEMAKER_BIND_TO_PORT": str(self.port)}
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc = subprocess.Popen([str(VENV_BIN / command)], cwd=cwd, env=self.env, stdout=open(log, "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> "ServeProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if requests.get(self.url + "/ping", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"serve did not answer /ping in {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)


def base_env(**extra: str) -> dict:
    """The environment without this machine's Python settings, so the process sees only what the image gives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MODELBOT_", "SAGEMAKER_", "SM_"))}
    env.update(extra)
    return env


__all__ = ["Answer", "MODELS", "ROOT", "SCALE", "ServeProcess", "base_env", "call"]
