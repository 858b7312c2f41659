"""The run watcher posts the evaluation, diagnostics and run-history charts into the run's thread, once each,
although two workers watch at once and every pass is a fresh start (a restart)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from bot.config import Settings
from bot.runs.service import watch_pass
from bot.store.base import utcnow
from bot.runs.tables import Evaluation
from tests.chartwiring.conftest import put_object
from tests import watcher_workers
from tests.harness import BOT_TOKEN

EARLIER = "manual__2026-11-26T05-00-00_a"  # failed at train
RUN = "manual__2026-11-27T05-00-00_b"  # the one evaluated here
EVALUATE = {"metric": "auc", "candidate": 0.91, "production": 0.89, "promote": True}


def diagnostics_csv() -> tuple[bytes, float]:
    """A classifier's labels and scores, and their ROC AUC worked out pair by pair (not by the chart's code)."""
    rng = np.random.default_rng(7)
    y = np.tile([0, 1], 100)
    score = np.round(np.clip(0.35 + 0.3 * y + rng.normal(0, 0.2, y.size), 0, 1), 3)
    pos, neg = score[y == 1], score[y == 0]
    auc = float(((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean())
    body = "y_true,y_pred\n" + "".join(f"{a},{b}\n" for a, b in zip(y, score))
    return body.encode(), auc


def two_workers_pass(slack, database_url, models_file, airflow_url) -> list[str]:
    return watcher_workers.two_workers_pass(
        Settings(_env_file=None, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_API_URL=slack.api_url, DATABASE_URL=database_url,
                 MODELS_FILE=str(models_file), AIRFLOW_URL=airflow_url), timeout=60)


def prepare(make_services, airflow_url) -> None:
    """Migrates the database (once, before workers race) and records an earlier evaluation of churn."""
    services = make_services(AIRFLOW_URL=airflow_url)
    with services.store.session() as s:
        s.add(Evaluation(model="churn", dag_id="churn_lifecycle", run_id="manual__2026-11-20", metric="auc",
                         candidate=0.88, production=0.87, direction="maximize", promote=True,
                         at=utcnow() - timedelta(days=7)))
    services.store.dispose()


def parent_ts(slack, run_id: str) -> str:
    [parent] = [m for m in slack.messages("C0CHURN")
                if ((m.get("metadata") or {}).get("event_payload") or {}).get("key") == f"churn_lifecycle/{run_id}/parent"]
    return parent["ts"]


def uploads(slack, ts: str) -> list:
    return [f for f in slack.files if f.thread_ts == ts]


def replies(slack, ts: str) -> list[str]:
    return [m["text"] for m in slack.thread("C0CHURN", ts)[1:] if not m.get("files")]


def script_runs(dag, diagnostics_uri: str | None, *, finished: bool = False, earlier: bool = True) -> None:
    if earlier:
        script_earlier(dag)
    end = "2026-11-27T05:20:00Z" if finished else None
    dag.run(RUN, "success" if finished else "running", queued="2026-11-27T05:00:00Z", start="2026-11-27T05:00:01Z",
            end=end)
    dag.task(RUN, "preprocess", "success", "2026-11-27T05:00:05Z", "2026-11-27T05:03:05Z")
    dag.task(RUN, "train", "success", "2026-11-27T05:03:10Z", "2026-11-27T05:15:10Z")
    dag.task(RUN, "evaluate", "success", "2026-11-27T05:15:15Z", "2026-11-27T05:17:15Z")
    dag.task(RUN, "report", "success" if finished else "running", "2026-11-27T05:17:20Z", end)
    dag.xcoms[(RUN, "evaluate")] = {**EVALUATE, "diagnostics_uri": diagnostics_uri}


def script_earlier(dag) -> None:
    dag.run(EARLIER, "failed", queued="2026-11-26T05:00:00Z", start="2026-11-26T05:00:01Z", end="2026-11-26T05:09:00Z")
    dag.task(EARLIER, "preprocess", "success", "2026-11-26T05:00:05Z", "2026-11-26T05:02:05Z")
    dag.task(EARLIER, "train", "failed", "2026-11-26T05:02:10Z", "2026-11-26T05:08:40Z")
    dag.task(EARLIER, "evaluate", "upstream_failed")


def test_evaluation_diagnostics_and_run_history_land_in_the_run_thread_once(
        aws, fake, dag, slack, database_url, models_file, make_services):
    body, auc = diagnostics_csv()
    uri = put_object("modelbot-diagnostics", f"churn_lifecycle/{RUN}/diagnostics.csv", body)
    script_runs(dag, uri)
    prepare(make_services, fake.url)

    for _ in range(2):  # the second pass (two more fresh workers) must add nothing
        results = two_workers_pass(slack, database_url, models_file, fake.url)
        assert all("0 failed" in r for r in results), results
        ts = parent_ts(slack, RUN)
        assert len(uploads(slack, ts)) == 2, [f.title for f in uploads(slack, ts)]

    evaluation_reply = [t for t in replies(slack, ts) if "*Evaluation*" in t]
    assert len(evaluation_reply) == 1 and "Candidate *0.91* vs production *0.89*" in evaluation_reply[0]
    chart, diagnostics = uploads(slack, ts)
    assert chart.channel == "C0CHURN" and diagnostics.channel == "C0CHURN"
    assert chart.completed and chart.data.startswith(b"\x89PNG")
    assert chart.alt_txt.startswith("churn evaluation on auc (higher is better): candidate 0.91 vs production 0.89 "
                                    "(+0.02, better); promotion recommended.")
    assert "1 earlier evaluation(s)" in chart.alt_txt  # the model's past evaluations are the history
    assert "auc candidate 0.91 vs production 0.89" in chart.title
    assert f"ROC AUC {auc:.3f}" in diagnostics.alt_txt and "200 rows" in diagnostics.title
    assert diagnostics.data.startswith(b"\x89PNG")

    # The run ends: the end is told, then the run-history chart, once, however many workers look.
    script_runs(dag, uri, finished=True)
    for _ in range(2):
        two_workers_pass(slack, database_url, models_file, fake.url)
        assert len(uploads(slack, ts)) == 3, [f.title for f in uploads(slack, ts)]
    history = uploads(slack, ts)[2]
    assert history.alt_txt.startswith("churn: last 2 runs of churn_lifecycle, 1 succeeded, 1 failed.")
    assert f"Run {EARLIER} (2026-11-26 05:00 UTC) failed at train." in history.alt_txt
    assert f"Latest run {RUN} succeeded after 20 min." in history.alt_txt
    thread = slack.thread("C0CHURN", ts)
    ended = next(i for i, m in enumerate(thread) if "*succeeded*" in m["text"])
    assert thread[ended + 1].get("files"), "the run-history chart follows the end of the run"

    # The earlier run, failed when first seen, got its own run-history chart in its own thread, once.
    earlier = uploads(slack, parent_ts(slack, EARLIER))
    assert len(earlier) == 1 and "failed at train" in earlier[0].alt_txt


def test_unreadable_diagnostics_are_told_once_in_words(aws, fake, dag, slack, database_url, models_file,
                                                     make_services):
    put_object("modelbot-diagnostics", "elsewhere.csv", b"y_true,y_pred\n1,0.9\n")
    uri = f"s3://modelbot-diagnostics/churn_lifecycle/{RUN}/missing.csv"
    script_runs(dag, uri)
    prepare(make_services, fake.url)

    for _ in range(2):
        two_workers_pass(slack, database_url, models_file, fake.url)
    ts = parent_ts(slack, RUN)
    told = [t for t in replies(slack, ts) if "diagnostics could not be read" in t]
    assert len(told) == 1, replies(slack, ts)
    assert "S3 did not return the diagnostics CSV" in told[0] and uri in told[0] and "NoSuchKey" in told[0]
    [chart] = uploads(slack, ts)  # the evaluation chart still came; no diagnostics chart
    assert chart.alt_txt.startswith("churn evaluation on auc")


def test_a_chart_slack_refused_is_posted_on_a_later_pass(aws, fake, dag, slack, database_url, models_file,
                                                        make_services):
    script_runs(dag, None, earlier=False)
    prepare(make_services, fake.url)
    services = make_services(AIRFLOW_URL=fake.url)
    try:
        slack.error_next("files.getUploadURLExternal", "ratelimited")
        assert "0 failed" in watch_pass(services)
        ts = parent_ts(slack, RUN)
        assert uploads(slack, ts) == [] and any("*Evaluation*" in t for t in replies(slack, ts))
        for _ in range(2):
            watch_pass(services)
            assert len(uploads(slack, ts)) == 1
    finally:
        services.store.dispose()
    assert uploads(slack, ts)[0].alt_txt.startswith("churn evaluation on auc")
    assert len([t for t in replies(slack, ts) if "*Evaluation*" in t]) == 1

