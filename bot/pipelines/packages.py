"""The packages deploys carried: recorded from the deploy XCom (only a package of the model's own group), decided
by what happens to their candidate (whichever rollout promotes or rolls it back), and the two facts
`/model status <model>` shows (the package serving, the one rolling out)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, exists, or_, select, update

from bot.integrations.model_registry import PACKAGE_ARN
from bot.pipelines.tables import ModelPackage
from bot.store.base import as_utc, utcnow
from bot.store.foundation import insert_ignore

APPROVED, REJECTED, UNCHANGED = "Approved", "Rejected", "Unchanged"


class PackageRefused(ValueError):
    """A deploy named a package modelbot will not record (not the model's own group, or not a package ARN)."""


def package_version(arn: str) -> int | None:
    """arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version> -> version."""
    tail = arn.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


def package_problem(arn: str, *, model: str, region: str | None = None) -> str | None:
    """Why modelbot will not record `arn` for `model`, or None. The generated pipeline registers each model's
    versions in the group named after it, in its region; approving anything else would let one model's rollout
    decide what another model's pipeline loads as production."""
    match = PACKAGE_ARN.match(arn or "")
    if match is None:
        return f"`{arn}` is not a Model Registry package ARN (arn:aws:sagemaker:REGION:ACCOUNT:model-package/GROUP/N)"
    arn_region, group = match.group(1), match.group(2)
    if group.lower() != model.lower():  # SageMaker writes the group in lower case in the ARN
        return f"package `{arn}` is in model package group `{group}`, not `{model}`, the group of {model}'s pipeline"
    if region and arn_region != region:
        return f"package `{arn}` is in {arn_region}, but {model} is in {region}"
    return None


def record_deploy(store, *, model: str, dag_id: str, run_id: str, endpoint: str, variant: str, arn: str,
                  created_endpoint: bool = False, region: str | None = None) -> bool:
    """Remembers the package of one run's deploy (once per run); PackageRefused when it is not the model's own.
    A deploy that created the endpoint has already approved its package: it serves all traffic with nothing to
    roll out against."""
    problem = package_problem(arn, model=model, region=region)
    if problem:
        raise PackageRefused(problem)
    now = utcnow()
    values = dict(model=model, dag_id=dag_id, run_id=run_id, endpoint=endpoint, variant=variant,
                  model_package_arn=arn, version=package_version(arn), created_endpoint=created_endpoint,
                  recorded_at=now, attempts=0)
    if created_endpoint:
        values.update(approval_status=APPROVED, decided_at=now, synced_at=now,
                      approval_description=f"first model of endpoint {endpoint}: approved by the deploy")
    with store.session() as s:
        return insert_ignore(s, ModelPackage.__table__, values, ["dag_id", "run_id"])


def candidate_match(package, rollout):
    """SQL: `rollout` (the Rollout entity) is about `package`'s candidate: the run's own rollout, or any rollout
    of the same variant on the same endpoint that began after the deploy was recorded (a /model promote, a
    forced promotion, a rollback of a promoted candidate). Variant names are never reused on an endpoint."""
    return and_(rollout.model == package.model, rollout.endpoint == package.endpoint,
                rollout.candidate_variant == package.variant,
                or_(rollout.run_key == package.model + "/" + package.run_id,
                    rollout.created_at >= package.recorded_at))


def to_decide(store, rollout, ended_states: tuple[str, ...], limit: int = 200) -> list[ModelPackage]:
    """Packages the Model Registry does not show right yet (undecided, or decided and not synced), and those
    whose candidate had a rollout end or change since modelbot last decided them. `rollout` is the Rollout
    entity (bot.rollouts.tables; this package does not import it)."""
    changed = exists().where(candidate_match(ModelPackage, rollout), rollout.state.in_(ended_states),
                             or_(ModelPackage.decided_at.is_(None), rollout.updated_at > ModelPackage.decided_at))
    with store.session() as s:
        rows = s.scalars(select(ModelPackage).where(or_(ModelPackage.synced_at.is_(None), changed))
                         .order_by(ModelPackage.id.desc()).limit(limit))
        return list(rows)


def decide(store, row: ModelPackage, *, rollout_id: int, status: str, description: str) -> bool:
    """Records a decision, or a changed one, unless another worker changed the row since it was read (True when
    this call made it); the registry call follows. Unchanged (an aborted rollout) needs no registry call."""
    same_status = (ModelPackage.approval_status.is_(None) if row.approval_status is None
                   else ModelPackage.approval_status == row.approval_status)
    same_rollout = (ModelPackage.rollout_id.is_(None) if row.rollout_id is None
                    else ModelPackage.rollout_id == row.rollout_id)
    now = utcnow()
    with store.session() as s:
        return s.execute(update(ModelPackage).where(ModelPackage.id == row.id, same_status, same_rollout)
                         .values(rollout_id=rollout_id, approval_status=status, approval_description=description,
                                 decided_at=now, synced_at=now if status == UNCHANGED else None, attempts=0,
                                 last_error=None)).rowcount == 1


def confirm(store, package_id: int) -> None:
    """The candidate's rollouts still give the decision recorded: looked at now (decided_at), not again until
    one of them changes."""
    with store.session() as s:
        s.execute(update(ModelPackage).where(ModelPackage.id == package_id).values(decided_at=utcnow()))


def mark_synced(store, package_id: int) -> None:
    with store.session() as s:
        s.execute(update(ModelPackage).where(ModelPackage.id == package_id)
                  .values(synced_at=utcnow(), last_error=None))


def mark_refused(store, package_id: int, problem: str) -> None:
    """Never synced: the package is not the model's own (recorded before modelbot checked). Kept, with why."""
    with store.session() as s:
        s.execute(update(ModelPackage).where(ModelPackage.id == package_id)
                  .values(synced_at=utcnow(), last_error=f"not synced: {problem}"[:2000]))


def mark_failed(store, package_id: int, error: str) -> None:
    with store.session() as s:
        s.execute(update(ModelPackage).where(ModelPackage.id == package_id)
                  .values(attempts=ModelPackage.attempts + 1, last_error=error[:2000]))


@dataclass(frozen=True)
class PackageRef:
    arn: str
    version: int | None
    variant: str
    endpoint: str
    run_id: str
    status: str | None  # Approved | Rejected | Unchanged | None (its rollout has not ended)
    since: datetime | None

    def label(self) -> str:
        number = f"version {self.version}" if self.version is not None else self.arn
        return f"{number} (`{self.variant}` on `{self.endpoint}`)"


@dataclass(frozen=True)
class PackageVersions:
    serving: PackageRef | None  # the newest package modelbot approved (a promoted rollout, or a first model)
    rolling_out: PackageRef | None  # the newest deploy's package while its rollout has not ended

    def lines(self) -> list[str]:
        """mrkdwn lines for /model status <model>; empty when the model's deploys never carried a package."""
        out = []
        if self.serving:
            out.append(f"Model Registry: serving package {self.serving.label()}")
        if self.rolling_out:
            out.append(f"Model Registry: rolling out package {self.rolling_out.label()}, PendingManualApproval")
        return out


def _ref(row: ModelPackage | None) -> PackageRef | None:
    if row is None:
        return None
    return PackageRef(arn=row.model_package_arn, version=row.version, variant=row.variant, endpoint=row.endpoint,
                      run_id=row.run_id, status=row.approval_status,
                      since=as_utc(row.decided_at or row.recorded_at))


def package_versions(store, model: str) -> PackageVersions:
    """The package version serving and the one rolling out, from what modelbot recorded (no AWS call).

    A newer deploy replaces an older candidate on the endpoint, so only the newest deploy can be rolling out.
    """
    with store.session() as s:
        serving = s.scalars(select(ModelPackage).where(ModelPackage.model == model,
                                                       ModelPackage.approval_status == APPROVED)
                            .order_by(ModelPackage.id.desc()).limit(1)).first()  # deploys come in order
        newest = s.scalars(select(ModelPackage).where(ModelPackage.model == model)
                           .order_by(ModelPackage.id.desc()).limit(1)).first()
        rolling = newest if newest is not None and newest.approval_status is None else None
        return PackageVersions(serving=_ref(serving), rolling_out=_ref(rolling))
