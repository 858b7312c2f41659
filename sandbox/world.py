"""The sandbox world behind `make run` without Slack credentials: every part real, on this machine.

Started, in order: a moto server (SageMaker, CloudWatch, S3) with the UpdateEndpoint proxy in front of it;
churn and fraud put in production there by their own modules and the generated pipeline's steps
(sandbox/seed.py); SageMaker hosting (sandbox/hosting.py: each endpoint variant runs modelbot-serve with its
model, behind InvokeEndpoint, with data capture); the Slack Web API emulator, a PagerDuty stand-in, a Price List
stand-in serving the bundled sample (sandbox/prices/); the real `python -m bot` (HTTP mode, its own signing
secret); the traffic simulation (sandbox/traffic.py: CloudWatch counts scaled from a real sample of requests,
churn's labels and drift); a real Airflow 3.3.2 `airflow standalone` with the generated pipeline DAG
(dags/modelbot_pipelines.py and its companions, the modules, the models file; installed into .airflow-venv on
the first run); the page on PORT; and last the real `python -m jobs` with short settings.
Every child runs in its own process group (modelbot-serve in the hosting's); stop() ends each group.
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
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from sandbox import airflow as airflow_runner
from sandbox.airflow import ROOT, aws_env, free_port
from sandbox.churn_world import WORLD_URI
from sandbox.world_clock import DAY, Schedule, WorldClock

HERE = Path(__file__).resolve().parent
ME = "U0YOU"
CHANNELS = {"C0CHURN": "ml-churn", "C0FRAUD": "ml-fraud", "C0ALERTS": "ml-alerts"}
# Traffic: the same healthy injected rates for every variant. What makes fraud's candidate fail is its own
# predictions (above 1 for large payments, which its RESPONSE_SCHEMA refuses: modelbot-serve answers 500), seen
# in the real sample of requests the traffic sends each variant.
TRAFFIC = {"endpoints": {
    "churn-prod": {"per_minute": 120000, "stable": [0.002, 0.004], "new_variant": [0.002, 0.004],
                   "requests": "churn", "instances": 4,
                   "note": "a new variant is as healthy as the current one"},
    "fraud-prod": {"per_minute": 120000, "stable": [0.002, 0.004], "new_variant": [0.002, 0.004],
                   "requests": "fraud", "instances": 1,
                   "note": "fraud's retrained candidate scores large payments above 1, which its RESPONSE_SCHEMA "
                           "refuses: modelbot-serve answers those requests 500"},
}}
JOB_INTERVAL_SECONDS = "2"
QUALITY_INTERVAL_SECONDS = "5"
ROUTING_KEY = "R0SANDBOX" + "0" * 23  # PagerDuty routing keys are 32 characters
START_LAG_DAYS = 11  # the clock's lag until the traffic replays calm days (sandbox/world_clock.py)
PIPELINE_FILES = ("modelbot_pipelines.py", "modelbot_contract.py", "modelbot_schemas.py", "modelbot_sagemaker.py")


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
        self._starting_child = False
        self._interrupted = False

    def _child(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        # A stop signal that lands while the child is being forked would leave it running unrecorded (its
        # own session, so nothing else stops it): the signal waits until the child is in self.children.
        self._starting_child = True
        try:
            child = Child(name, argv, env, self.workdir / f"{name}.log")
            self.children.append(child)
        finally:
            self._starting_child = False
        if self._interrupted:
            raise KeyboardInterrupt
        return child

    def defer_interrupt(self) -> bool:
        """For a stop signal's handler: True when the signal must wait (a child is being started); start()
        raises KeyboardInterrupt as soon as the child is recorded."""
        if self._starting_child:
            self._interrupted = True
            return True
        return False

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
        models = self.workdir / "models.toml"
        shutil.copy(HERE / "models.toml", models)
        # Captured predictions and labels are dated by the sandbox's clock: START_LAG_DAYS behind until the
        # traffic replays calm days (it is written before anything can capture).
        clock_file = self.workdir / "clock.json"
        lag = START_LAG_DAYS * DAY
        WorldClock(clock_file, Schedule(anchor=time.time(), lag=lag, rate=1.0, lag_target=lag))

        self._step("Starting moto (SageMaker, CloudWatch, S3)")
        moto_port = free_port()
        moto = self._child("moto", [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                           dict(os.environ, PYTHONUNBUFFERED="1"))
        moto_url = f"http://127.0.0.1:{moto_port}"
        proxy = SageMakerProxy(moto_url).start()
        self.in_process.append(proxy)
        self.airflow_url = f"http://127.0.0.1:{free_port()}"
        # Airflow takes the longest (and its first run installs it): it starts now, beside everything else (it
        # needs moto only once a task runs).
        airflow_started: dict = {}
        airflow_thread = threading.Thread(target=self._start_airflow, args=(moto_url, proxy.url, models,
                                                                            airflow_started),
                                          name="airflow-start", daemon=True)
        self.airflow_thread = airflow_thread
        airflow_thread.start()
        _wait("moto", lambda: _get(moto_url + "/moto-api/") == 200, 60, moto)
        for k, v in aws_env(moto_url).items():
            os.environ[k] = v
        seeded: dict = {}
        seeding = threading.Thread(target=self._seed_aws, args=(proxy.url, models, seeded), name="seed",
                                   daemon=True)
        seeding.start()
        runtime_port = free_port()
        hosting = self._child("hosting", [python, "-m", "sandbox.hosting", "--port", str(runtime_port),
                                          "--workdir", str(self.workdir / "hosting"), "--clock", str(clock_file)],
                              dict(os.environ, PYTHONUNBUFFERED="1"))
        runtime_url = f"http://127.0.0.1:{runtime_port}"

        self._step("Starting the Slack emulator, PagerDuty and Price List stand-ins")
        emulator = SlackEmulator().start()
        emulator.add_user(ME, name="you", real_name="You")
        pagerduty = FakePagerDuty().start()
        records = json.loads((HERE / "prices" / "sagemaker-us-east-1.json").read_text())
        prices = FakePriceList(records).start()
        self.in_process += [emulator, pagerduty, prices]

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
            MODELBOT_QUALITY_INTERVAL_SECONDS=QUALITY_INTERVAL_SECONDS,
            # The bot serves the page on this machine only: nothing on the network may reach it.
            MODELBOT_BIND="127.0.0.1", PYTHONUNBUFFERED="1",
        )
        if "MODELBOT_SANDBOX_DIR" in os.environ:  # what the stop tests find every process of this sandbox by
            app_env["MODELBOT_SANDBOX_DIR"] = os.environ["MODELBOT_SANDBOX_DIR"]
        bot_port = free_port()
        self._step("Starting modelbot: python -m bot (HTTP mode)")
        bot = self._child("bot", [python, "-m", "bot"], dict(app_env, PORT=str(bot_port)))
        bot_url = f"http://127.0.0.1:{bot_port}"

        seeding.join()
        if "error" in seeded:
            raise RuntimeError(seeded["error"])
        self._step("Starting the simulated traffic (a real sample through each variant's modelbot-serve)")
        config = self.workdir / "traffic.json"
        config.write_text(json.dumps(dict(TRAFFIC, world=_churn_world(models))))
        traffic_port = free_port()
        traffic_env = dict(os.environ, AWS_ENDPOINT_URL_SAGEMAKER=proxy.url,
                           AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=runtime_url, PYTHONUNBUFFERED="1")
        traffic = self._child("traffic", [python, "-m", "sandbox.traffic", "--config", str(config),
                                          "--port", str(traffic_port), "--clock", str(clock_file)], traffic_env)
        traffic_url = f"http://127.0.0.1:{traffic_port}"

        self.page = PageServer(PageWorld(emulator=emulator, bot_url=bot_url + "/slack/events",
                                         signing_secret=signing_secret, me=ME, channels=CHANNELS,
                                         pagerduty=pagerduty, traffic_url=traffic_url,
                                         airflow_url=self.airflow_url, runtime_url=runtime_url), self.port).start()
        _wait("python -m bot", lambda: _get(bot_url + "/healthz") in (200, 503), 90, bot)
        prices_loaded: dict = {}
        loading = threading.Thread(target=self._load_prices, args=(app_env, prices_loaded), name="prices",
                                   daemon=True)
        loading.start()
        _wait("the SageMaker hosting", lambda: _get(runtime_url + "/state") == 200, 60, hosting)
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
        loading.join(timeout=120)
        if "warning" in prices_loaded:
            self._step(prices_loaded["warning"])
        url = f"http://127.0.0.1:{self.port}/"
        self._step(f"Ready: open {url}")
        return url

    def _load_prices(self, app_env: dict[str, str], out: dict) -> None:
        try:
            refresh = subprocess.run([sys.executable, "-m", "bot.cli", "prices", "refresh", "--region", "us-east-1",
                                      "--source", "api"], cwd=ROOT, env=app_env, capture_output=True, text=True,
                                     timeout=120)
            if refresh.returncode != 0:
                out["warning"] = f"warning: loading the sample prices failed: {refresh.stderr.strip()[-300:]}"
        except subprocess.TimeoutExpired:
            out["warning"] = "warning: loading the sample prices took over 120 s and was stopped"

    def _start_airflow(self, moto_url: str, sagemaker_url: str, models: Path, out: dict) -> None:
        try:
            if not airflow_runner.venv_ready():
                self._step(f"Installing Airflow {airflow_runner.AIRFLOW_VERSION} into .airflow-venv "
                           "(first run only, a few minutes)")
            venv = airflow_runner.ensure_venv(progress=self._step)
            airflow_runner.ensure_pipeline_packages(venv, progress=self._step)
            if self.stopping:
                return
            self._step(f"Starting Airflow {airflow_runner.AIRFLOW_VERSION} (airflow standalone) with the generated "
                       "pipelines (dags/modelbot_pipelines.py)")
            dag_files = [ROOT / "dags" / name for name in PIPELINE_FILES]
            dag_files += sorted((HERE / "models").glob("*_model.py"))
            # Airflow's tasks talk to SageMaker through the proxy (moto lacks UpdateEndpoint); the pipelines read
            # the sandbox's models file; churn's preprocess reads churn's world.
            self.airflow = airflow_runner.start_standalone(
                venv, self.workdir / "airflow", moto_url, port=int(self.airflow_url.rsplit(":", 1)[1]),
                dag_files=dag_files,
                # Two api-server workers: the Execution API calls of running tasks must not hold up a trigger.
                extra_env={"AWS_ENDPOINT_URL_SAGEMAKER": sagemaker_url, "AIRFLOW__API__WORKERS": "2",
                           "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False", "MODELS_FILE": str(models),
                           "MODELBOT_SANDBOX_WORLD": WORLD_URI})
            if self.stopping:  # stop() ran while Airflow was being installed or started
                self.airflow.stop()
                return
            self.airflow.wait_ready(timeout=420, dag_ids=airflow_runner.DAG_IDS)
        except Exception as exc:  # reported by start(), which is waiting for it
            out["error"] = f"Airflow did not start: {exc}"

    def _seed_aws(self, sagemaker_url: str, models: Path, out: dict) -> None:
        """Buckets, and churn and fraud in production (sandbox/seed.py), beside the other starts."""
        import boto3

        from sandbox import seed

        try:
            s3 = boto3.client("s3", region_name="us-east-1")
            for bucket in sorted(seed.buckets(models, extra=(WORLD_URI.removeprefix("s3://").split("/")[0],))):
                s3.create_bucket(Bucket=bucket)
            seed.seed(models, sagemaker=boto3.client("sagemaker", region_name="us-east-1", endpoint_url=sagemaker_url),
                      s3=s3, say=self._step)
        except Exception as exc:  # reported by start(), which is waiting for it
            out["error"] = f"putting churn and fraud in production failed: {type(exc).__name__}: {exc}"

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


def _churn_world(models: Path) -> dict:
    """The traffic's part of churn's quality story: where churn's labels go ([models.churn.quality] labels)."""
    churn = tomllib.loads(models.read_text())["models"]["churn"]
    return {"endpoint": churn["endpoint"], "labels": churn["quality"]["labels"], "world_uri": WORLD_URI}
