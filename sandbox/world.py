"""The sandbox world behind `make run` without Slack credentials: every part real, on this machine.

Started, in order: a moto server (SageMaker, CloudWatch, S3) with the UpdateEndpoint proxy in front of it,
the Slack Web API emulator, a PagerDuty stand-in, a Price List stand-in serving the bundled sample
(sandbox/prices/), the real `python -m bot` (HTTP mode, its own signing secret), the real `python -m jobs`
with short settings, the traffic simulation (sandbox/traffic.py), a real Airflow 3.3.2 `airflow standalone`
with dags/model_lifecycle.py (installed into .airflow-venv on the first run), and the page on PORT.
Every child runs in its own process group; stop() ends each group.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from sandbox import airflow as airflow_runner
from sandbox.airflow import ROOT, aws_env, free_port

HERE = Path(__file__).resolve().parent
ME = "U0YOU"
CHANNELS = {"C0CHURN": "ml-churn", "C0FRAUD": "ml-fraud", "C0ALERTS": "ml-alerts"}
ENDPOINTS = {"churn-prod": "v41", "fraud-prod": "v17"}
# Traffic: the same healthy rates for churn's stable variant and its candidate; fraud's candidate (any
# variant added after start) errs 3% of the time in production although it evaluates better offline.
TRAFFIC = {"endpoints": {
    "churn-prod": {"per_minute": 120000, "stable": [0.002, 0.004], "new_variant": [0.002, 0.004],
                   "note": "a new variant is as healthy as the current one"},
    "fraud-prod": {"per_minute": 120000, "stable": [0.002, 0.004], "new_variant": [0.03, 0.004],
                   "note": "a new variant fails 3% of requests (5XX)"},
}}
JOB_INTERVAL_SECONDS = "2"
ROUTING_KEY = "R0SANDBOX" + "0" * 23  # PagerDuty routing keys are 32 characters


def _get(url: str, timeout: float = 2) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


def _wait(what: str, check: Callable[[], bool], timeout: float, proc: "Child | None" = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.exited():
            raise RuntimeError(f"{what} exited with {proc.proc.returncode}; its log:\n{proc.tail()}")
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} was not ready within {timeout:.0f}s" + (f"; its log:\n{proc.tail()}" if proc else ""))


class Child:
    """A child process in its own session, output to a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path, cwd: Path = ROOT):
        self.name, self.log_path = name, log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 8), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
                if sig == signal.SIGTERM:
                    # the leader is gone; anything left in its group goes too
                    os.killpg(self.proc.pid, signal.SIGKILL)
                break
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                break
        self._log.close()


class World:
    def __init__(self, port: int = 3000, workdir: Path | None = None, say: Callable[[str], None] = print):
        self.port = port
        self.workdir = workdir or Path(os.environ.get("MODELBOT_SANDBOX_DIR") or ROOT / ".sandbox")
        self.say = say
        self.children: list[Child] = []
        self.in_process: list = []
        self.airflow = None
        self.page = None
        self.started = time.monotonic()
        self.stopping = False
        self.airflow_thread: threading.Thread | None = None

    def _child(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        child = Child(name, argv, env, self.workdir / f"{name}.log")
        self.children.append(child)
        return child

    def _step(self, message: str) -> None:
        self.say(f"[{time.monotonic() - self.started:5.1f}s] {message}")

    def start(self) -> str:
        from sandbox.page_server import PageServer, World as PageWorld
        from sandbox.pagerduty import FakePagerDuty
        from sandbox.price_list import FakePriceList
        from sandbox.slack_emulator import SlackEmulator
        from sandbox.update_endpoint_proxy import SageMakerProxy

        if self.workdir.exists():
            shutil.rmtree(self.workdir / "run", ignore_errors=True)
        run = self.workdir / "run"
        run.mkdir(parents=True, exist_ok=True)
        self.workdir = run
        python = sys.executable

        self._step("Starting moto (SageMaker, CloudWatch, S3)")
        moto_port = free_port()
        moto = self._child("moto", [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                           dict(os.environ, PYTHONUNBUFFERED="1"))
        moto_url = f"http://127.0.0.1:{moto_port}"
        _wait("moto", lambda: _get(moto_url + "/moto-api/") == 200, 60, moto)
        for k, v in aws_env(moto_url).items():
            os.environ[k] = v
        proxy = SageMakerProxy(moto_url).start()
        self.in_process.append(proxy)
        self._seed_aws(proxy.url)
        self.airflow_url = f"http://127.0.0.1:{free_port()}"
        # Airflow takes the longest (and its first run installs it): it starts now, beside everything else.
        airflow_started: dict = {}
        airflow_thread = threading.Thread(target=self._start_airflow, args=(moto_url, proxy.url, airflow_started),
                                          name="airflow-start", daemon=True)
        self.airflow_thread = airflow_thread
        airflow_thread.start()

        self._step("Starting the Slack emulator, PagerDuty and Price List stand-ins")
        emulator = SlackEmulator().start()
        emulator.add_user(ME, name="you", real_name="You")
        pagerduty = FakePagerDuty().start()
        records = json.loads((HERE / "prices" / "sagemaker-us-east-1.json").read_text())
        prices = FakePriceList(records).start()
        self.in_process += [emulator, pagerduty, prices]

        models = self.workdir / "models.toml"
        shutil.copy(HERE / "models.toml", models)
        signing_secret = secrets.token_hex(16)
        app_env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("SLACK_", "AIRFLOW_", "PAGERDUTY_", "MODELBOT_", "DATABASE_URL"))}
        app_env.update(aws_env(moto_url))
        app_env.update(
            AWS_ENDPOINT_URL_SAGEMAKER=proxy.url, AWS_ENDPOINT_URL_PRICING=prices.url,
            SLACK_BOT_TOKEN="xoxb-sandbox", SLACK_SIGNING_SECRET=signing_secret, SLACK_API_URL=emulator.api_url,
            DATABASE_URL=f"sqlite:///{self.workdir / 'modelbot.db'}", MODELS_FILE=str(models),
            AIRFLOW_URL=self.airflow_url, PAGERDUTY_ROUTING_KEY=ROUTING_KEY, PAGERDUTY_EVENTS_URL=pagerduty.url,
            MODELBOT_JOB_INTERVAL_SECONDS=JOB_INTERVAL_SECONDS, MODELBOT_COMMAND_PROCESSES="1",
            # The bot serves the page on this machine only: nothing on the network may reach it.
            MODELBOT_BIND="127.0.0.1", PYTHONUNBUFFERED="1",
        )
        bot_port = free_port()
        self._step("Starting modelbot: python -m bot (HTTP mode)")
        bot = self._child("bot", [python, "-m", "bot"], dict(app_env, PORT=str(bot_port)))
        bot_url = f"http://127.0.0.1:{bot_port}"
        _wait("python -m bot", lambda: _get(bot_url + "/healthz") in (200, 503), 90, bot)
        refresh = subprocess.run([python, "-m", "bot.cli", "prices", "refresh", "--region", "us-east-1",
                                  "--source", "api"], cwd=ROOT, env=app_env, capture_output=True, text=True,
                                 timeout=120)
        if refresh.returncode != 0:
            self._step(f"warning: loading the sample prices failed: {refresh.stderr.strip()[-300:]}")

        self._step("Starting the simulated traffic")
        config = self.workdir / "traffic.json"
        config.write_text(json.dumps(TRAFFIC))
        traffic_port = free_port()
        traffic_env = dict(os.environ, AWS_ENDPOINT_URL_SAGEMAKER=proxy.url, PYTHONUNBUFFERED="1")
        traffic = self._child("traffic", [python, "-m", "sandbox.traffic", "--config", str(config),
                                          "--port", str(traffic_port)], traffic_env)
        traffic_url = f"http://127.0.0.1:{traffic_port}"

        self.page = PageServer(PageWorld(emulator=emulator, bot_url=bot_url + "/slack/events",
                                         signing_secret=signing_secret, me=ME, channels=CHANNELS,
                                         pagerduty=pagerduty, traffic_url=traffic_url,
                                         airflow_url=self.airflow_url), self.port).start()
        _wait("the traffic simulation", lambda: _get(traffic_url + "/state") == 200, 60, traffic)

        if airflow_thread.is_alive():
            self._step("Waiting for Airflow to answer and list the DAGs")
        airflow_thread.join()
        if "error" in airflow_started:
            raise RuntimeError(airflow_started["error"])
        for dag_id in airflow_runner.DAG_IDS:
            self.airflow.unpause(dag_id)
        # The worker starts once Airflow answers: a run watcher that met an Airflow still starting would back
        # off and post "Airflow cannot be reached" into the first run's thread.
        self._step("Starting the worker: python -m jobs")
        self._child("jobs", [python, "-m", "jobs"], app_env)
        url = f"http://127.0.0.1:{self.port}/"
        self._step(f"Ready: open {url}")
        return url

    def _start_airflow(self, moto_url: str, sagemaker_url: str, out: dict) -> None:
        try:
            if not airflow_runner.venv_ready():
                self._step(f"Installing Airflow {airflow_runner.AIRFLOW_VERSION} into .airflow-venv "
                           "(first run only, a few minutes)")
            venv = airflow_runner.ensure_venv(progress=self._step)
            if self.stopping:
                return
            self._step(f"Starting Airflow {airflow_runner.AIRFLOW_VERSION} (airflow standalone) with "
                       "dags/model_lifecycle.py")
            # Airflow's deploy task talks to SageMaker through the proxy (moto lacks UpdateEndpoint).
            self.airflow = airflow_runner.start_standalone(
                venv, self.workdir / "airflow", moto_url, port=int(self.airflow_url.rsplit(":", 1)[1]),
                # Two api-server workers: the Execution API calls of running tasks must not hold up a trigger.
                extra_env={"AWS_ENDPOINT_URL_SAGEMAKER": sagemaker_url, "AIRFLOW__API__WORKERS": "2",
                           "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False"})
            if self.stopping:  # stop() ran while Airflow was being installed or started
                self.airflow.stop()
                return
            self.airflow.wait_ready(timeout=420, dag_ids=airflow_runner.DAG_IDS)
        except Exception as exc:  # reported by start(), which is waiting for it
            out["error"] = f"Airflow did not start: {exc}"

    def _seed_aws(self, sagemaker_url: str) -> None:
        import boto3

        sm = boto3.client("sagemaker", region_name="us-east-1", endpoint_url=sagemaker_url)
        role = "arn:aws:iam::123456789012:role/sagemaker"
        for endpoint, variant in ENDPOINTS.items():
            name = f"{endpoint}-{variant}"
            sm.create_model(ModelName=name, ExecutionRoleArn=role,
                            PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/model:latest"})
            sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
                "VariantName": variant, "ModelName": name, "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.xlarge", "InitialVariantWeight": 1.0}])
            sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=name)
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="modelbot-diagnostics")

    def stop(self) -> None:
        self.stopping = True
        if self.airflow is not None:
            self.airflow.stop()
        if self.airflow_thread is not None:
            # Stopped while Airflow was starting: its thread stops what it started once it sees `stopping`. Wait
            # for that, or our exit cuts the (daemon) thread off between starting `airflow standalone` and
            # recording it, and Airflow runs on with nobody to stop it.
            self.airflow_thread.join(timeout=60)
        for child in reversed(self.children):
            child.stop()
        if self.page is not None:
            self.page.stop()
        for thing in reversed(self.in_process):
            try:
                thing.stop()
            except Exception:
                pass
