"""The Airflow adapter when Airflow misbehaves: every failure is a sentence naming Airflow and what was not done."""

from __future__ import annotations

import time
import urllib.parse

import pytest

from bot.integrations.airflow import (
    AirflowAdapter,
    AirflowAuthError,
    AirflowConflict,
    AirflowError,
    AirflowUnreachable,
    DagNotFound,
)
from tests.harness import free_port
from sandbox.scripted_airflow import EMPTY_RUNS, run_json

RUNS = "/api/v2/dags/~/dagRuns"
TOKEN = "/auth/token"


def test_a_refused_connection_is_reported_at_once():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(AirflowUnreachable) as err:
        AirflowAdapter(url).trigger("churn_lifecycle", {"model": "churn"})
    assert time.monotonic() - started < 2
    assert str(err.value) == (
        f"Airflow at {url} could not be reached (connection refused); the DAG `churn_lifecycle` was not triggered."
    )


def test_an_expired_token_means_one_new_login_then_the_call_goes_through(fake):
    logins = []

    def login(seen):
        logins.append(seen.body)
        return 201, {"access_token": f"token-{len(logins)}"}

    fake.routes[("POST", TOKEN)] = login
    # The first token has "expired" by the time it is used; the second one works.
    fake.routes[("GET", RUNS)] = lambda seen: (200, EMPTY_RUNS) if seen.authorization == "Bearer token-2" else (401, {"detail": "Token expired"})
    adapter = AirflowAdapter(fake.url, username="modelbot", password="pw")

    runs, _ = adapter.changed_runs(["churn_lifecycle"], None)

    assert runs == []
    assert logins == [{"username": "modelbot", "password": "pw"}] * 2
    assert [c.authorization for c in fake.calls("GET", RUNS)] == ["Bearer token-1", "Bearer token-2"]


def test_a_login_that_is_refused_again_is_reported_not_retried_forever(fake):
    fake.routes[("POST", TOKEN)] = lambda seen: (201, {"access_token": "token"})
    fake.routes[("GET", RUNS)] = lambda seen: (401, {"detail": "Invalid token"})
    adapter = AirflowAdapter(fake.url, username="modelbot", password="pw")

    with pytest.raises(AirflowAuthError) as err:
        adapter.changed_runs(["churn_lifecycle"], None)

    assert len(fake.calls("POST", TOKEN)) == 2  # the first login and exactly one re-login
    assert len(fake.calls("GET", RUNS)) == 2
    assert "401 Unauthorized" in str(err.value) and "even after a new login" in str(err.value)
    assert str(err.value).endswith("the runs were not checked this pass.")


def test_wrong_password_names_the_settings_to_check(fake):
    fake.routes[("POST", TOKEN)] = lambda seen: (401, {"detail": "Invalid credentials"})
    with pytest.raises(AirflowAuthError) as err:
        AirflowAdapter(fake.url, username="modelbot", password="nope").trigger("churn_lifecycle", {})
    assert "rejected the login of AIRFLOW_USERNAME `modelbot`" in str(err.value)
    assert str(err.value).endswith("the DAG `churn_lifecycle` was not triggered.")


def test_a_fixed_token_is_never_swapped_and_its_rejection_says_so(fake):
    fake.routes[("GET", RUNS)] = lambda seen: (401, {"detail": "Token expired"})
    with pytest.raises(AirflowAuthError) as err:
        AirflowAdapter(fake.url, token="fixed").changed_runs(["churn_lifecycle"], None)
    assert fake.calls("POST", TOKEN) == []
    assert [c.authorization for c in fake.calls("GET", RUNS)] == ["Bearer fixed"]
    assert "AIRFLOW_TOKEN was rejected" in str(err.value)


def test_no_credentials_against_a_secured_airflow_says_what_to_set(fake):
    fake.routes[("GET", RUNS)] = lambda seen: (401, {"detail": "Not authenticated"})
    with pytest.raises(AirflowAuthError) as err:
        AirflowAdapter(fake.url).changed_runs(["churn_lifecycle"], None)
    assert fake.seen[0].authorization is None
    assert "set AIRFLOW_TOKEN, or AIRFLOW_USERNAME and AIRFLOW_PASSWORD" in str(err.value)


@pytest.mark.parametrize(
    "status, body, kind, words",
    [
        (403, {"detail": "Forbidden"}, AirflowAuthError, "403 Forbidden: modelbot's Airflow user lacks the permission on DAG `churn_lifecycle`"),
        (404, {"detail": "Dag with dag_id: 'churn_lifecycle' not found"}, DagNotFound, "has no DAG `churn_lifecycle`"),
        (409, {"detail": "DAG Run already exists"}, AirflowConflict, "409 Conflict (DAG Run already exists)"),
        (400, {"detail": "Invalid conf"}, AirflowError, "refused the request with HTTP 400 (Invalid conf)"),
    ],
)
def test_refusals_are_sentences(fake, status, body, kind, words):
    path = "/api/v2/dags/churn_lifecycle/dagRuns"
    fake.routes[("POST", path)] = lambda seen: (status, body)
    with pytest.raises(kind) as err:
        AirflowAdapter(fake.url).trigger("churn_lifecycle", {}, check_paused=False)
    assert str(err.value).startswith(f"Airflow at {fake.url} ")
    assert words in str(err.value)
    assert str(err.value).endswith("the DAG `churn_lifecycle` was not triggered.")
    assert len(fake.calls("POST", path)) == 1  # a refusal is not retried


def test_a_trigger_answered_500_is_retried_with_the_same_run_id(fake):
    path = "/api/v2/dags/churn_lifecycle/dagRuns"
    posted, fetched = [], []

    def trigger(seen):
        posted.append(seen.body["dag_run_id"])
        # The first POST was applied although Airflow answered 500 (a locked SQLite database, say).
        return (500, {"detail": "Database error"}) if len(posted) == 1 else (409, {"detail": "exists"})

    def get_run(seen):
        fetched.append(urllib.parse.unquote(seen.path.rsplit("/", 1)[1]))
        return 200, run_json("churn_lifecycle", fetched[-1])

    fake.routes[("POST", path)] = trigger
    fake.routes[("GET", path + "/*")] = get_run

    info = AirflowAdapter(fake.url).trigger("churn_lifecycle", {"model": "churn"}, check_paused=False)

    assert len(posted) == 2 and posted[0] == posted[1] and posted[0].startswith("modelbot__")
    assert info.run_id == posted[0] and fetched == [posted[0]]
    assert fake.calls("POST", path)[0].body["logical_date"] is None


def test_a_persistent_500_is_retried_a_little_then_reported(fake):
    fake.routes[("GET", RUNS)] = lambda seen: (500, {"detail": "Database error"})
    with pytest.raises(AirflowError) as err:
        AirflowAdapter(fake.url).changed_runs(["churn_lifecycle"], None)
    assert len(fake.calls("GET", RUNS)) == 3
    assert "failed with HTTP 500 (Database error)" in str(err.value)


def test_a_hanging_airflow_times_out(fake):
    fake.routes[("GET", RUNS)] = lambda seen: (200, EMPTY_RUNS, 2.0)
    started = time.monotonic()
    with pytest.raises(AirflowUnreachable) as err:
        AirflowAdapter(fake.url, read_timeout=0.5).changed_runs(["churn_lifecycle"], None)
    assert time.monotonic() - started < 1.8
    assert "could not be reached (no answer within 0.5 s); the runs were not checked this pass." in str(err.value)
