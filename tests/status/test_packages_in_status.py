"""`/model status <model>` shows the Model Registry package serving and the one rolling out (no AWS call)."""

from __future__ import annotations

from bot.pipelines.packages import APPROVED, decide, record_deploy
from bot.pipelines.tables import ModelPackage
from bot.status.service import from_snapshot

GROUP = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn"


def test_single_model_status_names_the_serving_and_the_rolling_out_package(make_services):
    services = make_services()
    try:
        model = services.registry.get("churn")
        assert not [d for d in from_snapshot(services, model).details if "Model Registry" in d]  # no pipeline yet
        record_deploy(services.store, model="churn", dag_id="churn_lifecycle", run_id="r1", endpoint="churn-prod",
                      variant="v41", arn=f"{GROUP}/3")
        with services.store.session() as s:
            first = s.query(ModelPackage).one()
        decide(services.store, first, rollout_id=1, status=APPROVED, description="promoted")
        record_deploy(services.store, model="churn", dag_id="churn_lifecycle", run_id="r2", endpoint="churn-prod",
                      variant="v42", arn=f"{GROUP}/4")
        details = from_snapshot(services, model).details
    finally:
        services.store.dispose()
    assert "Model Registry: serving package version 3 (`v41` on `churn-prod`)" in details
    assert "Model Registry: rolling out package version 4 (`v42` on `churn-prod`), PendingManualApproval" in details
