"""`/model status` for 1,000 models: the store-backed answer against today's live read, with SageMaker 50 ms away.

moto holds 1,000 endpoints; every SageMaker call goes through sandbox/update_endpoint_proxy.py with 50 ms added
(a real region's round trip), which also counts the calls. After one worker pass (`python -m jobs --once`),
it measures:
  - the worker pass: wall time, SageMaker calls, concurrency and rate (first pass, and a steady one);
  - `/model status` through the running app, signed like Slack, 200 commands from 16 concurrent clients:
    time to the full answer (the ack carries it) and SageMaker calls per command;
  - beside it, in the same run, today's live read (bot/status/service.gather + render, what /model status
    did on every command before the snapshot) for the same 1,000 models: its time and calls per command.
Usage: .venv/bin/python bench/status_scale.py [--models 1000] [--commands 200] [--concurrency 16] [--live-runs 2]
       [--quick]
--quick (what `make test` runs so the benchmark cannot rot): 20 models, 16 commands from 4 clients, one worker
pass, one live read, no command processes; it checks that commands answer from the store with no SageMaker call, not how fast.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ack_latency import _client, percentile, stop_all  # noqa: E402
from tests.harness import AppProcess, app_env, free_port, run_jobs_once, wait_until  # noqa: E402
from tests.status.conftest import registry_toml  # noqa: E402

LATENCY = 0.05


def _serve_proxy(moto_url: str, latency: float, ports) -> None:
    os.nice(10)  # a remote system: it takes the CPU the app and the clients leave
    from sandbox.update_endpoint_proxy import SageMakerProxy

    proxy = SageMakerProxy(moto_url, latency=latency).start()
    ports.put(proxy._server.server_address[1])
    signal.pause()


def reachable(url: str) -> bool:
    try:
        requests.get(url, timeout=5)
        return True
    except requests.RequestException:  # a busy machine: not up yet, or too slow to say so
        return False


def start_process(args: list[str], log: Path, ready) -> subprocess.Popen:
    """moto and the Slack emulator stand in for remote systems: at nice 10, they take the CPU the app leaves."""
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=lambda: os.nice(10))
    wait_until(ready, timeout=120, message=" ".join(args))
    return proc


def operations(proxy_url: str) -> int:
    return sum(requests.get(proxy_url + "/_proxy/operations", timeout=10).json().values())


def create_endpoints(names: list[str]) -> None:
    import boto3

    from tests.endpoints import create_endpoint

    boto3.setup_default_session()

    def one(i_name):
        i, name = i_name
        # Every tenth model has a candidate on it, as a deploy leaves it; the rest serve one variant.
        create_endpoint(f"{name}-prod", {"v1": 0.9, "v2": 0.1} if i % 10 == 0 else {"v1": 1.0})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, enumerate(names)))


def seed_rollouts(database_url: str, names: list[str]) -> None:
    """A few models in each state, so the query's joins have rows to join."""
    from bot.rollouts.tables import Rollout
    from bot.runs.tables import RunRecord
    from bot.store import Store

    store = Store(database_url)
    now = datetime.now(timezone.utc)
    with store.session() as s:
        for i, name in enumerate(names[:50]):
            state = ("progressing", "paused", "rolled_back", "promoted", "baking")[i % 5]
            s.add(Rollout(model=name, active_model=name if state in ("progressing", "paused", "baking") else None,
                          source="slack", endpoint=f"{name}-prod", region="us-east-1", stable_variant="v1",
                          candidate_variant="v2", steps=[10, 25, 50, 100], state=state, ended_at=now))
        for i, name in enumerate(names):
            s.add(RunRecord(dag_id=f"{name}_lifecycle", run_id="r1", model=name, conf={},
                            state="failed" if i % 100 == 0 else "success", queued_at=now))
    store.dispose()


def snapshot_line(stdout: str) -> str:
    return next((line for line in stdout.splitlines() if line.startswith("endpoint_snapshot:")), stdout[-500:])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--live-runs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a few models: does the benchmark still run?")
    args = parser.parse_args()
    pass_labels = ("first", "steady")
    if args.quick:
        args.models, args.commands, args.concurrency, args.live_runs = 20, 16, 4, 1
        pass_labels = ("first",)

    tmp = Path(tempfile.mkdtemp(prefix="status-scale-"))
    children: list[subprocess.Popen] = []
    proxy_proc = None
    app = None
    pool = None
    try:
        moto_port = free_port()
        moto_url = f"http://127.0.0.1:{moto_port}"
        children.append(start_process(["-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                                      tmp / "moto.log", lambda: reachable(moto_url)))
        ports = multiprocessing.get_context("fork").Queue()
        proxy_proc = multiprocessing.get_context("fork").Process(target=_serve_proxy,
                                                                 args=(moto_url, LATENCY, ports), daemon=True)
        proxy_proc.start()
        proxy_url = f"http://127.0.0.1:{ports.get(timeout=30)}"
        names = [f"m{i:04d}" for i in range(args.models)]
        (tmp / "models.toml").write_text(registry_toml(names))
        slack_port = free_port()
        slack_url = f"http://127.0.0.1:{slack_port}"
        children.append(start_process(["-m", "sandbox.slack_emulator", "--port", str(slack_port)],
                                      tmp / "slack.log", lambda: reachable(slack_url)))
        slack = type("RemoteEmulator", (), {"api_url": slack_url + "/api/"})()
        rurl = requests.post(slack_url + "/_emulator/response_url?name=bench", timeout=5).json()["response_url"]
        database_url = f"sqlite:///{tmp / 'bench.db'}"
        env = app_env(slack=slack, moto_url=moto_url, database_url=database_url, models_file=tmp / "models.toml",
                      AWS_ENDPOINT_URL_SAGEMAKER=proxy_url)
        if args.quick:  # status answers in the ack: the processes for post-ack work only cost start-up
            env["MODELBOT_COMMAND_PROCESSES"] = "0"
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        os.environ["AWS_ENDPOINT_URL_SAGEMAKER"] = moto_url  # creating the endpoints is not what is measured
        # The app starts while the endpoints are created: neither is measured, and each waits on the other's I/O.
        app = AppProcess(env, tmp / "modelbot.log")
        with ThreadPoolExecutor(1) as starter:
            app_started = starter.submit(app.start, timeout=180)
            started = time.perf_counter()
            create_endpoints(names)
            print(f"{args.models} endpoints created in moto in {time.perf_counter() - started:.0f} s", flush=True)
            app_started.result()
        os.environ["AWS_ENDPOINT_URL_SAGEMAKER"] = proxy_url
        pool = multiprocessing.get_context("fork").Pool(args.concurrency)
        seed_rollouts(database_url, names)
        passes = []
        for label in pass_labels:
            before = operations(proxy_url)
            t = time.perf_counter()
            done = run_jobs_once(env, timeout=900)
            passes.append((label, time.perf_counter() - t, operations(proxy_url) - before, snapshot_line(done.stdout)))
            print(f"worker pass ({label}): {passes[-1][3]}", flush=True)

        # Warm-up, then the measured series: the ack is the whole answer.
        list(pool.map(_client, [(app.url, "status", 2, rurl)] * args.concurrency))
        before = operations(proxy_url)
        shares = [args.commands // args.concurrency + (1 if i < args.commands % args.concurrency else 0)
                  for i in range(args.concurrency)]
        times = [t for ts in pool.map(_client, [(app.url, "status", k, rurl) for k in shares if k]) for t in ts]
        store_calls = (operations(proxy_url) - before) / len(times)

        # Today's live read, in this process, on the same endpoints behind the same proxy.
        from bot.config import load_settings
        from bot.services import Services
        from bot.status import service as status
        from bot.status.messages import render_statuses

        os.environ.update(env)
        services = Services.from_settings(load_settings(), migrate=False)
        models = [services.registry.models[n] for n in names]
        live = []
        before = operations(proxy_url)
        for _ in range(args.live_runs):
            t = time.perf_counter()
            render_statuses(status.gather(services, models))
            live.append(time.perf_counter() - t)
        live_calls = (operations(proxy_url) - before) / len(live)
    finally:
        if pool is not None:
            pool.terminate()
        if app is not None:
            app.stop()
        stop_all(children)
        if proxy_proc is not None:
            proxy_proc.terminate()
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"/model status for {args.models} models, SageMaker {LATENCY * 1000:.0f} ms away "
          f"(this machine: 2 cores shared with other work; load average {os.getloadavg()[0]:.1f} at the end)")
    for label, wall, calls, line in passes:
        print(f"  worker pass, {label}: {wall:.1f} s wall for `python -m jobs --once` (all jobs), "
              f"{calls} SageMaker calls; {line.removeprefix('endpoint_snapshot: ')}")
    p50, p99 = statistics.median(times), percentile(times, 0.99)
    print(f"  from the store (in the ack): {len(times)} commands at {args.concurrency} clients: "
          f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {max(times) * 1000:.0f} ms; "
          f"{store_calls:.2f} SageMaker calls per command")
    print(f"  today's live read: {len(live)} commands one after another: median {statistics.median(live):.1f} s, "
          f"max {max(live):.1f} s; {live_calls:.0f} SageMaker calls per command")
    print(f"  ratio (live / store), median: {statistics.median(live) / p50:.0f}x")
    if args.quick:  # too few commands for a p99: the quick run checks what does not depend on the machine
        ok = store_calls == 0
        print(f"  0 AWS calls per command: {'PASS' if ok else 'FAIL'} (p99 not judged with --quick)")
    else:
        ok = p99 < 0.3 and store_calls == 0
        print(f"  aim: p99 < 300 ms and 0 AWS calls per command: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
