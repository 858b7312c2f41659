"""Airflow adapter: apache-airflow-client 3.3 (REST API v2), plus the one POST /auth/token the client lacks.

Every call has a timeout, and every failure becomes an AirflowError whose message names Airflow and what was
not done, so handlers can show it as is. Auth is one of: a fixed token (AIRFLOW_TOKEN), a token obtained with
AIRFLOW_USERNAME/AIRFLOW_PASSWORD through POST /auth/token (obtained again, once, when Airflow answers 401:
tokens expire), or none (Airflow's simple auth manager with all-admins, or an auth proxy in front).
"""

from __future__ import annotations

import email.utils
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar
from urllib.parse import quote

import urllib3
from airflow_client.client import ApiClient, Configuration
from airflow_client.client.api.dag_api import DAGApi
from airflow_client.client.api.dag_run_api import DagRunApi
from airflow_client.client.api.task_api import TaskApi
from airflow_client.client.api.task_instance_api import TaskInstanceApi
from airflow_client.client.api.x_com_api import XComApi
from airflow_client.client.exceptions import ApiException, OpenApiException
from airflow_client.client.models import DAGPatchBody, TriggerDAGRunPostBody
from pydantic import ValidationError

from bot.errors import ExternalError
from bot.redaction import split_credentials, without_credentials

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 10.0
PAGE_SIZE = 100
RETRIES_5XX = 2
RETRY_PAUSE_SECONDS = 0.5
MAX_PAGES = 20  # 2,000 changed runs in one pass is already far more than a watcher pass should chew

T = TypeVar("T")


class AirflowError(ExternalError):
    """An Airflow call failed; the message names Airflow and what was not done."""

    transient = False  # worth one more try soon (Airflow answered 5xx: e.g. its SQLite database was locked)


class AirflowUnreachable(AirflowError):
    """No answer: connection refused, DNS, TLS, timeout. The watcher backs off on this one."""


class AirflowAuthError(AirflowError):
    """401 or 403."""


class AirflowNotFound(AirflowError):
    pass


class DagNotFound(AirflowNotFound):
    pass


class DagPaused(AirflowError):
    pass


class AirflowConflict(AirflowError):
    pass


@dataclass(frozen=True)
class DagInfo:
    dag_id: str
    is_paused: bool


@dataclass(frozen=True)
class RunInfo:
    dag_id: str
    run_id: str
    state: str  # queued | running | success | failed
    conf: dict = field(default_factory=dict)
    run_type: str = ""  # manual | scheduled | backfill | asset_triggered
    triggered_by: str = ""  # rest_api | ui | cli | timetable ...
    triggering_user: str | None = None
    queued_at: datetime | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_RUN_STATES


@dataclass(frozen=True)
class TaskInfo:
    task_id: str
    state: str | None  # None until scheduled
    try_number: int
    max_tries: int
    map_index: int = -1
    start_date: datetime | None = None
    end_date: datetime | None = None
    duration: float | None = None


FINISHED_RUN_STATES = frozenset({"success", "failed"})


def _enum_value(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _run_info(r: Any) -> RunInfo:
    return RunInfo(
        dag_id=r.dag_id,
        run_id=r.dag_run_id,
        state=_enum_value(r.state) or "queued",
        conf=dict(r.conf or {}),
        run_type=_enum_value(r.run_type) or "",
        triggered_by=_enum_value(getattr(r, "triggered_by", None)) or "",
        triggering_user=getattr(r, "triggering_user_name", None),
        queued_at=r.queued_at,
        start_date=r.start_date,
        end_date=r.end_date,
    )


class AirflowAdapter:
    def __init__(
        self,
        url: str,
        *,
        ui_url: str | None = None,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        read_timeout: float = READ_TIMEOUT_SECONDS,
    ):
        # user:password@ in the URL is the login (unless one is given); kept out of every text and link.
        split = split_credentials(url)
        if split.had_credentials and not token and not username:
            username, password = split.username, split.password
        self.url = split.url.rstrip("/")
        self.ui_url = without_credentials(ui_url or split.url).rstrip("/")
        self.timeout = (float(connect_timeout), float(read_timeout))  # the client insists on floats
        self._fixed_token = token
        self._username = username
        self._password = password
        self._login_lock = threading.Lock()
        config = Configuration(host=self.url)  # the client's paths already start with /api/v2
        # One quick retry of a refused/reset connection; never retry reads (a POST may have been applied).
        config.retries = urllib3.Retry(total=1, connect=1, read=0, status=0, other=0, redirect=2, backoff_factor=0.2)
        config.access_token = token
        self._config = config
        self._client = ApiClient(config)
        self._dags = DAGApi(self._client)
        self._runs = DagRunApi(self._client)
        self._tasks = TaskInstanceApi(self._client)
        self._dag_tasks = TaskApi(self._client)
        self._xcom = XComApi(self._client)
        self._http = urllib3.PoolManager(retries=False)

    @classmethod
    def from_settings(cls, settings) -> "AirflowAdapter":
        return cls(
            settings.AIRFLOW_URL,
            ui_url=settings.AIRFLOW_UI_URL,
            token=settings.AIRFLOW_TOKEN.get_secret_value() if settings.AIRFLOW_TOKEN else None,
            username=settings.AIRFLOW_USERNAME,
            password=settings.AIRFLOW_PASSWORD.get_secret_value() if settings.AIRFLOW_PASSWORD else None,
        )

    @property
    def auth_mode(self) -> str:
        if self._fixed_token:
            return "token"
        if self._username:
            return "password"
        return "none"

    # ---- links ----
    def run_url(self, dag_id: str, run_id: str) -> str:
        return f"{self.ui_url}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"

    def task_log_url(self, dag_id: str, run_id: str, task_id: str, try_number: int | None = None) -> str:
        url = f"{self.run_url(dag_id, run_id)}/tasks/{quote(task_id, safe='')}"
        return url + (f"?try_number={try_number}" if try_number else "")

    def dag_url(self, dag_id: str) -> str:
        return f"{self.ui_url}/dags/{quote(dag_id, safe='')}"

    # ---- auth ----
    def _login(self, not_done: str) -> None:
        """POST /auth/token with the username and password; the token then goes on every call."""
        try:
            resp = self._http.request(
                "POST",
                f"{self.url}/auth/token",
                body=json.dumps({"username": self._username, "password": self._password or ""}).encode(),
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                timeout=urllib3.Timeout(connect=self.timeout[0], read=self.timeout[1]),
            )
        except urllib3.exceptions.HTTPError as exc:
            raise AirflowUnreachable(self._unreachable_text(exc, not_done)) from None
        if resp.status in (401, 403):
            raise AirflowAuthError(
                f"Airflow at {self.url} rejected the login of AIRFLOW_USERNAME `{self._username}` "
                f"(HTTP {resp.status}: check AIRFLOW_USERNAME/AIRFLOW_PASSWORD, or the user:password in "
                f"AIRFLOW_URL); {not_done}."
            )
        if resp.status == 404:
            raise AirflowAuthError(
                f"Airflow at {self.url} has no POST /auth/token (is AIRFLOW_URL the Airflow base URL, and does its "
                f"auth manager issue tokens?); {not_done}."
            )
        if not 200 <= resp.status < 300:
            raise AirflowError(f"Airflow at {self.url} answered HTTP {resp.status} to the login; {not_done}.")
        try:
            token = json.loads(resp.data)["access_token"]
        except (ValueError, KeyError, TypeError):
            raise AirflowError(f"Airflow at {self.url} answered the login without an access_token; {not_done}.") from None
        self._config.access_token = token

    def _ensure_login(self, not_done: str) -> None:
        if self._username and not self._config.access_token:
            with self._login_lock:
                if not self._config.access_token:
                    self._login(not_done)

    # ---- the one way every call goes ----
    def _call(self, fn: Callable[[], T], not_done: str, *, dag_id: str | None = None, retry: bool = True) -> T:
        """Runs one client call with auth, the timeout, one re-login on 401, and errors as sentences.

        `not_done` completes "…; <not_done>.", e.g. "the churn_lifecycle DAG was not triggered". A call that
        changes nothing (`retry`) is tried up to three times while Airflow answers 5xx.
        """
        attempts = RETRIES_5XX + 1 if retry else 1
        for attempt in range(attempts):
            try:
                return self._call_once(fn, not_done, dag_id)
            except AirflowError as exc:
                if not exc.transient or attempt + 1 >= attempts:
                    raise
                time.sleep(RETRY_PAUSE_SECONDS * (attempt + 1))
        raise AssertionError("unreachable")

    def _call_once(self, fn: Callable[[], T], not_done: str, dag_id: str | None) -> T:
        self._ensure_login(not_done)
        try:
            return fn()
        except ApiException as exc:
            if exc.status == 401 and self._username:
                stale = self._config.access_token
                with self._login_lock:
                    if self._config.access_token == stale:  # another thread may have logged in meanwhile
                        self._login(not_done)
                try:
                    return fn()
                except ApiException as again:
                    raise self._translate(again, not_done, dag_id) from None
                except Exception as again:
                    raise self._translate_other(again, not_done) from None
            raise self._translate(exc, not_done, dag_id) from None
        except Exception as exc:
            raise self._translate_other(exc, not_done) from None

    def _translate_other(self, exc: Exception, not_done: str) -> Exception:
        if isinstance(exc, AirflowError):
            return exc
        if isinstance(exc, urllib3.exceptions.HTTPError):
            return AirflowUnreachable(self._unreachable_text(exc, not_done))
        if isinstance(exc, (ValidationError, OpenApiException, ValueError)):
            log.warning("Airflow answer could not be read: %s", exc)
            return AirflowError(f"Airflow at {self.url} gave an answer modelbot could not read ({type(exc).__name__}); {not_done}.")
        if isinstance(exc, OSError):
            return AirflowUnreachable(f"Airflow at {self.url} could not be reached ({exc}); {not_done}.")
        return exc

    def _unreachable_text(self, exc: Exception, not_done: str) -> str:
        reason = getattr(exc, "reason", None) or exc
        text = str(reason)
        # NewConnectionError subclasses urllib3's TimeoutError, so "refused" is looked for first.
        if "refused" in text.lower():
            why = "connection refused"
        elif isinstance(reason, urllib3.exceptions.TimeoutError) or "timed out" in text.lower():
            why = f"no answer within {self.timeout[1]:g} s"
        elif "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
            why = "host name not found"
        else:
            why = text.split(": ", 1)[-1][:160]
        return f"Airflow at {self.url} could not be reached ({why}); {not_done}."

    def _translate(self, exc: ApiException, not_done: str, dag_id: str | None) -> AirflowError:
        status = exc.status or 0
        detail = _detail(exc)
        if status == 0:
            return AirflowUnreachable(f"Airflow at {self.url} could not be reached ({exc.reason}); {not_done}.")
        if status == 401:
            how = {
                "token": "AIRFLOW_TOKEN was rejected (expired or wrong?)",
                "password": "the token from AIRFLOW_USERNAME/AIRFLOW_PASSWORD was rejected even after a new login",
                "none": "it needs credentials: set AIRFLOW_TOKEN, or AIRFLOW_USERNAME and AIRFLOW_PASSWORD",
            }[self.auth_mode]
            return AirflowAuthError(f"Airflow at {self.url} answered 401 Unauthorized ({how}); {not_done}.")
        if status == 403:
            return AirflowAuthError(
                f"Airflow at {self.url} answered 403 Forbidden: modelbot's Airflow user lacks the permission"
                f"{' on DAG `' + dag_id + '`' if dag_id else ''}; {not_done}."
            )
        if status == 404:
            if dag_id and ("dag" in detail.lower() and "run" not in detail.lower() or not detail):
                return DagNotFound(
                    f"Airflow at {self.url} has no DAG `{dag_id}` (check the model's dag_id in the models file, "
                    f"or whether the DAG file failed to import); {not_done}."
                )
            return AirflowNotFound(f"Airflow at {self.url} found no such object ({detail or 'HTTP 404'}); {not_done}.")
        if status == 409:
            return AirflowConflict(f"Airflow at {self.url} answered 409 Conflict ({detail or 'it already exists'}); {not_done}.")
        if status >= 500:
            error = AirflowError(f"Airflow at {self.url} failed with HTTP {status} ({detail or exc.reason}); {not_done}.")
            error.transient = True
            return error
        return AirflowError(f"Airflow at {self.url} refused the request with HTTP {status} ({detail or exc.reason}); {not_done}.")

    # ---- DAGs ----
    def get_dag(self, dag_id: str, *, not_done: str | None = None) -> DagInfo:
        not_done = not_done or f"the DAG `{dag_id}` was not looked up"
        dag = self._call(
            lambda: self._dags.get_dag(dag_id, _request_timeout=self.timeout), not_done, dag_id=dag_id
        )
        return DagInfo(dag_id=dag.dag_id, is_paused=bool(dag.is_paused))

    def set_paused(self, dag_id: str, paused: bool) -> None:
        not_done = f"the DAG `{dag_id}` was not {'paused' if paused else 'unpaused'}"
        self._call(
            lambda: self._dags.patch_dag(dag_id, DAGPatchBody(is_paused=paused), _request_timeout=self.timeout),
            not_done,
            dag_id=dag_id,
        )

    # ---- runs ----
    def trigger(self, dag_id: str, conf: dict, *, check_paused: bool = True) -> RunInfo:
        """Triggers a run now (logical_date None: no data interval, any number of runs may be started).

        A paused DAG raises DagPaused instead: the run would otherwise wait in the queue, silently.
        """
        not_done = f"the DAG `{dag_id}` was not triggered"
        if check_paused and self.get_dag(dag_id, not_done=not_done).is_paused:
            raise DagPaused(
                f"The Airflow DAG `{dag_id}` is paused, so it was not triggered (a run would wait in the queue until "
                f"someone unpauses it). Unpause it in Airflow ({self.dag_url(dag_id)}) and ask again."
            )
        # Our own run id makes the POST safe to repeat: after a 5xx, a 409 on the retry means the first one
        # went through after all.
        run_id = f"modelbot__{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}_{secrets.token_hex(3)}"
        body = TriggerDAGRunPostBody(dag_run_id=run_id, logical_date=None, conf=conf)
        for attempt in range(RETRIES_5XX + 1):
            try:
                run = self._call(
                    lambda: self._runs.trigger_dag_run(dag_id, body, _request_timeout=self.timeout),
                    not_done, dag_id=dag_id, retry=False,
                )
                return _run_info(run)
            except AirflowConflict:
                if attempt == 0:
                    raise
                return self.get_run(dag_id, run_id)
            except AirflowError as exc:
                if not exc.transient or attempt >= RETRIES_5XX:
                    raise
                time.sleep(RETRY_PAUSE_SECONDS * (attempt + 1))
        raise AssertionError("unreachable")

    def get_run(self, dag_id: str, run_id: str) -> RunInfo:
        run = self._call(
            lambda: self._runs.get_dag_run(dag_id, run_id, _request_timeout=self.timeout),
            f"the run `{run_id}` of `{dag_id}` was not read",
        )
        return _run_info(run)

    def changed_runs(self, dag_ids: list[str], since: datetime | None) -> tuple[list[RunInfo], datetime]:
        """Runs of these DAGs updated at or after `since` (all DAGs in one listing: dag_id "~").

        Also returns Airflow's own clock (its Date header) at the time of the listing, so the next cursor does
        not depend on this machine's clock agreeing with Airflow's.
        """
        wanted = set(dag_ids)
        runs: list[RunInfo] = []
        server_time: datetime | None = None
        not_done = "the runs were not checked this pass"
        for page in range(MAX_PAGES):
            resp = self._call(
                lambda: self._runs.get_dag_runs_with_http_info(
                    "~",
                    updated_at_gte=since,
                    # `|` is OR in Airflow's pattern filters; `_` is a wildcard there, so the exact match is ours.
                    dag_id_pattern="|".join(sorted(wanted)) or None,
                    order_by=["updated_at", "id"],
                    limit=PAGE_SIZE,
                    offset=page * PAGE_SIZE,
                    _request_timeout=self.timeout,
                ),
                not_done,
            )
            if server_time is None:
                server_time = _server_time(resp.headers)
            batch = resp.data.dag_runs or []
            runs.extend(_run_info(r) for r in batch if r.dag_id in wanted)
            if len(batch) < PAGE_SIZE:
                break
        return runs, server_time or datetime.now(timezone.utc)

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskInfo]:
        resp = self._call(
            lambda: self._tasks.get_task_instances(dag_id, run_id, limit=PAGE_SIZE, _request_timeout=self.timeout),
            f"the tasks of run `{run_id}` were not read",
        )
        return [
            TaskInfo(
                task_id=ti.task_id,
                state=_enum_value(ti.state),
                try_number=ti.try_number,
                max_tries=ti.max_tries,
                map_index=ti.map_index,
                start_date=ti.start_date,
                end_date=ti.end_date,
                duration=ti.duration,
            )
            for ti in resp.task_instances or []
        ]

    def task_order(self, dag_id: str) -> list[str]:
        """The DAG's task ids upstream first (ties by name), for listing a run's tasks in a readable order."""
        resp = self._call(
            lambda: self._dag_tasks.get_tasks(dag_id, _request_timeout=self.timeout),
            f"the tasks of DAG `{dag_id}` were not read",
            dag_id=dag_id,
        )
        downstream = {t.task_id: set(t.downstream_task_ids or []) for t in resp.tasks or [] if t.task_id}
        indegree = {t: 0 for t in downstream}
        for targets in downstream.values():
            for t in targets:
                if t in indegree:
                    indegree[t] += 1
        ready = sorted(t for t, n in indegree.items() if n == 0)
        order: list[str] = []
        while ready:
            task = ready.pop(0)
            order.append(task)
            for t in sorted(downstream[task]):
                if t in indegree:
                    indegree[t] -= 1
                    if indegree[t] == 0:
                        ready.append(t)
            ready.sort()
        return order + sorted(set(downstream) - set(order))

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """The XCom value as JSON data (a string value that holds JSON is parsed)."""
        entry = self._call(
            lambda: self._xcom.get_xcom_entry(dag_id, task_id, run_id, key, _request_timeout=self.timeout),
            f"the `{key}` XCom of task `{task_id}` in run `{run_id}` was not read",
        )
        value = getattr(getattr(entry, "actual_instance", entry), "value", None)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def close(self) -> None:
        try:
            self._client.rest_client.pool_manager.clear()
            self._http.clear()
        except Exception:  # closing is best effort
            pass


def _detail(exc: ApiException) -> str:
    body = exc.body or ""
    try:
        parsed = json.loads(body)
        detail = parsed.get("detail") if isinstance(parsed, dict) else None
        if isinstance(detail, list):  # FastAPI validation errors
            detail = "; ".join(str(d.get("msg", d)) for d in detail if isinstance(d, dict)) or None
        if detail:
            return str(detail)[:200]
    except ValueError:
        pass
    return body.strip()[:200] if body and not body.lstrip().startswith("<") else ""


def _server_time(headers: Any) -> datetime | None:
    if not headers:
        return None
    value = headers.get("date") or headers.get("Date")
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).astimezone(timezone.utc)
    except (TypeError, ValueError):
        return None
