"""One rollout-controller tick over 500 progressing rollouts: batched GetMetricData against one call per rollout.

Everything real but AWS and Slack: moto in server mode (started here, in its own process, so its work is not
counted as ours), the Slack emulator (also its own process), a SQLite database, the real judgement. Each
rollout has its own endpoint, its own step start within the last 40 minutes, and CloudWatch datapoints per
variant; the counts are inconclusive, so every rollout waits and its evidence message is edited in place --
the steady state of a busy controller. The same tick runs twice from identical copies of the database:
once batched (up to 500 queries per GetMetricData call) and once with one call per rollout (the baseline).

  python bench/controller_tick.py [--rollouts 500] [--quick]

--quick (what `make test` runs so the benchmark cannot rot): 20 rollouts; it checks that both ticks judge every
rollout and that batching takes fewer calls, not how fast.

Printed: GetMetricData calls, CPU time of this process (time.process_time) and wall time, for the metrics
phase alone and for the whole tick, and the ratios. moto answers GetMetricData in time proportional to
queries x datapoints (CloudWatch does not), so wall time here overstates the server's share.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from tests.harness import aws_env, free_port  # noqa: E402

CHANNEL = "C0BENCH"


def wait_for(url: str, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.post(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not start within {timeout}s")


def start_servers(tmp: Path) -> tuple[list[subprocess.Popen], str, str]:
    moto_port, slack_port = free_port(), free_port()
    log = open(tmp / "servers.log", "wb")
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=log, stderr=subprocess.STDOUT)
    slack = subprocess.Popen([sys.executable, "-m", "sandbox.slack_emulator", "--port", str(slack_port)], cwd=ROOT,
                             stdout=log, stderr=subprocess.STDOUT)
    moto_url, slack_url = f"http://127.0.0.1:{moto_port}", f"http://127.0.0.1:{slack_port}"
    wait_for(moto_url + "/moto-api/reset", "moto")
    wait_for(slack_url + "/api/auth.test", "the Slack emulator")
    return [moto, slack], moto_url, slack_url + "/api/"


def models_toml(n: int) -> str:
    lines = ['[defaults]\nregion = "us-east-1"\nalert_channel = "C0ALERTS"\noncall = "S0ONCALL"\n']
    for i in range(n):
        lines.append(f'[models.m{i:03d}]\nendpoint = "ep-{i:03d}"\nchannel = "{CHANNEL}"\nowners = ["U0OWNER"]\n')
    return "\n".join(lines)


def seed(services, n: int, now: datetime, rng: random.Random) -> None:
    """n progressing rollouts at 10%, each with its thread message and 10-40 minutes of inconclusive traffic."""
    import boto3

    from bot.rollouts.tables import Rollout

    cw = boto3.client("cloudwatch", region_name="us-east-1")
    rows, data = [], []
    for i in range(n):
        started = now - timedelta(minutes=rng.randint(10, 40))
        ts = services.slack.chat_postMessage(channel=CHANNEL, text=f"Step 1 of 3 for m{i:03d}")["ts"]
        rows.append(Rollout(
            model=f"m{i:03d}", active_model=f"m{i:03d}", source="slack", endpoint=f"ep-{i:03d}", region="us-east-1",
            stable_variant="blue", candidate_variant="green", steps=[10.0, 25.0, 50.0, 100.0], state="progressing",
            step_index=0, step_started_at=started, timer_started_at=started, thread_channel=CHANNEL, thread_ts=ts,
            evidence_ts=ts, target_weights={"blue": 0.9, "green": 0.1}, owns_parent=False, version=1,
            created_at=started, updated_at=started,
        ))
        stable = rng.randint(4_000, 9_000)
        candidate = stable // 9
        for variant, requests_, rate in (("blue", stable, 0.005), ("green", candidate, 0.006)):
            dims = [{"Name": "EndpointName", "Value": f"ep-{i:03d}"}, {"Name": "VariantName", "Value": variant}]
            for metric, value in (("Invocations", requests_), ("Invocation5XXErrors", round(requests_ * rate)),
                                  ("Invocation4XXErrors", round(requests_ * 0.01))):
                data.append({"MetricName": metric, "Dimensions": dims, "Timestamp": started, "Value": float(value),
                             "Unit": "None"})
    with services.store.session() as s:
        s.add_all(rows)
    for k in range(0, len(data), 900):
        cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=data[k: k + 900])


@contextmanager
def measured(totals: dict):
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        yield
    finally:
        totals["cpu"] += time.process_time() - cpu
        totals["wall"] += time.perf_counter() - wall


def run_tick(services, now: datetime, max_queries_per_call: int) -> dict:
    from jobs import rollout_controller

    metrics = {"cpu": 0.0, "wall": 0.0}
    cloudwatch = services.cloudwatch
    real_fetch = cloudwatch.fetch_counts

    def timed_fetch(*args, **kwargs):
        with measured(metrics):
            return real_fetch(*args, **kwargs)

    cloudwatch.fetch_counts = timed_fetch
    whole = {"cpu": 0.0, "wall": 0.0}
    try:
        with measured(whole):
            stats = rollout_controller.tick(services, now, max_queries_per_call=max_queries_per_call)
    finally:
        del cloudwatch.fetch_counts  # the instance attribute; the class's method shows again
    return {"stats": stats, "metrics": metrics, "whole": whole}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rollouts", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="20 rollouts: does the tick still run?")
    args = parser.parse_args(argv)
    if args.quick:
        args.rollouts = 20
    tmp = Path(tempfile.mkdtemp(prefix="modelbot-bench-"))
    servers, moto_url, slack_api = start_servers(tmp)
    try:
        os.environ.update(aws_env(moto_url))
        models = tmp / "models.toml"
        models.write_text(models_toml(args.rollouts))
        from bot.config import load_settings
        from bot.services import Services

        def services_for(db: Path):
            return Services.from_settings(load_settings(
                SLACK_BOT_TOKEN="xoxb-bench", SLACK_API_URL=slack_api, DATABASE_URL=f"sqlite:///{db}",
                MODELS_FILE=str(models), AIRFLOW_URL=None, PAGERDUTY_ROUTING_KEY=None), migrate=True)

        now = datetime.now(timezone.utc).replace(microsecond=0)
        base = tmp / "seed.db"
        seeding = services_for(base)
        print(f"seeding {args.rollouts} progressing rollouts (database, Slack messages, CloudWatch datapoints)…")
        seed(seeding, args.rollouts, now, random.Random(7))
        seeding.store.dispose()
        for name in ("batched.db", "baseline.db"):
            shutil.copy(base, tmp / name)
        # Warm both paths once (imports, client creation, first connections) on a throwaway copy.
        shutil.copy(base, tmp / "warm.db")
        warm = services_for(tmp / "warm.db")
        run_tick(warm, now, 500)
        warm.store.dispose()

        results = {}
        for label, db, per_call in (("batched", "batched.db", 500), ("one call per rollout", "baseline.db", 6)):
            services = services_for(tmp / db)
            results[label] = run_tick(services, now, per_call)
            services.store.dispose()
        batched, baseline = results["batched"], results["one call per rollout"]

        print(f"\nOne controller tick over {args.rollouts} progressing rollouts (moto server mode, real judgement)")
        print(f"{'':22} {'GetMetricData':>13} {'metrics CPU':>12} {'metrics wall':>13} {'tick CPU':>9} {'tick wall':>10}")
        for label, r in results.items():
            print(f"{label:22} {r['stats'].cloudwatch_calls:>13} {r['metrics']['cpu']:>11.2f}s "
                  f"{r['metrics']['wall']:>12.2f}s {r['whole']['cpu']:>8.2f}s {r['whole']['wall']:>9.2f}s")
        print(f"{'ratio (baseline/batched)':22} "
              f"{baseline['stats'].cloudwatch_calls / max(1, batched['stats'].cloudwatch_calls):>12.0f}x "
              f"{baseline['metrics']['cpu'] / batched['metrics']['cpu']:>11.1f}x "
              f"{baseline['metrics']['wall'] / batched['metrics']['wall']:>12.1f}x "
              f"{baseline['whole']['cpu'] / batched['whole']['cpu']:>8.1f}x "
              f"{baseline['whole']['wall'] / batched['whole']['wall']:>9.1f}x")
        for label, r in results.items():
            print(f"{label}: {r['stats'].summary()}")
        # Sanity, whatever the machine's speed: each tick took up every rollout without a problem, and batching
        # took fewer calls than one per rollout.
        broken = [f"{label}: {sum(r['stats'].counts.values())} of {args.rollouts} rollouts taken up, problems "
                  f"{r['stats'].problems}" for label, r in results.items()
                  if sum(r["stats"].counts.values()) != args.rollouts or r["stats"].problems]
        if batched["stats"].cloudwatch_calls >= baseline["stats"].cloudwatch_calls > 1:
            broken.append("the batched tick made as many GetMetricData calls as the baseline")
        for line in broken:
            print(f"FAIL {line}")
        return 1 if broken else 0
    finally:
        for proc in servers:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
