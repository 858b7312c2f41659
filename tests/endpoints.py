"""Creating SageMaker endpoints in moto the way a deploy pipeline would."""

from __future__ import annotations

import boto3

ROLE = "arn:aws:iam::123456789012:role/modelbot-test"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/model:latest"


def create_endpoint(name: str, variants: dict[str, float], *, region: str = "us-east-1",
                    instance_type: str = "ml.m5.large", config_name: str | None = None) -> str:
    sm = boto3.client("sagemaker", region_name=region)
    for variant in variants:
        sm.create_model(ModelName=f"{name}-{variant}", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    config_name = config_name or f"{name}-config-1"
    sm.create_endpoint_config(
        EndpointConfigName=config_name,
        ProductionVariants=[
            {
                "VariantName": variant,
                "ModelName": f"{name}-{variant}",
                "InitialInstanceCount": 1,
                "InstanceType": instance_type,
                "InitialVariantWeight": weight,
            }
            for variant, weight in variants.items()
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=config_name)
    return config_name
