"""SageMaker adapter: what an endpoint serves and with which traffic split (boto3)."""

from __future__ import annotations

from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from bot import aws
from bot.errors import ExternalError


class SageMakerError(ExternalError):
    """A SageMaker call failed; the message names SageMaker, the endpoint and what was not done."""


class EndpointNotFound(SageMakerError):
    pass


@dataclass(frozen=True)
class Variant:
    name: str
    current_weight: float
    desired_weight: float | None = None
    instance_type: str | None = None
    instance_count: int | None = None


@dataclass(frozen=True)
class EndpointState:
    name: str
    status: str
    config_name: str
    variants: tuple[Variant, ...] = field(default_factory=tuple)

    @property
    def total_weight(self) -> float:
        return sum(v.current_weight for v in self.variants)

    def share(self, variant: str) -> float:
        """Fraction of traffic a variant receives (0..1)."""
        total = self.total_weight
        for v in self.variants:
            if v.name == variant:
                return v.current_weight / total if total else 0.0
        return 0.0

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)


def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _is_not_found(exc: ClientError) -> bool:
    msg = exc.response.get("Error", {}).get("Message", "")
    return _error_code(exc) in ("ValidationException", "ResourceNotFound") and (
        "Could not find" in msg or "not found" in msg.lower() or "does not exist" in msg
    )


def describe_endpoint(endpoint: str, region: str) -> EndpointState:
    sm = aws.client("sagemaker", region)
    try:
        desc = sm.describe_endpoint(EndpointName=endpoint)
    except ClientError as exc:
        if _is_not_found(exc):
            raise EndpointNotFound(f"SageMaker endpoint `{endpoint}` was not found in {region}.") from None
        raise SageMakerError(
            f"SageMaker did not describe endpoint `{endpoint}` in {region}: {exc.response['Error'].get('Message', exc)}"
        ) from None
    except BotoCoreError as exc:
        raise SageMakerError(f"SageMaker could not be reached to describe endpoint `{endpoint}` ({exc}).") from None
    config_name = desc.get("EndpointConfigName", "")
    instance_types: dict[str, str] = {}
    try:
        cfg = sm.describe_endpoint_config(EndpointConfigName=config_name) if config_name else {}
        for pv in cfg.get("ProductionVariants", []):
            if pv.get("InstanceType"):
                instance_types[pv["VariantName"]] = pv["InstanceType"]
    except (ClientError, BotoCoreError):
        pass  # instance types are a detail; the split is what matters
    variants = tuple(
        Variant(
            name=pv["VariantName"],
            current_weight=float(pv.get("CurrentWeight", 0.0)),
            desired_weight=float(pv["DesiredWeight"]) if "DesiredWeight" in pv else None,
            instance_type=instance_types.get(pv["VariantName"]),
            instance_count=pv.get("CurrentInstanceCount"),
        )
        for pv in desc.get("ProductionVariants", [])
    )
    return EndpointState(name=endpoint, status=desc.get("EndpointStatus", "Unknown"), config_name=config_name, variants=variants)
