"""The packages deploys carried: recorded from the deploy XCom, decided when their rollout ends, and the two
facts `/model status <model>` shows (the package serving, the one rolling out)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from bot.pipelines.tables import ModelPackage
from bot.store.base import as_utc, utcnow
from bot.store.foundation import insert_ignore

APPROVED, REJECTED, UNCHANGED = "Approved", "Rejected", "Unchanged"


def package_version(arn: str) -> int | None:
    """arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version> -> version."""
    tail = arn.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


def record_deploy(store, *, model: str, dag_id: str, run_id: str, endpoint: str, variant: str, arn: str,
                  created_endpoint: bool = False) -> bool:
    """Remembers the package of one run's deploy (once per run). A deploy that created the endpoint has already
    approved its package: it serves all traffic with nothing to roll out against."""
    now = utcnow()
    values = dict(model=model, dag_id=dag_id, run_id=run_id, endpoint=endpoint, variant=variant,
                  model_package_arn=arn, version=package_version(arn), created_endpoint=created_endpoint,
                  recorded_at=now, attempts=0)
    if created_endpoint:
        values.update(approval_status=APPROVED, decided_at=now, synced_at=now,
                      approval_description=f"first model of endpoint {endpoint}: approved by the deploy")
    with store.session() as s:
        return insert_ignore(s, ModelPackage.__table__, values, ["dag_id", "run_id"])


def unsynced(store, limit: int = 200) -> list[ModelPackage]:
    """Packages whose approval the Model Registry does not show yet (undecided, or decided and not synced)."""
    with store.session() as s:
        rows = s.scalars(select(ModelPackage).where(ModelPackage.synced_at.is_(None))
                         .order_by(ModelPackage.id.desc()).limit(limit))
        return list(rows)


def decide(store, package_id: int, *, rollout_id: int, status: str, description: str) -> bool:
    """Records the decision once (True when this call made it); the registry call follows."""
    with store.session() as s:
        return s.execute(update(ModelPackage).where(ModelPackage.id == package_id,
                                                    ModelPackage.approval_status.is_(None))
                         .values(rollout_id=rollout_id, approval_status=status, approval_description=description,
                                 decided_at=utcnow(), synced_at=utcnow() if status == UNCHANGED else None)
                         ).rowcount == 1


def mark_synced(store, package_id: int) -> None:
    with store.session() as s:
        s.execute(update(ModelPackage).where(ModelPackage.id == package_id)
                  .values(synced_at=utcnow(), last_error=None))


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
