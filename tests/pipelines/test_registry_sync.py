"""The Model Registry kept in step with rollouts: the job approves the package of a promoted rollout, rejects
that of a rolled-back one (by hand or automatically) with the reason, leaves an aborted one pending, does it
once, and retries after a registry failure. Real SQL (SQLite and PostgreSQL), real boto3 against moto."""

from __future__ import annotations

from datetime import timedelta

import boto3
import pytest
from sqlalchemy import select, update

from bot.pipelines import packages
from bot.pipelines.tables import ModelPackage
from bot.rollouts.tables import Rollout, RolloutEvent
from bot.store.base import utcnow
from jobs import model_registry_sync
from tests.pipelines.conftest import IMAGE, REGION


def pending_package(group: str = "churn") -> str:
    sm = boto3.client("sagemaker", region_name=REGION)
    try:
        sm.create_model_package_group(ModelPackageGroupName=group)
    except sm.exceptions.ClientError:
        pass
    return sm.create_model_package(
        ModelPackageGroupName=group, ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={"Containers": [{"Image": IMAGE}], "SupportedContentTypes": ["text/csv"],
                                "SupportedResponseMIMETypes": ["text/csv"]})["ModelPackageArn"]


def registry_says(arn: str) -> tuple[str, str | None]:
    desc = boto3.client("sagemaker", region_name=REGION).describe_model_package(ModelPackageName=arn)
    return desc["ModelApprovalStatus"], desc.get("ApprovalDescription")


def add_rollout(services, run_id: str | None, state: str, *, candidate: str, ended_by=None, reason=None,
                forced_by=None, forced_reason: str = "hotfix INC-7", later: float = 0.0) -> int:
    """A rollout of the candidate: the run's own (run_id), or one started from Slack (run_id None, `later`
    seconds after the deploy was recorded: /model promote, --force)."""
    now = utcnow() + timedelta(seconds=later)
    with services.store.session() as s:
        r = Rollout(model="churn", active_model=None if state in ("promoted", "rolled_back", "aborted") else "churn",
                    run_key=f"churn/{run_id}" if run_id else None, source="airflow" if run_id else "slack",
                    endpoint="churn-prod", region=REGION, stable_variant="v41", candidate_variant=candidate,
                    steps=[10, 100], state=state, step_index=0, ended_by=ended_by, ended_reason=reason, version=1,
                    created_at=now, updated_at=now)
        s.add(r)
        s.flush()
        if forced_by:
            s.add(RolloutEvent(rollout_id=r.id, at=now, kind="forced", state="baking", step_index=1,
                               candidate_percent=100.0, actor=forced_by, detail={"reason": forced_reason}))
        return r.id


def deploy(services, run_id: str, variant: str, arn: str) -> None:
    assert packages.record_deploy(services.store, model="churn", dag_id="churn_pipeline", run_id=run_id,
                                  endpoint="churn-prod", variant=variant, arn=arn)


@pytest.fixture
def services(make_services, pipeline_aws):
    return make_services()


def test_ended_rollouts_set_the_approval_with_the_reason_once(services, pipeline_aws):
    arns = {run: pending_package() for run in ("r1", "r2", "r3", "r4", "r5", "r6")}
    for i, run in enumerate(arns):
        deploy(services, run, f"v{42 + i}", arns[run])
    add_rollout(services, "r1", "promoted", candidate="v42")
    add_rollout(services, "r2", "rolled_back", candidate="v43", ended_by="U0ALICE", reason="p99 latency up")
    add_rollout(services, "r3", "rolled_back", candidate="v44",
                reason="the candidate's 5XX rate is higher (1.2% vs 0.5%, alpha 0.01)")
    add_rollout(services, "r4", "aborted", candidate="v45", reason="replaced by the candidate `v46`")
    add_rollout(services, "r5", "promoted", candidate="v46", forced_by="U0ADMIN")
    add_rollout(services, "r6", "progressing", candidate="v47")

    summary = model_registry_sync.run_once(services)
    assert summary == "2 approved, 2 rejected, 1 left pending (rollout aborted), 1 waiting for their rollout"
    assert registry_says(arns["r1"]) == ("Approved", "modelbot: promoted `v42` on endpoint churn-prod; rollout #1 "
                                                     "passed every step and baked")
    assert registry_says(arns["r2"]) == ("Rejected", "modelbot: rolled back by <@U0ALICE>: p99 latency up")
    assert registry_says(arns["r3"]) == ("Rejected", "modelbot: rolled back automatically: the candidate's 5XX rate "
                                                     "is higher (1.2% vs 0.5%, alpha 0.01)")
    assert registry_says(arns["r4"])[0] == "PendingManualApproval"
    assert registry_says(arns["r5"]) == ("Approved", "modelbot: forced promotion of `v46` on endpoint churn-prod by "
                                                     "<@U0ADMIN>: hotfix INC-7")
    assert registry_says(arns["r6"])[0] == "PendingManualApproval"

    # What it did is recorded; a second pass has nothing to do and calls no update.
    with services.store.session() as s:
        rows = {r.run_id: r for r in s.scalars(select(ModelPackage))}
    assert rows["r1"].approval_status == "Approved" and rows["r1"].synced_at is not None
    assert rows["r4"].approval_status == "Unchanged" and rows["r6"].approval_status is None
    before = pipeline_aws.operations.count("UpdateModelPackage")
    assert model_registry_sync.run_once(services) == "1 waiting for their rollout"
    assert pipeline_aws.operations.count("UpdateModelPackage") == before

    # /model status's two facts: the newest approved package serves; the newest deploy, still undecided, rolls out.
    versions = packages.package_versions(services.store, "churn")
    assert (versions.serving.version, versions.serving.variant) == (5, "v46")
    assert (versions.rolling_out.version, versions.rolling_out.variant) == (6, "v47")
    assert versions.lines() == ["Model Registry: serving package version 5 (`v46` on `churn-prod`)",
                                "Model Registry: rolling out package version 6 (`v47` on `churn-prod`), "
                                "PendingManualApproval"]


def test_a_registry_failure_is_retried_on_the_next_pass(services, pipeline_aws):
    arn = pending_package()
    deploy(services, "r1", "v42", arn)
    add_rollout(services, "r1", "rolled_back", candidate="v42", ended_by="U0ALICE", reason="bad")
    pipeline_aws.fail_next("UpdateModelPackage", "ThrottlingException", "Rate exceeded", count=10)
    summary = model_registry_sync.run_once(services)
    assert summary == "1 failed, retried next pass"
    with services.store.session() as s:
        row = s.scalars(select(ModelPackage)).one()
    assert row.approval_status == "Rejected" and row.synced_at is None and row.attempts == 1
    assert "did not set model package" in row.last_error and "still says PendingManualApproval" in row.last_error
    pipeline_aws.reset()
    assert model_registry_sync.run_once(services) == "1 rejected"
    assert registry_says(arn) == ("Rejected", "modelbot: rolled back by <@U0ALICE>: bad")


def test_a_first_model_is_serving_without_a_rollout(services, pipeline_aws):
    arn = pending_package("churn")
    assert packages.record_deploy(services.store, model="churn", dag_id="churn_pipeline", run_id="r1",
                                  endpoint="churn-prod", variant="v1", arn=arn, created_endpoint=True)
    versions = packages.package_versions(services.store, "churn")
    assert versions.serving.version == 1 and versions.rolling_out is None
    assert model_registry_sync.run_once(services) == "nothing to do"  # the deploy approved it itself


# ---------------------------------------------------------------- the package follows its candidate (issue 21, item 20)

def set_state(services, rollout_id: int, state: str, **values) -> None:
    with services.store.session() as s:
        s.execute(update(Rollout).where(Rollout.id == rollout_id).values(
            state=state, updated_at=utcnow() + timedelta(seconds=10), **values))


def test_a_forced_promotion_from_slack_approves_the_pipelines_package(services, pipeline_aws):
    """The run's rollout was aborted (say, the deploy's hand-off was refused while another rollout ran); the
    candidate was then promoted with `/model promote --force`, a rollout of its own. The package follows."""
    arn = pending_package()
    deploy(services, "r1", "v42", arn)
    add_rollout(services, "r1", "aborted", candidate="v42", reason="replaced")
    assert model_registry_sync.run_once(services) == "1 left pending (rollout aborted)"
    forced = add_rollout(services, None, "baking", candidate="v42", forced_by="U0ADMIN", forced_reason="release",
                         later=5)
    assert model_registry_sync.run_once(services) == "nothing to do"  # baking: not decided yet
    assert registry_says(arn)[0] == "PendingManualApproval"
    set_state(services, forced, "promoted")
    assert model_registry_sync.run_once(services) == "1 approved"
    assert registry_says(arn) == ("Approved", "modelbot: forced promotion of `v42` on endpoint churn-prod by "
                                              "<@U0ADMIN>: release")
    assert model_registry_sync.run_once(services) == "nothing to do"


def test_a_rolled_back_candidate_promoted_later_is_approved_and_a_promotion_rolled_back_is_rejected(
        services, pipeline_aws):
    arn = pending_package()
    deploy(services, "r1", "v42", arn)
    add_rollout(services, "r1", "rolled_back", candidate="v42", ended_by="U0ALICE", reason="flaky metric")
    assert model_registry_sync.run_once(services) == "1 rejected"
    # A week later the owners try again by hand: /model promote churn --variant v42, and it passes.
    again = add_rollout(services, None, "progressing", candidate="v42", later=5)
    assert model_registry_sync.run_once(services) == "nothing to do"
    assert registry_says(arn)[0] == "Rejected"  # while it runs, the last decision stands
    set_state(services, again, "promoted")
    assert model_registry_sync.run_once(services) == "1 approved"
    assert registry_says(arn) == ("Approved", f"modelbot: promoted `v42` on endpoint churn-prod; rollout #{again} "
                                              "passed every step and baked")
    # Then `/model rollback churn` takes the promoted candidate back out: the package says so.
    set_state(services, again, "rolled_back", ended_by="U0BOB", ended_reason="p99 up after release")
    assert model_registry_sync.run_once(services) == "1 rejected"
    assert registry_says(arn) == ("Rejected", "modelbot: rolled back by <@U0BOB>: p99 up after release")
    # Another candidate's rollouts never touch it.
    other = pending_package()
    deploy(services, "r2", "v43", other)
    add_rollout(services, "r2", "promoted", candidate="v43")
    assert model_registry_sync.run_once(services) == "1 approved"
    assert registry_says(arn)[0] == "Rejected" and registry_says(other)[0] == "Approved"


# ---------------------------------------------------------------- only the model's own package (issue 21, item 11)

def test_modelbot_records_only_a_package_of_the_models_own_group(services, pipeline_aws):
    foreign = pending_package("fraud")
    with pytest.raises(packages.PackageRefused) as err:
        packages.record_deploy(services.store, model="churn", dag_id="churn_pipeline", run_id="r1",
                               endpoint="churn-prod", variant="v42", arn=foreign, region=REGION)
    assert str(err.value) == (f"package `{foreign}` is in model package group `fraud`, not `churn`, the group of "
                              "churn's pipeline")
    with pytest.raises(packages.PackageRefused, match="is not a Model Registry package ARN"):
        packages.record_deploy(services.store, model="churn", dag_id="churn_pipeline", run_id="r1",
                               endpoint="churn-prod", variant="v42", arn="arn:aws:s3:::bucket/key")
    with pytest.raises(packages.PackageRefused, match="is in us-east-1, but churn is in eu-west-1"):
        packages.record_deploy(services.store, model="churn", dag_id="churn_pipeline", run_id="r1",
                               endpoint="churn-prod", variant="v42", arn=pending_package(), region="eu-west-1")
    with services.store.session() as s:
        assert s.scalars(select(ModelPackage)).all() == []
    # A rollout of that candidate ending changes nothing in another model's group.
    add_rollout(services, "r1", "promoted", candidate="v42")
    assert model_registry_sync.run_once(services) == "nothing to do"
    assert registry_says(foreign)[0] == "PendingManualApproval"
