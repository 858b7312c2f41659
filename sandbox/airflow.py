"""A real Airflow 3.3.2: installed once into .airflow-venv, started with `airflow standalone`.

Used by the sandbox (`make run` without credentials) and by the tests. The venv is pinned by
airflow-constraints-3.3.2.txt and reused while its marker matches (version and the constraints file's hash),
so only the first run on a machine pays for the install. Airflow runs in its own session (setsid); stopping
kills the whole process group.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW_VERSION = "3.3.2"
VENV = Path(os.environ.get("MODELBOT_AIRFLOW_VENV", ROOT / ".airflow-venv"))
CONSTRAINTS = ROOT / "airflow-constraints-3.3.2.txt"
JWT_SECRET = "modelbot-tests-jwt-secret-0123456789abcdef"
DAG_IDS = ("churn_lifecycle", "fraud_lifecycle")
# About how many distributions the pinned install brings in; only used to show progress.
EXPECTED_PACKAGES = 190


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aws_env(moto_url: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def _marker() -> str:
    digest = hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()[:16]
    return f"apache-airflow=={AIRFLOW_VERSION} constraints={digest} python={sys.version_info[0]}.{sys.version_info[1]}\n"


def venv_ready(venv: Path = VENV) -> bool:
    marker = venv / ".modelbot-airflow"
    return marker.exists() and marker.read_text() == _marker() and (venv / "bin" / "airflow").exists()


def _lock_path(venv: Path) -> Path:
    return Path(tempfile.gettempdir()) / f"modelbot-airflow-venv-{hashlib.sha1(str(venv).encode()).hexdigest()[:8]}.lock"


def ensure_venv(progress: Callable[[str], None] | None = None) -> Path:
    """Installs Airflow into VENV unless the same version from the same pins is already there.

    progress(line) is called with short human lines while pip works (the install takes minutes)."""
    if venv_ready(VENV):
        return VENV
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(_lock_path(VENV), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs at once must not install over each other
        if venv_ready(VENV):
            return VENV
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=120)
        started = time.monotonic()
        command = [str(VENV / "bin" / "pip"), "install", "--disable-pip-version-check", "--progress-bar", "off",
                   f"apache-airflow=={AIRFLOW_VERSION}", "boto3", "-c", str(CONSTRAINTS)]
        output: list[str] = []
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        collected, last_report = 0, 0.0
        deadline = started + 900
        for line in proc.stdout:
            output.append(line)
            if line.startswith("Collecting "):
                collected += 1
            now = time.monotonic()
            if progress and now - last_report >= 5:
                last_report = now
                phase = ("installing" if line.startswith(("Installing", "Successfully")) else
                         f"fetched {collected}/~{EXPECTED_PACKAGES} packages")
                progress(f"Airflow {AIRFLOW_VERSION}: {phase} ({now - started:.0f}s)")
            if now > deadline:
                proc.kill()
                break
        code = proc.wait()
        if code != 0:
            raise RuntimeError(f"installing Airflow {AIRFLOW_VERSION} into {VENV} failed (pip exit {code}):\n"
                               + "".join(output)[-4000:])
        (VENV / ".modelbot-airflow").write_text(_marker())
        message = f"Installed Airflow {AIRFLOW_VERSION} into {VENV} in {time.monotonic() - started:.0f}s"
        (progress or (lambda m: print("\n" + m, file=sys.stderr)))(message)
    return VENV


def worker_pins() -> list[str]:
    """What the generated pipeline's tasks need besides Airflow and boto3 (docs/pipelines.md): pandas and numpy,
    at the versions modelbot itself is tested with."""
    return [line.strip() for line in (ROOT / "constraints.txt").read_text().splitlines()
            if line.startswith(("pandas==", "numpy=="))]


def ensure_pipeline_packages(venv: Path = VENV, progress: Callable[[str], None] | None = None) -> None:
    """pandas and numpy in the Airflow venv, for the generated pipeline's tasks; once (a marker keeps the pins)."""
    marker = venv / ".modelbot-pipeline-packages"
    pins = worker_pins()
    wanted = " ".join(sorted(pins)) + "\n"
    if marker.exists() and marker.read_text() == wanted:
        return
    with open(_lock_path(venv), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs at once must not install over each other
        if marker.exists() and marker.read_text() == wanted:
            return
        if progress:
            progress(f"Adding {', '.join(pins)} to {venv} (the pipeline's tasks need them; once)")
        result = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                                 *pins, "-c", str(CONSTRAINTS)], capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise RuntimeError(f"installing {', '.join(pins)} into {venv} failed (pip exit {result.returncode}):\n"
                               + (result.stdout + result.stderr)[-4000:])
        marker.write_text(wanted)


def _base_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "AWS_", "PYTHON", "VIRTUAL_ENV", "SLACK_"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _status(url: str, method: str = "GET", body: dict | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


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
            if _status(self.url + "/api/v2/monitor/health") == 200:
                missing = [d for d in missing if not self._dag_visible(d)]
                if not missing:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"Airflow at {self.url} not ready within {timeout}s (DAGs missing: {missing}):\n{self.log()}")

    def _dag_visible(self, dag_id: str) -> bool:
        return _status(f"{self.url}/api/v2/dags/{dag_id}") == 200

    def unpause(self, dag_id: str) -> bool:
        return _status(f"{self.url}/api/v2/dags/{dag_id}", "PATCH", {"is_paused": False}) == 200

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


def start_standalone(venv: Path, workdir: Path, moto_url: str, extra_env: dict[str, str] | None = None,
                     port: int | None = None, dag_files: list[Path] | None = None) -> AirflowProcess:
    """`airflow standalone` with `dag_files` (default: the example DAG dags/model_lifecycle.py) in its DAGs folder."""
    home, dags = workdir / "home", workdir / "dags"
    home.mkdir(parents=True, exist_ok=True)
    dags.mkdir(parents=True, exist_ok=True)
    for path in dag_files or [ROOT / "dags" / "model_lifecycle.py"]:
        shutil.copy(path, dags / Path(path).name)
    port = port or free_port()
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
