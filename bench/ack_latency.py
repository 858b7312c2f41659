"""Time-to-ack of `/model help` and `/model status` against the running server, beside a bare Bolt app.

`/model status` answers from the endpoint snapshot in the ack itself (no post-ack work), so the bench runs
one worker pass (`python -m jobs --once`) before measuring, as a deployed worker would have.
Both servers run the same stack (gunicorn gthread, same worker/thread counts) and receive the same signed
requests from 16 concurrent clients, in alternating rounds so machine noise hits both alike.
Usage: .venv/bin/python bench/ack_latency.py [--requests 500] [--concurrency 16] [--quick]
--quick (what `make test` runs so the benchmark cannot rot): 24 requests per command from 4 clients, one round,
no command processes; every request must be acked with 200, the ratios are printed but not judged.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import MODELS_TOML  # noqa: E402
from tests.harness import AppProcess, app_env, free_port, run_jobs_once, sign, wait_until  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def slash_body(text: str, response_url: str) -> bytes:
    return urllib.parse.urlencode({
        "team_id": "T0TEAM", "channel_id": "C0CHURN", "user_id": "U0ALICE", "command": "/model", "text": text,
        "response_url": response_url, "trigger_id": "1.2.3", "api_app_id": "A0MODELBOT",
    }).encode()


def _client(args: tuple[str, str, int, str]) -> list[float]:
    """One client: its share of the requests, one after another, on a kept-alive connection."""
    url, text, n, response_url = args
    session = requests.Session()
    times = []
    for _ in range(n):
        body = slash_body(text, response_url)
        headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
        started = time.perf_counter()
        resp = session.post(url + "/slack/events", data=body, headers=headers, timeout=10)
        times.append(time.perf_counter() - started)
        assert resp.status_code == 200, resp.text
    return times


def measure(pool, url: str, text: str, n: int, concurrency: int, response_url: str) -> list[float]:
    """n requests from `concurrency` clients at once. Each client is its own process: 16 client threads in one
    interpreter would queue for its GIL and add their own tail to what we measure."""
    shares = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]
    return [t for times in pool.map(_client, [(url, text, k, response_url) for k in shares if k]) for t in times]


def launch_bare(env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    """Starts the bare Bolt app (bench/_bare_bolt_app.py) without waiting: it comes up while modelbot does."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "bench/_bare_bolt_app.py"], cwd=ROOT, env={**env, "PORT": str(port)},
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def wait_bare(url: str) -> None:
    def up():
        try:
            return requests.post(url + "/slack/events", timeout=1).status_code == 401
        except requests.ConnectionError:
            return False

    wait_until(up, timeout=60, message="the bare Bolt app")


def start_process(args: list[str], log: Path, ready) -> subprocess.Popen:
    """moto and the Slack emulator stand in for remote systems; niced, they take the CPU the servers leave."""
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=lambda: os.nice(19))
    wait_until(ready, timeout=30, message=" ".join(args))
    return proc


def stop_all(children: list[subprocess.Popen]) -> None:
    """Ends each child's process group (each runs in a session of its own); one already gone is passed over."""
    for proc in children:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except ProcessLookupError:
            pass


def reachable(url: str) -> bool:
    try:
        requests.get(url, timeout=1)
        return True
    except requests.ConnectionError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a few requests: does the benchmark still run?")
    args = parser.parse_args()
    warm_up = 50
    if args.quick:
        args.requests, args.concurrency, args.rounds, warm_up = 24, 4, 1, 4

    # moto and the Slack emulator get processes of their own: in this process they would compete with the
    # clients' timing for the GIL and inflate what we measure.
    tmp = Path(tempfile.mkdtemp(prefix="ack-bench-"))
    moto_port, slack_port = free_port(), free_port()
    moto_url, slack_url = f"http://127.0.0.1:{moto_port}", f"http://127.0.0.1:{slack_port}"
    helpers: list[subprocess.Popen] = []
    app = None
    pool = None
    results: dict[tuple[str, str], list[float]] = {}
    try:
        helpers.append(start_process(["-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                                     tmp / "moto.log", lambda: reachable(moto_url)))
        helpers.append(start_process(["-m", "sandbox.slack_emulator", "--port", str(slack_port)], tmp / "slack.log",
                                     lambda: reachable(slack_url)))
        slack = type("RemoteEmulator", (), {"api_url": slack_url + "/api/"})()
        rurl = requests.post(slack_url + "/_emulator/response_url?name=bench", timeout=5).json()["response_url"]

        def drained(expected: int) -> bool:
            """Every post-ack answer sent through response_url: no backlog left to skew the next series (status
            answers in the ack now, so there is none unless that regresses)."""
            count = requests.get(slack_url + "/_emulator/responses?name=bench", timeout=5).json()["count"]
            return count >= expected

        (tmp / "models.toml").write_text(MODELS_TOML)
        env = app_env(slack=slack, moto_url=moto_url, database_url=f"sqlite:///{tmp / 'bench.db'}",
                      models_file=tmp / "models.toml")
        if args.quick:  # help and status answer in the ack: the processes for post-ack work only cost start-up
            env["MODELBOT_COMMAND_PROCESSES"] = "0"
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        from tests.endpoints import create_endpoint

        create_endpoint("churn-prod", {"v41": 0.9, "v42": 0.1})
        create_endpoint("fraud-prod", {"blue": 1.0})
        bare, bare_url = launch_bare(env, tmp / "bare.log")
        helpers.append(bare)
        app = AppProcess(env, tmp / "modelbot.log").start(timeout=120)
        worker = run_jobs_once(env)
        assert "endpoint_snapshot: 2 endpoints read" in worker.stdout, worker.stdout + worker.stderr
        wait_bare(bare_url)
        import multiprocessing

        pool = multiprocessing.get_context("fork").Pool(args.concurrency)
        statuses = 0
        for target, url in (("modelbot", app.url), ("bare", bare_url)):  # warm-up
            for text in ("help", "status"):
                measure(pool, url, text, warm_up, args.concurrency, rurl)
        per_round = max(1, args.requests // args.rounds)
        for _ in range(args.rounds):
            for text in ("help", "status"):
                for target, url in (("bare", bare_url), ("modelbot", app.url)):
                    wait_until(lambda: drained(statuses), timeout=300, interval=0.2, message="the status backlog")
                    results.setdefault((target, text), []).extend(
                        measure(pool, url, text, per_round, args.concurrency, rurl))
    finally:
        if pool is not None:
            pool.terminate()
        if app is not None:
            app.stop()
        stop_all(helpers)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"time to ack, {args.requests} signed requests per command at {args.concurrency} concurrent clients "
          f"(load average {os.getloadavg()[0]:.1f}: this machine's 2 cores are shared with other work)")
    print(f"{'command':<16}{'server':<10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    ok = True
    for text in ("help", "status"):
        base = results[("bare", text)]
        mine = results[("modelbot", text)]
        for name, vals in (("bare Bolt", base), ("modelbot", mine)):
            print(f"/model {text:<9}{name:<10}{1000 * statistics.median(vals):>9.1f}"
                  f"{1000 * percentile(vals, 0.99):>9.1f}{1000 * max(vals):>9.1f}")
        r50 = statistics.median(mine) / statistics.median(base)
        r99 = percentile(mine, 0.99) / percentile(base, 0.99)
        verdict = "PASS" if r99 <= 1.5 and percentile(mine, 0.99) < 3 else "FAIL"
        if args.quick:  # too few requests for a p99: the quick run only shows that it runs
            verdict = "not judged (--quick)"
        ok &= verdict != "FAIL"
        print(f"/model {text:<9}ratio     p50 {r50:.2f}x  p99 {r99:.2f}x  (aim: p99 ratio <= 1.5, p99 << 3 s) {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
