"""A real Airflow 3.3.2 for the tests: installed once into .airflow-venv, started with `airflow standalone`.

The venv is pinned by airflow-constraints-3.3.2.txt and reused while its marker matches (version and the
constraints file's hash), so only the first run on a machine pays for the install (about 25 s here).
Airflow runs in its own session (setsid); stopping kills the whole process group.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.harness import ROOT, aws_env, free_port

AIRFLOW_VERSION = "3.3.2"
VENV = Path(os.environ.get("MODELBOT_AIRFLOW_VENV", ROOT / ".airflow-venv"))
CONSTRAINTS = ROOT / "airflow-constraints-3.3.2.txt"
JWT_SECRET = "modelbot-tests-jwt-secret-0123456789abcdef"
DAG_IDS = ("churn_lifecycle", "fraud_lifecycle")


def _marker() -> str:
    digest = hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()[:16]
    return f"apache-airflow=={AIRFLOW_VERSION} constraints={digest} python={sys.version_info[0]}.{sys.version_info[1]}\n"


def ensure_venv() -> Path:
    """Installs Airflow into VENV unless the same version from the same pins is already there."""
    marker = VENV / ".modelbot-airflow"
    if marker.exists() and marker.read_text() == _marker() and (VENV / "bin" / "airflow").exists():
        return VENV
    VENV.parent.mkdir(parents=True, exist_ok=True)
    lock_path = Path(tempfile.gettempdir()) / f"modelbot-airflow-venv-{hashlib.sha1(str(VENV).encode()).hexdigest()[:8]}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once must not install over each other
        if marker.exists() and marker.read_text() == _marker():
            return VENV
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=120)
        started = time.monotonic()
        result = subprocess.run(
            [str(VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
             f"apache-airflow=={AIRFLOW_VERSION}", "boto3", "-c", str(CONSTRAINTS)],
            capture_output=True, text=True, timeout=900,
        )
        if result.returncode != 0:
            raise RuntimeError(f"installing Airflow {AIRFLOW_VERSION} into {VENV} failed:\n{result.stderr[-4000:]}")
        marker.write_text(_marker())
        print(f"\nInstalled Airflow {AIRFLOW_VERSION} into {VENV} in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return VENV


def _base_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "AWS_", "PYTHON", "VIRTUAL_ENV", "SLACK_"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@dataclass
class AirflowProcess:
    url: str
    home: Path
    dags: Path
    log_path: Path
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    extra: dict = field(default_factory=dict)

    def log(self, tail: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.exists() else ""

    def wait_ready(self, timeout: float, dag_ids: tuple[str, ...] = ()) -> None:
        deadline = time.monotonic() + timeout
        missing = list(dag_ids)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Airflow exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/api/v2/monitor/health", timeout=2).status_code == 200:
                    missing = [d for d in missing if not self._dag_visible(d)]
                    if not missing:
                        return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"Airflow at {self.url} not ready within {timeout}s (DAGs missing: {missing}):\n{self.log()}")

    def _dag_visible(self, dag_id: str) -> bool:
        try:
            return requests.get(f"{self.url}/api/v2/dags/{dag_id}", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        # The group outlives its leader (the scheduler, the api-server's workers): kill what is left of it.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None


def start_standalone(venv: Path, workdir: Path, moto_url: str, extra_env: dict[str, str] | None = None) -> AirflowProcess:
    home, dags = workdir / "home", workdir / "dags"
    home.mkdir(parents=True, exist_ok=True)
    dags.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dags" / "model_lifecycle.py", dags / "model_lifecycle.py")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = _base_env(venv)
    env.update(aws_env(moto_url))
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{url}/execution/",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__API_AUTH__JWT_SECRET=JWT_SECRET,
        DIAGNOSTICS_BUCKET="modelbot-diagnostics",
    )
    env.update(extra_env or {})
    log_path = workdir / "standalone.log"
    airflow = AirflowProcess(url=url, home=home, dags=dags, log_path=log_path, env=env)
    with open(log_path, "wb") as log:
        airflow.proc = subprocess.Popen(
            [str(venv / "bin" / "airflow"), "standalone"], cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return airflow


def start_secured_api(standalone: AirflowProcess, workdir: Path, *, username: str, password: str,
                      jwt_seconds: int) -> AirflowProcess:
    """A second api-server on the same Airflow database with the all-admins shortcut off: real logins only."""
    workdir.mkdir(parents=True, exist_ok=True)
    passwords = workdir / "passwords.json"
    passwords.write_text(json.dumps({username: password}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(standalone.env)
    env.update(
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{username}:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
        AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME=str(jwt_seconds),
        AIRFLOW__API_AUTH__JWT_LEEWAY="0",
    )
    log_path = workdir / "api-server.log"
    api = AirflowProcess(url=url, home=standalone.home, dags=standalone.dags, log_path=log_path, env=env)
    with open(log_path, "wb") as log:
        api.proc = subprocess.Popen(
            [str(standalone.env["PATH"].split(os.pathsep)[0] + "/airflow"), "api-server", "--port", str(port)],
            cwd=standalone.home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    return api
