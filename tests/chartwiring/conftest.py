"""Fixtures for the chart wiring: a scripted Airflow DAG (on tests/runs' fake Airflow), S3 objects in moto."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

import boto3
import pytest

from sandbox.scripted_airflow import FakeAirflow, run_json, task_json, xcom_json  # noqa: F401

DAG = "churn_lifecycle"
CONF = {"model": "churn", "requested_by": "U0ALICE"}


@dataclass
class ScriptedDag:
    """What Airflow says about the runs of one DAG, changed by the test between watcher passes."""

    fake: FakeAirflow
    dag_id: str = DAG
    runs: dict[str, dict] = field(default_factory=dict)
    tasks: dict[str, list[dict]] = field(default_factory=dict)
    xcoms: dict[tuple[str, str], object] = field(default_factory=dict)

    def __post_init__(self):
        base = f"/api/v2/dags/{self.dag_id}"
        self.fake.routes[("GET", "/api/v2/dags/~/dagRuns")] = lambda seen: (
            200, {"dag_runs": list(self.runs.values()), "total_entries": len(self.runs)})
        self.fake.routes[("GET", f"{base}/tasks")] = lambda seen: (200, {"tasks": [], "total_entries": 0})
        self.fake.routes[("GET", f"{base}/dagRuns/*")] = self._run_path

    def _run_path(self, seen):
        rest = seen.path.split("/dagRuns/", 1)[1].split("/")
        run_id = urllib.parse.unquote(rest[0])
        if run_id not in self.runs:
            return 404, {"detail": f"DagRun {run_id} not found"}
        if len(rest) == 1:
            return 200, self.runs[run_id]
        if rest[1:] == ["taskInstances"]:
            tasks = self.tasks.get(run_id, [])
            return 200, {"task_instances": tasks, "total_entries": len(tasks)}
        if len(rest) == 5 and rest[1] == "taskInstances" and rest[3:] == ["xcomEntries", "return_value"]:
            key = (run_id, rest[2])
            if key in self.xcoms:
                return 200, xcom_json(self.dag_id, run_id, rest[2], self.xcoms[key])
        return 404, {"detail": "Not Found"}

    def run(self, run_id: str, state: str, *, queued: str, start: str | None = None, end: str | None = None) -> None:
        extra = {"start_date": start} if start else {}
        if end:
            extra["end_date"] = end
        self.runs[run_id] = run_json(self.dag_id, run_id, state, conf=CONF, queued_at=queued, **extra)

    def task(self, run_id: str, task_id: str, state: str | None, start: str | None = None,
             end: str | None = None) -> None:
        row = task_json(self.dag_id, run_id, task_id, state)
        row.update(start_date=start, end_date=end)
        self.tasks[run_id] = [t for t in self.tasks.get(run_id, []) if t["task_id"] != task_id] + [row]


@pytest.fixture
def dag(fake) -> ScriptedDag:
    return ScriptedDag(fake)


def put_object(bucket: str, key: str, body: bytes) -> str:
    s3 = boto3.client("s3", region_name="us-east-1")
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return f"s3://{bucket}/{key}"
