"""The sandbox's AWS as the world starts: churn and fraud already in production, as their pipelines would have
left them.

For each model with a `[models.X.pipeline]` section in the sandbox's models file, the model's own module trains
the production model with the generated DAG's own steps (dags/modelbot_pipelines.py: preprocess, train,
evaluate, so its schemas.json and evaluation are where a run writes them), and then:

- its Model Registry package is registered and Approved (what the next run's `evaluate` compares with, schemas
  included);
- the SageMaker model points at the image and at its model.tar.gz;
- the endpoint serves it alone, as `STABLE[model]`, from a config that captures requests and predictions
  (the pipeline's own DataCaptureConfig), so the hosting runs it and the quality job can read what it answered.

The production models are the older ones each story needs: churn's v41 learned from tenure alone, fraud's v17 is
a logistic model of the merchant's risk alone, so a retrained candidate evaluates better than each.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = Path(__file__).resolve().parent / "models"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
INSTANCE_TYPE = "ml.m5.xlarge"
STABLE = {"churn": "v41", "fraud": "v17"}
# The run conf each production model was trained with.
PRODUCTION_CONF = {"churn": {"features": "tenure_z", "seed": "41"},
                   "fraud": {"link": "logit", "features": "merchant_risk", "seed": "17"}}


def pipeline_steps():
    """dags/modelbot_pipelines.py outside Airflow (its steps only), with the sandbox's modules importable."""
    for path in (ROOT / "dags", MODULES):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    import modelbot_pipelines

    return modelbot_pipelines


def buckets(models_file: Path, extra: tuple[str, ...] = ()) -> set[str]:
    steps = pipeline_steps()
    found = set(extra)
    for p in steps.load_pipelines(models_file):
        found |= {steps.split_s3(p.artifacts)[0], steps.split_s3(p.capture_destination)[0]}
    return found


def seed(models_file: Path, *, sagemaker, s3, say=print) -> dict[str, str]:
    """Trains, registers and serves each model's production version; returns model -> its endpoint."""
    steps = pipeline_steps()
    served = {}
    for p in steps.load_pipelines(models_file):
        variant = STABLE[p.model]
        conf = PRODUCTION_CONF.get(p.model, {})
        run_id = f"sandbox-production-{variant}"
        artifacts = steps.S3Artifacts(s3)
        data = steps.step_preprocess(p, conf, run_id, artifacts)
        trained = steps.step_train(p, conf, run_id, data, artifacts)
        evaluation = steps.step_evaluate(p, run_id, data, trained, artifacts, lambda: None, conf)
        arn = steps.register_package(sagemaker, p, run_id, evaluation, trained, INSTANCE_TYPE)
        sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved",
                                       ApprovalDescription=f"in production on {p.endpoint} as {variant} "
                                                           "(the sandbox's starting point)")
        name = f"{p.endpoint}-{variant}"
        sagemaker.create_model(ModelName=name, ExecutionRoleArn=ROLE,
                               PrimaryContainer={"Image": p.image, "ModelDataUrl": trained["model_data_url"]})
        extra = {}
        capture = steps.capture_config(p, None)
        if capture:
            extra["DataCaptureConfig"] = capture
        sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
            "VariantName": variant, "ModelName": name, "InitialInstanceCount": 1, "InstanceType": INSTANCE_TYPE,
            "InitialVariantWeight": 1.0}], **extra)
        sagemaker.create_endpoint(EndpointName=p.endpoint, EndpointConfigName=name)
        say(f"{p.model}: {variant} in production on {p.endpoint} ({p.metric} {evaluation['candidate']:.3f} offline)")
        served[p.model] = p.endpoint
    return served
