"""Reading every registered endpoint into the snapshot table: what `/model status` answers from.

A pass describes the endpoints from a few threads (CONCURRENCY) at a bounded rate (RATE calls a second, for
all threads together), so a thousand models do not burst into SageMaker's Describe* limits. On a throttling
answer the rate is halved for everyone and the call is retried after a jittered back-off; it climbs back
slowly while calls succeed. Endpoint configs cannot change, so their instance types are read once per config:
in the steady state a pass costs one DescribeEndpoint per model.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from bot.cost import history
from bot.errors import ExternalError
from bot.integrations import sagemaker
from bot.registry import Model
from bot.status.tables import WORKER_PASS, EndpointSnapshot, SnapshotPass
from bot.store.base import utcnow

log = logging.getLogger(__name__)

CONCURRENCY_ENV = "MODELBOT_SNAPSHOT_CONCURRENCY"
RATE_ENV = "MODELBOT_SNAPSHOT_RATE"
DEFAULT_CONCURRENCY = 8
DEFAULT_RATE = 40.0  # calls a second, all threads together
MAX_ATTEMPTS = 5  # per call, throttling included
BACKOFF_BASE = 0.5
BACKOFF_CAP = 20.0


def configured() -> tuple[int, float]:
    concurrency = int(os.environ.get(CONCURRENCY_ENV) or DEFAULT_CONCURRENCY)
    rate = float(os.environ.get(RATE_ENV) or DEFAULT_RATE)
    return max(1, concurrency), max(0.1, rate)


class Pacer:
    """Spaces calls `1/rate` apart across threads; halves the rate on throttling, regains 5% per 10 successes."""

    def __init__(self, rate: float, *, sleep=time.sleep, attempts: int = MAX_ATTEMPTS):
        self.ceiling = rate
        self.rate = rate
        self.throttled = 0
        self._sleep = sleep
        self._attempts = attempts
        self._next = time.monotonic()
        self._successes = 0
        self._lock = threading.Lock()

    def _turn(self) -> None:
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next)
            self._next = at + 1.0 / self.rate
        if at > now:
            self._sleep(at - now)

    def __call__(self, once):
        for attempt in range(self._attempts):
            self._turn()
            try:
                result = once()
            except sagemaker.Throttled:
                with self._lock:
                    self.throttled += 1
                    self.rate = max(0.5, self.rate / 2)
                    self._successes = 0
                    # Everyone waits: the next slot is pushed past this back-off too.
                    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt) * random.uniform(0.5, 1.0)
                    self._next = max(self._next, time.monotonic() + delay)
                if attempt + 1 == self._attempts:
                    raise
                continue
            with self._lock:
                self._successes += 1
                if self._successes >= 10 and self.rate < self.ceiling:
                    self.rate = min(self.ceiling, self.rate * 1.05)
                    self._successes = 0
            return result
        raise AssertionError("unreachable")


@dataclass
class PassResult:
    models: int
    calls: int
    throttled: int
    errors: int
    seconds: float
    concurrency: int
    rate: float

    def summary(self) -> str:
        return (f"{self.models} endpoints read in {self.seconds:.1f}s with {self.calls} SageMaker calls "
                f"({self.concurrency} threads, at most {self.rate:g}/s; {self.throttled} throttled, "
                f"{self.errors} read errors)")


@dataclass
class _Read:
    model: Model
    state: sagemaker.EndpointState | None
    error: str | None
    calls: int
    at: datetime
    gone: bool = False  # the endpoint does not exist (any more): its old data must not be shown as current


def _variants(state: sagemaker.EndpointState) -> list[dict]:
    return [{"name": v.name, "weight": v.current_weight, "desired_weight": v.desired_weight,
             "instance_type": v.instance_type, "instance_count": v.instance_count,
             "desired_instance_count": v.desired_instance_count, "statuses": [list(st) for st in v.statuses]}
            for v in state.variants]


def _read(sm: sagemaker.SageMaker, model: Model, known: EndpointSnapshot | None, pacer: Pacer) -> _Read:
    if not model.endpoint:
        return _Read(model, None, None, 0, utcnow())
    known_types = None
    if known is not None and known.config_name and known.error is None:
        known_types = {v["name"]: v["instance_type"] for v in known.variants if v.get("instance_type")}
    calls = 0

    def counted(once):
        def wrapper():
            nonlocal calls
            calls += 1
            return once()
        return pacer(wrapper)

    try:
        state, _ = sm.read_endpoint(model.endpoint, model.region,
                                    known_config=known.config_name if known_types else None,
                                    known_types=known_types, call=counted)
        return _Read(model, state, None, calls, utcnow())
    except sagemaker.EndpointNotFound:
        return _Read(model, None, f"endpoint `{model.endpoint}` not found in {model.region}", calls, utcnow(),
                     gone=True)
    except sagemaker.Throttled as exc:
        return _Read(model, None, f"{exc} Gave up after {MAX_ATTEMPTS} tries; read again next pass.", calls, utcnow())
    except ExternalError as exc:
        return _Read(model, None, str(exc), calls, utcnow())
    except Exception as exc:  # one odd endpoint must not cost the whole pass
        log.exception("snapshot of %s failed", model.name)
        return _Read(model, None, f"unexpected {type(exc).__name__} reading `{model.endpoint}` (logged)", calls,
                     utcnow())


def _store(session, read: _Read, row: EndpointSnapshot | None, source: str) -> None:
    m = read.model
    if row is None:
        row = EndpointSnapshot(model=m.name, region=m.region, variants=[], source=source, read_at=read.at)
        session.add(row)
    row.endpoint, row.region, row.read_at, row.source = m.endpoint, m.region, read.at, source
    if read.error is None:
        row.error, row.ok_at = None, read.at
        row.status = read.state.status if read.state else None
        row.config_name = read.state.config_name if read.state else None
        row.variants = _variants(read.state) if read.state else []
        row.failure_reason = read.state.failure_reason if read.state else None
    else:
        # Keep the last good data; say beside it why it could not be refreshed.
        row.error = read.error[:2000]
        if read.gone:
            row.status, row.config_name, row.variants, row.failure_reason = None, None, [], None


def take(services, models: list[Model] | None = None, *, source: str = "worker",
         concurrency: int | None = None, rate: float | None = None) -> PassResult:
    """Read `models` (default: every registered one) and store them; a worker pass is recorded as such."""
    started_at, started = utcnow(), time.monotonic()
    default_concurrency, default_rate = configured()
    concurrency = concurrency or default_concurrency
    rate = rate or default_rate
    if models is None:
        models = [services.registry.models[n] for n in services.registry.names()]
    names = [m.name for m in models]
    with services.store.session() as s:
        known = {r.model: r for r in s.scalars(select(EndpointSnapshot).where(EndpointSnapshot.model.in_(names)))}
    pacer = Pacer(rate)
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(models))), thread_name_prefix="snapshot") as pool:
        reads = list(pool.map(lambda m: _read(services.sagemaker, m, known.get(m.name), pacer), models))
    with services.store.session() as s:
        rows = {r.model: r for r in s.scalars(select(EndpointSnapshot).where(EndpointSnapshot.model.in_(names)))}
        for read in reads:
            _store(s, read, rows.get(read.model.name), source)
        # What each endpoint runs, as instance history for /model cost (unread endpoints keep their last state).
        history.record(s, [history.Seen(r.model.name, r.model.endpoint, r.model.region,
                                        tuple(_variants(r.state)) if r.state else ())
                           for r in reads if r.model.endpoint and (r.state is not None or r.gone)], utcnow())
        result = PassResult(models=len(models), calls=sum(r.calls for r in reads), throttled=pacer.throttled,
                            errors=sum(1 for r in reads if r.error), seconds=time.monotonic() - started,
                            concurrency=concurrency, rate=rate)
        if source == "worker":
            _record_pass(s, services, started_at, result)
    return result


def _record_pass(session, services, started_at: datetime, result: PassResult) -> None:
    row = session.get(SnapshotPass, WORKER_PASS)
    values = dict(started_at=started_at, finished_at=utcnow(), seconds=result.seconds, models=result.models,
                  calls=result.calls, throttled=result.throttled, errors=result.errors,
                  concurrency=result.concurrency,
                  interval_seconds=float(services.settings.MODELBOT_JOB_INTERVAL_SECONDS))
    if row is None:
        session.add(SnapshotPass(name=WORKER_PASS, passes=1, **values))
    else:
        for key, value in values.items():
            setattr(row, key, value)
        row.passes += 1


def worker_pass(services) -> SnapshotPass | None:
    with services.store.session() as s:
        return s.get(SnapshotPass, WORKER_PASS)
