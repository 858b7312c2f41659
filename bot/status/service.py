"""What `/model status` shows: per model, the endpoint's variants and traffic split, last run, rollout."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bot.cost import service as cost
from bot.pipelines.packages import package_versions
from bot.rollouts import service as rollouts
from bot.runs import service as runs
from bot.integrations import sagemaker
from bot.errors import ExternalError
from bot.registry import Model
from bot.scaling import reconcile as scaling
from bot.status.messages import capacity_lines, read_line
from bot.status.tables import EndpointSnapshot

log = logging.getLogger(__name__)


@dataclass
class ModelStatus:
    model: Model
    endpoint: sagemaker.EndpointState | None = None
    problem: str | None = None  # why the endpoint could not be shown
    last_run: str | None = None  # one line, mrkdwn
    rollout: str | None = None  # one line, mrkdwn
    details: list[str] = field(default_factory=list)  # extra lines for the single-model view
    capacity: list[str] = field(default_factory=list)  # instances (min, max) and cost, a scaling problem


def _endpoint(sm: sagemaker.SageMaker, model: Model) -> tuple[sagemaker.EndpointState | None, str | None]:
    if not model.endpoint:
        return None, "no endpoint registered"
    try:
        return sm.describe_endpoint(model.endpoint, model.region), None
    except sagemaker.EndpointNotFound:
        return None, f"endpoint `{model.endpoint}` not found in {model.region}"
    except ExternalError as exc:
        return None, str(exc)


def gather(services, models: list[Model], *, detail: bool = False) -> list[ModelStatus]:
    """Endpoints are described in parallel: one slow region must not hold up the whole answer."""
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(models)))) as pool:
        endpoints = list(pool.map(lambda model: _endpoint(services.sagemaker, model), models))
    result = []
    for model, (state, problem) in zip(models, endpoints):
        status = ModelStatus(model=model, endpoint=state, problem=problem)
        _add_summaries(services, status)
        if detail:
            status.details.extend(_history(services, model))
        result.append(status)
    return result


# ---------------------------------------------------------------- one model, from the endpoint snapshot

def state_from_snapshot(row) -> sagemaker.EndpointState | None:
    if row is None or not row.endpoint or row.ok_at is None:
        return None
    variants = tuple(
        sagemaker.Variant(name=v["name"], current_weight=float(v.get("weight") or 0.0),
                          desired_weight=v.get("desired_weight"), instance_type=v.get("instance_type"),
                          instance_count=v.get("instance_count"), desired_instance_count=v.get("desired_instance_count"),
                          statuses=tuple((st[0], st[1]) for st in v.get("statuses") or []))
        for v in row.variants or []
    )
    return sagemaker.EndpointState(name=row.endpoint, status=row.status or "Unknown",
                                   config_name=row.config_name or "", variants=variants,
                                   failure_reason=row.failure_reason)


def from_snapshot(services, model: Model) -> ModelStatus:
    """The model as the snapshot has it (no AWS call), with its rollout, last run and run history."""
    with services.store.session() as s:
        row = s.get(EndpointSnapshot, model.name)
    state = state_from_snapshot(row)
    problem = None
    if not model.endpoint:
        problem = "no endpoint registered"
    elif row is None:
        problem = f"endpoint `{model.endpoint}` not read yet"
    elif row.error and state is None:
        problem = row.error
    status = ModelStatus(model=model, endpoint=state, problem=problem)
    if row is not None and model.endpoint:
        status.details.append(read_line(row))
    if state is not None:
        status.capacity = _capacity(services, model, row)
    _add_summaries(services, status)
    status.details.extend(_history(services, model))
    return status


def _capacity(services, model: Model, row) -> list[str]:
    """Instances, scaling bounds and cost from the store; a failure leaves the rest of the status standing."""
    try:
        with services.store.session() as s:
            roles = cost.latest_rollouts(s, [model.name])
            costs = cost.costs_of(s, {model.name: (row.region, row.variants or [])}, roles)
            targets, models = scaling.status_of(s, [model.name])
            problem = models[model.name].problem if model.name in models else None
            return capacity_lines(costs[model.name], targets.get(model.name, {}), problem)
    except Exception:
        log.exception("status: instances and cost of %s failed", model.name)
        return ["_Instances and cost could not be read (logged)_"]


def _add_summaries(services, status: ModelStatus) -> None:
    """The model's last run and rollout lines. The database may fail where SageMaker answered: what is known
    is shown, and what could not be read says so."""
    model = status.model
    for attr, fn in (("last_run", runs.last_run_summary), ("rollout", rollouts.rollout_summary)):
        try:
            setattr(status, attr, fn(services, model))
        except Exception:
            log.exception("status: %s for %s failed", attr, model.name)
            setattr(status, attr, "_could not be read (logged)_")


def _history(services, model: Model) -> list[str]:
    """The single-model view's extra lines: Model Registry packages, then the run history. A failing read is
    logged and left out: the rest of the status stands."""
    lines: list[str] = []
    for what, read in (("packages", lambda: package_versions(services.store, model.name).lines()),
                       ("run history", lambda: runs.run_history_lines(services, model))):
        try:
            lines.extend(read())
        except Exception:
            log.exception("status: %s for %s failed", what, model.name)
    return lines


