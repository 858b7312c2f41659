"""SageMaker hosting in the sandbox: every variant of every endpoint in moto runs `modelbot-serve` with that
variant's model, and InvokeEndpoint (sandbox/runtime.py) routes requests to them.

moto keeps endpoints, configs and models but runs nothing. This process watches them (every second) and, for
each (endpoint, variant, model), does what SageMaker does with a model's container:

- reads the model: `ModelDataUrl` (model.tar.gz in moto's S3) unpacked into the container's model directory
  (SM_MODEL_DIR), as SageMaker unpacks it into /opt/ml/model;
- starts the image's server, `modelbot-serve` (`python -m serving` from this checkout): the image is not pulled;
  SANDBOX_IMAGES gives each sandbox image's environment (MODELBOT_MODEL_MODULE, as the serving Dockerfile sets it
  from MODEL_MODULE) and its code (sandbox/models/, the image's /opt/ml/code); the model's own container
  `Environment` is laid over it, as SageMaker does;
- waits for `GET /ping`; a server that exits first is the variant's failure, with the one line modelbot-serve
  wrote to its failure file (SageMaker's FailureReason);
- stops the server once the variant has left the endpoint (after a grace: the UpdateEndpoint fake recreates the
  endpoint, so it is briefly missing).

The servers are this process's children in its process group: stopping the sandbox stops them with it.
Run: python -m sandbox.hosting --port N --workdir DIR (AWS_* in the environment point at moto).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger("sandbox.hosting")

HERE = Path(__file__).resolve().parent
CODE_DIR = HERE / "models"  # what the sandbox's images hold in /opt/ml/code
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
# image -> the environment its Dockerfile sets (serving/Dockerfile: MODELBOT_MODEL_MODULE from MODEL_MODULE).
SANDBOX_IMAGES = {
    f"{ECR}/churn-serving:sandbox": {"MODELBOT_MODEL_MODULE": "churn_model"},
    f"{ECR}/fraud-serving:sandbox": {"MODELBOT_MODEL_MODULE": "fraud_model"},
}
POLL_SECONDS = 1.0
GONE_GRACE_SECONDS = 6.0  # a variant missing this long has left its endpoint
READY_TIMEOUT_SECONDS = 90.0  # for /ping, from the server's start (a loaded machine imports pandas slowly)


@dataclass
class Served:
    """What one variant's server has answered, for the page."""

    invocations: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    last_error: dict | None = None  # {"status", "message", "at"}

    def count(self, status: int, body: bytes) -> None:
        self.invocations += 1
        if 400 <= status < 500:
            self.errors_4xx += 1
        elif status >= 500:
            self.errors_5xx += 1
        if status >= 400:
            try:
                message = json.loads(body)
                text = message.get("error", "") + "".join(
                    f"; {e.get('field')}: {e.get('message')}" for e in (message.get("errors") or [])[:3])
            except (ValueError, AttributeError):
                text = body[:300].decode(errors="replace")
            self.last_error = {"status": status, "message": text[:400], "at": time.time()}


@dataclass
class Container:
    """One variant's modelbot-serve."""

    endpoint: str
    variant: str
    model: str
    image: str
    model_data_url: str | None
    environment: dict[str, str]
    directory: Path
    state: str = "starting"  # starting | serving | failed | stopped
    failure: str | None = None
    port: int | None = None
    proc: subprocess.Popen | None = None
    module: str | None = None
    started_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    served: Served = field(default_factory=Served)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def describe(self) -> dict:
        return {"state": self.state, "failure": self.failure, "model": self.model, "image": self.image,
                "module": self.module, "url": self.url if self.port else None,
                "pid": self.proc.pid if self.proc else None,
                "ready_seconds": round(self.ready_at - self.started_at, 1) if self.ready_at else None,
                "invocations": self.served.invocations, "errors_4xx": self.served.errors_4xx,
                "errors_5xx": self.served.errors_5xx, "last_error": self.served.last_error}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unpack(tar: tarfile.TarFile, into: Path) -> None:
    """model.tar.gz into the model directory, refusing members that would land outside it."""
    if hasattr(tarfile, "data_filter"):  # Python 3.11.4 and later
        tar.extractall(into, filter="data")
        return
    root = into.resolve()
    for member in tar.getmembers():
        if not (root / member.name).resolve().is_relative_to(root) or member.issym() or member.islnk():
            raise tarfile.TarError(f"{member.name!r} would be unpacked outside the model directory")
    tar.extractall(into)


def _ping(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/ping", timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


class Hosting:
    """The watcher and the containers. `endpoints()` is what the runtime routes by."""

    def __init__(self, workdir: Path, region: str = "us-east-1", python: str = sys.executable,
                 poll_seconds: float = POLL_SECONDS, gone_grace: float = GONE_GRACE_SECONDS):
        self.workdir, self.region, self.python = Path(workdir), region, python
        self.poll_seconds, self.gone_grace = poll_seconds, gone_grace
        boto = Config(connect_timeout=3, read_timeout=15, retries={"max_attempts": 2})
        self.sm = boto3.client("sagemaker", region_name=region, config=boto)
        self.s3 = boto3.client("s3", region_name=region, config=boto)
        self.lock = threading.RLock()
        self.containers: dict[tuple[str, str], Container] = {}
        self._endpoints: dict[str, dict] = {}  # name -> {"status", "config", "capture", "variants": {name: weight}}
        self._seen: dict[str, float] = {}  # endpoint or endpoint/variant -> last time seen
        self._configs: dict[str, dict] = {}
        self._models: dict[str, dict] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- what the runtime and the page read ----
    def endpoint(self, name: str) -> dict | None:
        with self.lock:
            return self._endpoints.get(name)

    def container(self, endpoint: str, variant: str) -> Container | None:
        with self.lock:
            return self.containers.get((endpoint, variant))

    def choose_variant(self, endpoint: str, rng: random.Random = random) -> str | None:
        """A variant by the endpoint's current weights, as SageMaker splits traffic; None when none has any."""
        found = self.endpoint(endpoint)
        weights = {v: w for v, w in (found or {}).get("variants", {}).items() if w > 0}
        if not weights:
            return None
        names = sorted(weights)
        return rng.choices(names, weights=[weights[n] for n in names])[0]

    def state(self) -> dict:
        with self.lock:
            out = {}
            for name, e in sorted(self._endpoints.items()):
                out[name] = {"status": e["status"], "config": e["config"], "capture": e["capture"],
                             "variants": [{"name": v, "weight": w,
                                           **(self.containers[(name, v)].describe()
                                              if (name, v) in self.containers else {"state": "missing"})}
                                          for v, w in sorted(e["variants"].items())]}
            return {"endpoints": out, "errors": self.errors[-5:]}

    def _error(self, message: str) -> None:
        with self.lock:
            self.errors = (self.errors + [f"{time.strftime('%H:%M:%S')} {message}"])[-20:]
        log.warning(message)

    # ---- watching moto ----
    def _config(self, name: str) -> dict:
        if name not in self._configs:
            self._configs[name] = self.sm.describe_endpoint_config(EndpointConfigName=name)
        return self._configs[name]

    def _model(self, name: str) -> dict:
        if name not in self._models:
            self._models[name] = self.sm.describe_model(ModelName=name)
        return self._models[name]

    def poll(self) -> None:
        """One look at every endpoint: start what is new, stop what has been gone past the grace."""
        now = time.monotonic()
        try:
            names = [e["EndpointName"] for page in self.sm.get_paginator("list_endpoints").paginate()
                     for e in page["Endpoints"]]
        except (BotoCoreError, ClientError) as exc:
            self._error(f"SageMaker ListEndpoints failed: {exc}; nothing was started or stopped")
            return
        wanted: dict[tuple[str, str], dict] = {}
        seen: dict[str, dict] = {}
        for name in names:
            try:
                described = self.sm.describe_endpoint(EndpointName=name)
                config = self._config(described["EndpointConfigName"])
                variants = {}
                for pv in config["ProductionVariants"]:
                    container = self._model(pv["ModelName"]).get("PrimaryContainer") or {}
                    wanted[(name, pv["VariantName"])] = {"model": pv["ModelName"], "container": container}
                weights = {v["VariantName"]: float(v.get("CurrentWeight", 0.0))
                           for v in described.get("ProductionVariants", [])}
                for pv in config["ProductionVariants"]:
                    variants[pv["VariantName"]] = weights.get(pv["VariantName"], 0.0)
                seen[name] = {"status": described.get("EndpointStatus"), "config": described["EndpointConfigName"],
                              "capture": config.get("DataCaptureConfig"), "variants": variants}
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ValidationException":  # gone while we looked
                    self._error(f"SageMaker describe of endpoint {name} failed: {exc}")
            except BotoCoreError as exc:
                self._error(f"SageMaker describe of endpoint {name} failed: {exc}")
        leaving: list[Container] = []
        with self.lock:
            for name, e in seen.items():
                self._endpoints[name] = e
                self._seen[name] = now
            for name in [n for n in self._endpoints if now - self._seen.get(n, now) > self.gone_grace]:
                del self._endpoints[name]
            for key, spec in wanted.items():
                self._seen["/".join(key)] = now
                current = self.containers.get(key)
                if current is not None and current.model == spec["model"]:
                    continue
                if current is not None:  # the variant now serves another model: a new container
                    leaving.append(current)
                self._start_container(key, spec)
            for key, current in list(self.containers.items()):
                if key not in wanted and now - self._seen.get("/".join(key), now) > self.gone_grace:
                    leaving.append(current)
                    del self.containers[key]
        for c in leaving:  # outside the lock: the runtime goes on routing while a server shuts down
            self._stop_container(c)

    # ---- containers ----
    def _start_container(self, key: tuple[str, str], spec: dict) -> None:
        endpoint, variant = key
        container = spec["container"]
        image = container.get("Image", "")
        environment = {**SANDBOX_IMAGES.get(image, {}), **(container.get("Environment") or {})}
        directory = self.workdir / endpoint / variant / spec["model"]
        c = Container(endpoint, variant, spec["model"], image, container.get("ModelDataUrl"), environment, directory)
        self.containers[key] = c
        threading.Thread(target=self._launch, args=(c,), name=f"start-{endpoint}-{variant}", daemon=True).start()

    def _fail(self, c: Container, reason: str) -> None:
        with c.lock:
            c.state, c.failure = "failed", " ".join(reason.split())[:1000]
        self._error(f"{c.endpoint} {c.variant}: {c.failure}")

    def _launch(self, c: Container) -> None:
        if c.image not in SANDBOX_IMAGES:
            self._fail(c, f"CannotStartContainerError: the image {c.image!r} is not one of the sandbox's images "
                          f"({', '.join(sorted(SANDBOX_IMAGES))}); nothing is pulled here")
            return
        model_dir = c.directory / "model"
        try:
            model_dir.mkdir(parents=True, exist_ok=True)
            if c.model_data_url:
                bucket, _, key = c.model_data_url.removeprefix("s3://").partition("/")
                body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
                    _unpack(tar, model_dir)
        except (BotoCoreError, ClientError, tarfile.TarError, OSError) as exc:
            self._fail(c, f"the model data {c.model_data_url} could not be read and unpacked: {exc}")
            return
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR")
               or k == "MODELBOT_SANDBOX_DIR"}
        env.update(c.environment)
        env.update(PYTHONPATH=str(CODE_DIR), SM_MODEL_DIR=str(model_dir), SAGEMAKER_BIND_TO_PORT=str(port),
                   SAGEMAKER_MODEL_SERVER_WORKERS="1", MODELBOT_SERVE_THREADS="8", PYTHONUNBUFFERED="1",
                   MODELBOT_SERVE_FAILURE_FILE=str(c.directory / "failure"))
        with c.lock:
            if c.state == "stopped":
                return
            c.port, c.module = port, c.environment.get("MODELBOT_MODEL_MODULE")
            log_file = open(c.directory / "serve.log", "wb")
            # In this process's group: whatever stops the hosting stops its servers too.
            c.proc = subprocess.Popen([self.python, "-m", "serving", "--host", "127.0.0.1"], cwd=CODE_DIR, env=env,
                                      stdout=log_file, stderr=subprocess.STDOUT)
            log_file.close()
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline and c.state == "starting":
            if c.proc.poll() is not None:
                self._fail(c, self._failure_reason(c))
                return
            if _ping(c.url):
                with c.lock:
                    if c.state == "starting":
                        c.state, c.ready_at = "serving", time.time()
                log.info("%s %s serving %s on %s", c.endpoint, c.variant, c.model, c.url)
                return
            time.sleep(0.2)
        if c.state == "starting":
            self._fail(c, f"the container did not answer GET /ping within {READY_TIMEOUT_SECONDS:.0f}s")
            self._terminate(c)

    @staticmethod
    def _failure_reason(c: Container) -> str:
        failure = c.directory / "failure"
        if failure.exists():
            return failure.read_text(errors="replace").strip()
        tail = (c.directory / "serve.log").read_text(errors="replace").strip().splitlines()[-1:]
        return f"the container exited with {c.proc.returncode}: {tail[0] if tail else 'no output'}"

    def _stop_container(self, c: Container) -> None:
        with c.lock:
            c.state = "stopped"
        self._terminate(c)

    @staticmethod
    def _terminate(c: Container) -> None:
        proc = c.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # gunicorn's master stops its workers on SIGTERM
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    # ---- running ----
    def start(self) -> "Hosting":
        self.poll()
        self._thread = threading.Thread(target=self._loop, name="hosting-watch", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception as exc:  # the watcher must go on: say it, once per pass
                self._error(f"watching the endpoints failed: {type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        with self.lock:
            containers = list(self.containers.values())
        for c in containers:  # all told at once, then waited for: each takes a moment to finish its requests
            with c.lock:
                c.state = "stopped"
            if c.proc is not None and c.proc.poll() is None:
                c.proc.terminate()
        for c in containers:
            self._terminate(c)


def main(argv: list[str] | None = None) -> None:
    from sandbox.capture import CaptureWriter
    from sandbox.runtime import RuntimeServer
    from sandbox.world_clock import WorldClock

    parser = argparse.ArgumentParser(prog="python -m sandbox.hosting", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--clock", help="the sandbox's clock file (sandbox/world_clock.py); default: real time")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    hosting = Hosting(Path(options.workdir))
    clock = WorldClock(options.clock)
    capture = CaptureWriter(hosting.s3, clock.now_utc).start()
    server = RuntimeServer(hosting, capture, port=options.port).start()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    hosting.start()
    print(f"SageMaker hosting and runtime on {server.url}", flush=True)
    try:
        while not stopping.wait(1):
            pass
    except KeyboardInterrupt:
        pass
    server.stop()
    hosting.stop()
    capture.stop()


if __name__ == "__main__":
    main()
