"""modelbot-serve against its floor and its model: requests/s and latency for 1-row and 100-row requests.

Three things measured in one run, on the same machine at the same time:
  (a) the floor: a bare app on the same server stack (bench/_bare_serving_app.py: gunicorn gthread via
      serving/server.py, same workers and threads) that reads the body and answers a constant;
  (b) modelbot-serve serving dags/examples/churn_model.py (a logistic regression and its two schemas), trained
      here and pickled as the pipeline does;
  (c) the same `predict` called in this process on a ready DataFrame: the model's own cost;
  (d) modelbot-serve with a predict that returns a constant: the runtime's own cost (HTTP, parsing, both
      schemas, the DataFrame, the log line), without the model's.
Throughput: CLIENTS client processes, each on a kept-alive connection, sending requests one after another;
requests/s = all requests / wall time. Latency: one client alone (no queueing), p50 and p99. Rounds alternate
the servers so the machine's noise hits all alike; each figure is the median over rounds.
Server CPU per request is read from /proc for each server's process group: unlike requests/s, it does not move
with whatever else the machine runs (the clients share its cores).
Goals (issue 17): throughput at 1 row >= 0.7x the floor, judged on (d), what the runtime itself adds, and
printed for (b) beside it (a model's own cost is the model's); p99 over in-process predict < 5 ms, judged on (b).
Each round measures the three servers one after another, so a ratio is taken within each round (the machine's
load drifts more between rounds than within one) and the median of those is the figure.

Usage: .venv/bin/python bench/serving.py [--requests 3000] [--rounds 5] [--clients 4] [--workers 2] [--quick]
--quick (what `make test` runs so the benchmark cannot rot): 60 requests a series, one round; it checks that
every answer is right, not how fast.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pickle
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "dags" / "examples"))

import churn_model  # noqa: E402
import pandas as pd  # noqa: E402

# The runtime's own cost: the example's schemas and columns, a predict that costs nothing.
CONSTANT_MODULE = '''
import numpy as np
from churn_model import FEATURES, REQUEST_SCHEMA, RESPONSE_SCHEMA  # noqa: F401


def predict(model, features):
    return np.full(len(features), 0.5)
'''


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_request(body: bytes) -> bytes:
    return (b"POST /invocations HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b"X-Amzn-SageMaker-Inference-Id: bench\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def client(args: tuple[int, bytes, int, int]) -> list[float]:
    """One kept-alive connection sending `n` requests one after another; seconds per request. A raw socket, not
    a library: on two cores the client's own cost would blur the server's."""
    port, request, n, rows = args
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stream = sock.makefile("rb")
    times = []
    try:
        for _ in range(n):
            started = time.perf_counter()
            sock.sendall(request)
            status = stream.readline()
            length = 0
            while True:
                line = stream.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = stream.read(length)
            times.append(time.perf_counter() - started)
            if not status.startswith(b"HTTP/1.1 200"):
                raise AssertionError(f"{status!r}: {body[:300]!r}")
            if rows and len(json.loads(body)["predictions"]) != rows:
                raise AssertionError(f"wanted {rows} predictions: {body[:300]!r}")
    finally:
        sock.close()
    return times


def cpu_seconds(group: int) -> float:
    """User + system CPU of every process in a server's process group (gunicorn's master and workers)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[2]) == group:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def throughput(pool, port: int, request: bytes, n: int, clients: int, rows: int,
               group: int) -> tuple[float, float]:
    """(requests/s, server CPU ms per request). The CPU figure does not depend on what else the machine runs."""
    shares = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
    cpu = cpu_seconds(group)
    started = time.perf_counter()
    pool.map(client, [(port, request, k, rows) for k in shares if k])
    elapsed = time.perf_counter() - started
    return n / elapsed, 1000 * (cpu_seconds(group) - cpu) / n


def wait_ready(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /ping HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server on port {port} did not answer /ping in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def start(command: list[str], env: dict, log: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    wait_ready(port, proc, log)
    return proc


def in_process(model, frame: pd.DataFrame, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        churn_model.predict(model, frame)
        times.append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000, help="requests per throughput series")
    parser.add_argument("--latency-requests", type=int, default=1000, help="requests per one-client latency series")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="60 requests a series, one round: does it still run?")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.latency_requests, args.rounds = 60, 60, 1

    load_before = os.getloadavg()[0]  # the machine's other work, before this run adds its own
    tmp = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    (tmp / "model").mkdir()
    (tmp / "bench_constant.py").write_text(CONSTANT_MODULE)
    frames = churn_model.preprocess({"rows": "2000"})
    model = churn_model.train(frames["train"], {})
    (tmp / "model" / "model.pkl").write_bytes(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
    features = frames["validation"].drop(columns=["churned"])
    batches = {rows: features.iloc[:rows].to_dict(orient="records") for rows in (1, 100)}

    serve_port, constant_port, bare_port = free_port(), free_port(), free_port()
    env = dict(os.environ, MODELBOT_MODEL_MODULE="churn_model", SM_MODEL_DIR=str(tmp / "model"),
               SAGEMAKER_MODEL_SERVER_WORKERS=str(args.workers), SAGEMAKER_BIND_TO_PORT=str(serve_port),
               PYTHONPATH=os.pathsep.join([str(tmp), str(ROOT / "dags" / "examples"), str(ROOT)]))
    constant_env = dict(env, MODELBOT_MODEL_MODULE="bench_constant", SAGEMAKER_BIND_TO_PORT=str(constant_port))
    procs: list[subprocess.Popen] = []
    pool = None
    tput: dict[tuple[str, int], list[float]] = {}
    cpu_ms: dict[tuple[str, int], list[float]] = {}
    lat: dict[tuple[str, int], list[list[float]]] = {}  # one list of seconds per round
    try:
        procs.append(start([sys.executable, "-m", "serving", "--host", "127.0.0.1"], env, tmp / "serve.log",
                           serve_port))
        procs.append(start([sys.executable, "-m", "serving", "--host", "127.0.0.1"], constant_env,
                           tmp / "constant.log", constant_port))
        procs.append(start([sys.executable, "bench/_bare_serving_app.py", str(bare_port), str(args.workers)], env,
                           tmp / "bare.log", bare_port))
        pool = multiprocessing.get_context("fork").Pool(args.clients)
        serve, constant, bare = procs
        targets = (("floor", bare_port, bare.pid), ("modelbot-serve", serve_port, serve.pid),
                   ("runtime only", constant_port, constant.pid))
        for _, port, group in targets:  # warm-up: connections, imports, pandas' first calls in each worker
            for rows, batch in batches.items():
                throughput(pool, port, http_request(json.dumps({"instances": batch}).encode()), 40, args.clients, 0,
                           group)
        for _ in range(args.rounds):
            for rows, batch in batches.items():
                request = http_request(json.dumps({"instances": batch}).encode())
                for name, port, group in targets:
                    rate, cpu = throughput(pool, port, request, args.requests, args.clients,
                                           rows if name != "floor" else 0, group)
                    tput.setdefault((name, rows), []).append(rate)
                    cpu_ms.setdefault((name, rows), []).append(cpu)
                    lat.setdefault((name, rows), []).append(
                        client((port, request, args.latency_requests, rows if name != "floor" else 0)))
                frame = pd.DataFrame.from_records(batch, columns=churn_model.FEATURES)
                lat.setdefault(("in-process predict", rows), []).append(in_process(model, frame,
                                                                                   args.latency_requests))
    finally:
        if pool is not None:
            pool.terminate()
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(15)
            except ProcessLookupError:
                pass
    invocations = sum((tmp / log).read_text().count("POST /invocations 200")
                      for log in ("serve.log", "constant.log"))
    shutil.rmtree(tmp, ignore_errors=True)

    print(f"modelbot-serve vs its floor, {args.workers} workers, {args.clients} clients for throughput, one client "
          f"for latency; {args.rounds} rounds of {args.requests} + {args.latency_requests} requests per series "
          f"(load average {load_before:.1f} before the run, {os.getloadavg()[0]:.1f} at its end; the machine has "
          f"{os.cpu_count()} cores, shared with the clients)")

    def pct(name: str, rows: int, q: float) -> float:
        """The median over rounds of each round's percentile: one round caught by the machine's other work
        does not decide the figure."""
        return statistics.median(percentile(values, q) for values in lat[(name, rows)])

    print(f"{'rows':>4}  {'server':<20}{'req/s':>8}{'CPU ms/req':>11}{'p50 ms':>9}{'p99 ms':>9}")
    for rows in batches:
        for name in ("floor", "modelbot-serve", "runtime only", "in-process predict"):
            measured = (name, rows) in tput
            rate = f"{statistics.median(tput[(name, rows)]):>8.0f}" if measured else f"{'-':>8}"
            cpu = f"{statistics.median(cpu_ms[(name, rows)]):>11.3f}" if measured else f"{'-':>11}"
            print(f"{rows:>4}  {name:<20}{rate}{cpu}{1000 * pct(name, rows, 0.5):>9.3f}"
                  f"{1000 * pct(name, rows, 0.99):>9.2f}")

    def ratio(name: str, figures: dict, rows: int = 1) -> float:
        """The median over rounds of name / floor within each round."""
        return statistics.median(a / b for a, b in zip(figures[(name, rows)], figures[("floor", rows)]))

    ratios = {name: (ratio(name, tput), 1 / ratio(name, cpu_ms)) for name in ("runtime only", "modelbot-serve")}
    overheads = {rows: 1000 * (pct("modelbot-serve", rows, 0.99) - pct("in-process predict", rows, 0.99))
                 for rows in batches}
    goals = {"throughput": ratios["runtime only"][0] >= 0.7, "latency": all(o < 5 for o in overheads.values())}

    def verdict(met: bool) -> str:
        return "not judged (--quick)" if args.quick else ("PASS" if met else "FAIL")

    runtime_rate, runtime_cpu = ratios["runtime only"]
    model_rate, model_cpu = ratios["modelbot-serve"]
    print(f"throughput at 1 row, the runtime with a predict that costs nothing: {runtime_rate:.2f}x the floor's "
          f"(goal >= 0.7x) {verdict(goals['throughput'])}; on cores of its own (the floor's CPU per request over "
          f"its own): {runtime_cpu:.2f}x")
    print(f"  with churn_model's own predict: {model_rate:.2f}x ({verdict(model_rate >= 0.7)} against 0.7x), on "
          f"cores of its own {model_cpu:.2f}x; its predict alone takes {1000 * pct('in-process predict', 1, 0.5):.3f} "
          "ms in process")
    print("p99 over in-process predict: "
          + ", ".join(f"{rows} row{'s' if rows > 1 else ''} {o:+.2f} ms" for rows, o in overheads.items())
          + f" (goal < 5 ms) {verdict(goals['latency'])}; p50: "
          + ", ".join(f"{rows} row{'s' if rows > 1 else ''} "
                      f"{1000 * (pct('modelbot-serve', rows, 0.5) - pct('in-process predict', rows, 0.5)):+.2f} ms"
                      for rows in batches))
    expected = 2 * (2 * args.rounds * (args.requests + args.latency_requests) + 2 * 40)
    if invocations < expected:  # every request the server answered was logged with its inference id
        print(f"modelbot-serve logged {invocations} invocations; {expected} were sent")
        return 1
    return 0 if args.quick or all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
