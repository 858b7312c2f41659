"""Airflow going away mid-run: the watcher backs off and says so once per affected thread, then catches up."""

from __future__ import annotations

from datetime import timedelta

from bot.runs.service import watch_pass
from bot.store.base import as_utc, utcnow
from bot.runs.tables import WatcherState
from sandbox.scripted_airflow import FakeAirflow, run_json

DAG, RUN = "churn_lifecycle", "scheduled__2026-11-27T05:00:00+00:00"


def serve_a_running_run(fake: FakeAirflow, state: str = "running") -> None:
    runs = {"dag_runs": [run_json(DAG, RUN, state, run_type="scheduled", triggered_by="timetable",
                                  triggering_user_name=None, start_date="2026-11-27T05:00:01Z",
                                  **({"end_date": "2026-11-27T05:03:01Z"} if state == "success" else {}))],
            "total_entries": 1}
    fake.routes[("GET", "/api/v2/dags/~/dagRuns")] = lambda seen: (200, runs)
    fake.routes[("GET", f"/api/v2/dags/{DAG}/dagRuns/*")] = lambda seen: (200, {"task_instances": [], "total_entries": 0})
    fake.routes[("GET", f"/api/v2/dags/{DAG}/tasks")] = lambda seen: (200, {"tasks": [], "total_entries": 0})


def next_attempt_in(services) -> float:
    with services.store.session() as s:
        st = s.get(WatcherState, "run_watcher")
        return (as_utc(st.next_attempt_at) - utcnow()).total_seconds()


def let_backoff_pass(services) -> None:
    with services.store.session() as s:
        s.get(WatcherState, "run_watcher").next_attempt_at = utcnow() - timedelta(seconds=1)


def test_an_outage_is_told_once_per_thread_and_the_watcher_backs_off(fake, slack, database_url, models_file,
        make_services):
    serve_a_running_run(fake)
    services = make_services(AIRFLOW_URL=fake.url, MODELBOT_JOB_INTERVAL_SECONDS=30)
    try:
        assert watch_pass(services).startswith("1 runs checked")
        [parent] = slack.messages("C0CHURN")
        assert "the Airflow scheduler" in parent["text"]  # a scheduled run gets its thread too

        fake.stop()  # Airflow goes away: connections are refused from now on
        first = watch_pass(services)
        assert first.startswith("Airflow unreachable (failure 1; 1 threads told)")
        assert 25 < next_attempt_in(services) <= 30
        assert watch_pass(services).startswith("waiting: Airflow unreachable since")  # backing off: no call at all

        let_backoff_pass(services)
        assert watch_pass(services).startswith("Airflow unreachable (failure 2; 0 threads told)")
        assert 55 < next_attempt_in(services) <= 60  # twice as long

        replies = slack.thread("C0CHURN", parent["ts"])[1:]
        assert len(replies) == 1, [r["text"] for r in replies]
        assert replies[0]["text"].startswith(":warning: Airflow cannot be reached since ")
        assert f"Airflow at {fake.url} could not be reached (connection refused)" in replies[0]["text"]

        # Airflow comes back on the same address, the run has finished meanwhile.
        back = FakeAirflow(port=fake.port).start()
        try:
            serve_a_running_run(back, state="success")
            let_backoff_pass(services)
            summary = watch_pass(services)
        finally:
            back.stop()
        assert "Airflow is back after an outage" in summary
        texts = [m["text"] for m in slack.thread("C0CHURN", parent["ts"])[1:]]
        assert texts[0].startswith(":warning: Airflow cannot be reached")
        assert texts[1] == ":white_check_mark: Airflow answers again; catching up on this run."
        assert texts[2].startswith(f":white_check_mark: Run `{RUN}` *succeeded* in 3m 00s")
        assert len(texts) == 3
    finally:
        services.store.dispose()
