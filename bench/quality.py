"""Captured records joined and scored per second: a day of data capture and its labels through one measuring pass.

A day of `--records` requests (one instance each, as SageMaker captures modelbot-serve's answers: JSON Lines
with the request, the prediction, eventId, inferenceId and inferenceTime, ~600 bytes a line) in `--files`
capture files, and a Model Monitor ground-truth line for every request, collected the next day. moto serves S3
from its own process (its work is not counted as ours); the data is written by another child process, so this
one's memory is the pass's alone. Then, each in a fresh process:

- baseline: stream the same objects from S3 and json.loads every line: the floor any reader of the data pays;
- the pass (bot/quality/measure.py), on SQLite and, with --postgres URL or TEST_DATABASE_URL, PostgreSQL:
  stream and parse the capture, store it in the join; stream and parse the labels, join them; compute the day's
  AUC from all of its pairs; judge the window.

Printed: records per second for the whole pass and for each phase, the ratio to the baseline, and the peak RSS
of the process (data read from S3 is ~1 GB for a million records; the pass holds one 50,000-line batch and
the day's pairs). Goal: a day of a million records in under a minute on the development machine.

  .venv/bin/python bench/quality.py [--records 1000000] [--files 10] [--postgres URL] [--quick]

--quick (what `make test` runs so the benchmark cannot rot): 20,000 records on SQLite, all in this process; it
checks that every record is joined and scored and that the pass's AUC is the one computed directly, not how
fast (its RSS includes the data writer's and the baseline's).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, time as clock, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness import aws_env, free_port, wait_until  # noqa: E402

BUCKET, CAPTURE, LABELS = "bench-quality", "capture", "labels/"
ENDPOINT, VARIANT = "churn-prod", "v41"
DAY = (datetime.now(timezone.utc) - timedelta(days=2)).date()
GOAL_SECONDS = 60.0
# One capture line as SageMaker writes it; the request carries a realistic handful of features.
LINE = ('{"captureData": {"endpointInput": {"observedContentType": "application/json", "mode": "INPUT", '
        '"data": "{\\"instances\\": [{\\"tenure\\": %d, \\"monthly_charges\\": %.2f, \\"contract\\": '
        '\\"month-to-month\\", \\"support_calls\\": %d, \\"region\\": \\"eu-west\\", \\"age\\": %d}]}", '
        '"encoding": "JSON"}, "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT", '
        '"data": "{\\"predictions\\": [%.6f]}", "encoding": "JSON"}}, "eventMetadata": {"eventId": '
        '"%08x-1b2c-4d5e-8f90-%012x", "inferenceId": "cust-%d", "inferenceTime": "%sT%02d:%02d:%02dZ"}, '
        '"eventVersion": "0"}\n')
LABEL = '{"groundTruthData": {"data": "%d", "encoding": "CSV"}, "eventMetadata": {"eventId": "cust-%d"}, "eventVersion": "0"}\n'
MODELS = f"""
[defaults]
region = "us-east-1"

[models.churn]
dag_id = "churn_lifecycle"
endpoint = "{ENDPOINT}"
channel = "C0CHURN"
metric = "auc"
direction = "maximize"

[models.churn.pipeline]
module = "churn_model"
label = "churned"
image = "bench"
artifacts = "s3://{BUCKET}/artifacts"
capture_uri = "s3://{BUCKET}/{CAPTURE}"

[models.churn.quality]
labels = "s3://{BUCKET}/{LABELS}"
window_days = 7
tolerance = 0.05
min_labels = 200
"""


def truth(i: int) -> tuple[int, float]:
    """Request i's label and score: a model with an AUC near 0.8."""
    rng = random.Random(i)
    label = 1 if rng.random() < 0.3 else 0
    return label, round(min(1.0, max(0.0, rng.gauss(0.62 if label else 0.38, 0.2))), 6)  # as the line has it


def write_data(moto_url: str, records: int, files: int) -> int:
    """Child process: the capture files (one hour folder each) and the label files. Returns bytes written."""
    import boto3

    os.environ.update(aws_env(moto_url))
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    per_file, written = -(-records // files), 0
    for f in range(files):
        hour = f % 24
        lines, labels = [], []
        for i in range(f * per_file, min(records, (f + 1) * per_file)):
            label, score = truth(i)
            minute, second = (i // 60) % 60, i % 60
            lines.append(LINE % (i % 72, 20 + i % 90, i % 7, 18 + i % 60, score, i, i, i, DAY, hour, minute, second))
            labels.append(LABEL % (label, i))
        capture = "".join(lines).encode()
        s3.put_object(Bucket=BUCKET, Key=f"{CAPTURE}/{ENDPOINT}/{VARIANT}/{DAY:%Y/%m/%d}/{hour:02d}/part-{f:03d}.jsonl",
                      Body=capture)
        s3.put_object(Bucket=BUCKET, Key=f"{LABELS}{DAY + timedelta(days=1):%Y/%m/%d}/{hour:02d}/labels-{f:03d}.jsonl",
                      Body="".join(labels).encode())
        written += len(capture)
    return written


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started, or since reset_peak_rss()."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Linux: the peak starts again from the current RSS (so the pass's peak is not the imports')."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def baseline(moto_url: str) -> dict:
    """Child process: stream every capture object and json.loads each line."""
    import json

    import boto3

    os.environ.update(aws_env(moto_url))
    s3 = boto3.client("s3", region_name="us-east-1")
    start, cpu, lines = time.perf_counter(), time.process_time(), 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=CAPTURE + "/"):
        for item in page.get("Contents", []):
            for line in s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].iter_lines(256 * 1024):
                json.loads(line)
                lines += 1
    return {"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu, "lines": lines,
            "rss": peak_rss_mb()}


def the_pass(moto_url: str, database_url: str, models_file: str) -> dict:
    """Child process: one measuring pass of the model, on a fresh database."""
    os.environ.update(aws_env(moto_url))
    from sqlalchemy import select

    from bot.config import Settings
    from bot.quality import measure
    from bot.quality.tables import QualityDay
    from bot.services import Services

    settings = Settings(_env_file=None, SLACK_BOT_TOKEN="xoxb-bench", SLACK_API_URL="http://127.0.0.1:9/api/",
                        DATABASE_URL=database_url, MODELS_FILE=models_file)
    services = Services.from_settings(settings)
    model = services.registry.get("churn")
    measured_alone = reset_peak_rss()
    rss_before = peak_rss_mb()
    now = datetime.combine(DAY + timedelta(days=2), clock(6), tzinfo=timezone.utc)
    start, cpu = time.perf_counter(), time.process_time()
    outcome = measure.measure(services, model, now=now, budget=3600)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    with services.store.session() as s:
        day = s.scalars(select(QualityDay).where(QualityDay.model == "churn")).one()
        result = {"labelled": day.labelled, "predictions": day.predictions, "value": day.value}
    services.store.dispose()
    return {"seconds": seconds, "cpu": cpu, "phases": outcome.seconds, "lines": outcome.lines,
            "rss_before": rss_before, "rss": peak_rss_mb(), "alone": measured_alone, "notes": outcome.notes, **result}


def in_child(fn, *args, quick: bool = False):
    """Runs fn in a fresh process (its own memory high-water mark) and returns its result; --quick runs it here,
    paying the imports once."""
    if quick:
        return fn(*args)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def expected_auc(records: int) -> float:
    from bot.quality import metrics

    pairs = [truth(i) for i in range(records)]
    return metrics.score("auc", [y for y, _ in pairs], [s for _, s in pairs]).value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--postgres", default=os.environ.get("TEST_DATABASE_URL"),
                        help="also run the pass on this PostgreSQL database (default: TEST_DATABASE_URL)")
    parser.add_argument("--quick", action="store_true", help="20,000 records on SQLite: does it still work?")
    args = parser.parse_args()
    records, files = (20_000, 2) if args.quick else (args.records, args.files)
    tmp = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    moto_url = f"http://127.0.0.1:{port}"
    databases: list[tuple[str, str]] = []
    try:
        import requests

        wait_until(lambda: _up(requests, moto_url), timeout=30, message="moto")
        started = time.perf_counter()
        size = in_child(write_data, moto_url, records, files, quick=args.quick)
        print(f"{records:,} captured requests ({size / 1e6:,.0f} MB in {files} files) and their labels written to "
              f"moto S3 in {time.perf_counter() - started:.0f} s")
        (tmp / "models.toml").write_text(MODELS)
        databases.append(("SQLite", f"sqlite:///{tmp / 'quality.db'}"))
        if args.postgres and not args.quick:
            databases.append(("PostgreSQL", _fresh_postgres(args.postgres)))
        base = in_child(baseline, moto_url, quick=args.quick)
        print(f"\nbaseline (stream + json.loads each line): {base['lines'] / base['seconds']:,.0f} lines/s, "
              f"{base['seconds']:.1f} s wall, {base['cpu']:.1f} s CPU, peak RSS {base['rss']:.0f} MB")
        want = expected_auc(records)
        failures = []
        for name, url in databases:
            got = in_child(the_pass, moto_url, url, str(tmp / "models.toml"), quick=args.quick)
            rate = records / got["seconds"]
            phases = ", ".join(f"{k} {v:.1f} s" for k, v in got["phases"].items())
            print(f"\n{name}: {records:,} records joined and scored in {got['seconds']:.1f} s ({rate:,.0f} records/s; "
                  f"{got['cpu']:.1f} s CPU): {phases}")
            when = "during the pass" if got["alone"] else "of the process"
            print(f"  {got['seconds'] / base['seconds']:.1f}x the baseline's time; peak RSS {when} {got['rss']:.0f} MB "
                  f"({got['rss_before']:.0f} MB as it began) while reading {2 * size / 1e6:,.0f} MB from S3")
            print(f"  day value auc {got['value']:.4f} on {got['labelled']:,} labels "
                  f"(computed directly: {want:.4f}); goal: a day of a million records in under "
                  f"{GOAL_SECONDS:.0f} s -> {1e6 / rate:.0f} s at this rate")
            if got["labelled"] != records or got["predictions"] != records or abs(got["value"] - want) > 1e-9:
                failures.append(f"{name}: {got['labelled']:,} labelled and {got['predictions']:,} captured of "
                                f"{records:,}, auc {got['value']} vs {want} ({got['notes']})")
        for failure in failures:
            print("FAILED:", failure)
        return 1 if failures else 0
    finally:
        moto.terminate()
        moto.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
        for _, url in databases[1:]:
            _drop_postgres(url)


def _up(requests, url: str) -> bool:
    try:
        return requests.post(url + "/moto-api/reset", timeout=1).ok
    except requests.RequestException:
        return False


def _admin(url: str) -> tuple[str, str]:
    from sqlalchemy.engine import make_url

    base = make_url(url)
    return base.set(drivername="postgresql").render_as_string(hide_password=False), base.database


def _fresh_postgres(url: str) -> str:
    """A new, empty database beside the one named (dropped when the run ends)."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"bench_quality_{os.getpid()}"
    admin, _ = _admin(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _drop_postgres(url: str) -> None:
    import psycopg

    admin, name = _admin(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
