"""SageMaker adapter: what an endpoint serves and with which traffic split (boto3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from bot.integrations import aws
from bot.errors import ExternalError


class SageMakerError(ExternalError):
    """A SageMaker call failed; the message names SageMaker, the endpoint and what was not done."""


class EndpointNotFound(SageMakerError):
    pass


class VariantNotFound(SageMakerError):
    """The endpoint exists but does not have a variant that was named."""


@dataclass(frozen=True)
class Variant:
    name: str
    current_weight: float
    desired_weight: float | None = None
    instance_type: str | None = None
    instance_count: int | None = None
    desired_instance_count: int | None = None
    # VariantStatus while SageMaker works on the variant: ((Creating|Updating|Deleting|ActivatingTraffic|Baking,
    # its StatusMessage), ...); empty when it is steady.
    statuses: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True)
class EndpointState:
    name: str
    status: str
    config_name: str
    variants: tuple[Variant, ...] = field(default_factory=tuple)
    failure_reason: str | None = None  # why the endpoint, or its last update, failed (DescribeEndpoint)

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


# Weights are compared with this tolerance: SageMaker stores them as floats and echoes what it was given.
WEIGHT_TOLERANCE = 1e-6


def _failure(exc: Exception, what: str) -> str:
    if isinstance(exc, ClientError):
        return f"SageMaker did not {what}: {exc.response.get('Error', {}).get('Message', exc)}"
    return f"SageMaker could not be reached to {what} ({exc})"


def weights_match(state: EndpointState, weights: dict[str, float]) -> bool:
    """True when every named variant already has (or is already being given) the target weight.

    DesiredWeight counts: during an update it holds where the endpoint is going, so an update already in
    flight is not sent a second time.
    """
    for name, target in weights.items():
        variant = state.variant(name)
        if variant is None:
            return False
        have = variant.desired_weight if variant.desired_weight is not None else variant.current_weight
        if abs(have - target) > WEIGHT_TOLERANCE:
            return False
    return True


def config_weights(config: dict) -> dict[str, float]:
    """The initial weight of each variant an endpoint config declares (what UpdateEndpoint to it gives)."""
    return {pv["VariantName"]: float(pv.get("InitialVariantWeight", 1.0)) for pv in config.get("ProductionVariants", [])}


def _allowed(sm, shape_name: str | None, operation: str | None = None) -> set[str]:
    model = sm.meta.service_model
    shape = model.operation_model(operation).input_shape if operation else model.shape_for(shape_name)
    return set(shape.members)


# ---------------------------------------------------------------- reads for the endpoint snapshot

THROTTLING_CODES = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"})


class Throttled(SageMakerError):
    """SageMaker answered with a throttling error: the caller slows down and tries again."""


def _instance_types(config: dict) -> dict[str, str]:
    """Variant name -> instance type, from a DescribeEndpointConfig answer (serverless variants have none)."""
    return {pv["VariantName"]: pv["InstanceType"] for pv in config.get("ProductionVariants", [])
            if pv.get("InstanceType")}


def _endpoint_state(endpoint: str, desc: dict, instance_types: dict[str, str]) -> EndpointState:
    """An EndpointState from a DescribeEndpoint answer and its config's instance types."""
    variants = tuple(
        Variant(
            name=pv["VariantName"],
            current_weight=float(pv.get("CurrentWeight", 0.0)),
            desired_weight=float(pv["DesiredWeight"]) if "DesiredWeight" in pv else None,
            instance_type=instance_types.get(pv["VariantName"]),
            instance_count=pv.get("CurrentInstanceCount"),
            desired_instance_count=pv.get("DesiredInstanceCount"),
            statuses=tuple((st.get("Status", "Unknown"), st.get("StatusMessage") or None)
                           for st in pv.get("VariantStatus") or []),
        )
        for pv in desc.get("ProductionVariants", [])
    )
    return EndpointState(name=endpoint, status=desc.get("EndpointStatus", "Unknown"),
                         config_name=desc.get("EndpointConfigName", ""), variants=variants,
                         failure_reason=desc.get("FailureReason") or None)


class SageMaker:
    """SageMaker through boto3: what an endpoint serves and with which traffic split. Built once where the
    services are assembled (bot.services.Services) and handed in; raises SageMakerError."""

    def __init__(self, clients: aws.AwsClients):
        self._clients = clients

    def describe_endpoint(self, endpoint: str, region: str) -> EndpointState:
        sm = self._clients.client("sagemaker", region)
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
            if config_name:
                instance_types = _instance_types(sm.describe_endpoint_config(EndpointConfigName=config_name))
        except (ClientError, BotoCoreError):
            pass  # instance types are a detail; the split is what matters
        return _endpoint_state(endpoint, desc, instance_types)


    def set_weights(self, endpoint: str, region: str, weights: dict[str, float]) -> bool:
        """Sets the traffic weight of every variant of the endpoint (UpdateEndpointWeightsAndCapacities): the
        variants named get their weight, every other variant 0. A share that no rollout names is a share
        nobody judges, so a weight change always says what the whole endpoint serves.

        Reads the current weights first and returns False, without calling the update, when the endpoint
        already has (or is already being given) these weights: a controller that crashed after the call and
        retries must not shift twice. A weight of 0 is sent as 0 (boto3 keeps zero values; SDK layers that
        drop "empty" fields would silently leave the old weight).
        """
        what = f"set the traffic weights of endpoint `{endpoint}` in {region}"
        state = self.describe_endpoint(endpoint, region)
        missing = [name for name in weights if state.variant(name) is None]
        if missing:
            found = ", ".join(f"`{v.name}`" for v in state.variants) or "none"
            raise VariantNotFound(
                f"SageMaker endpoint `{endpoint}` has no variant {', '.join(f'`{m}`' for m in missing)} "
                f"(it has {found}); the traffic weights were not changed."
            )
        whole = {v.name: float(weights.get(v.name, 0.0)) for v in state.variants}
        if weights_match(state, whole):
            return False
        if state.status not in ("InService",):
            raise SageMakerError(
                f"SageMaker endpoint `{endpoint}` is {state.status}, so its traffic weights cannot be changed now; "
                "the change is retried on the next pass."
            )
        sm = self._clients.client("sagemaker", region)
        try:
            sm.update_endpoint_weights_and_capacities(
                EndpointName=endpoint,
                DesiredWeightsAndCapacities=[
                    {"VariantName": name, "DesiredWeight": weight} for name, weight in whole.items()
                ],
            )
        except (ClientError, BotoCoreError) as exc:
            raise SageMakerError(_failure(exc, what) + "; the traffic split was not changed.") from None
        return True


    def update_endpoint_config(self, endpoint: str, config_name: str, region: str) -> bool:
        """Move the endpoint to another endpoint config (UpdateEndpoint); False when it is already on it."""
        what = f"move endpoint `{endpoint}` in {region} to endpoint config `{config_name}`"
        state = self.describe_endpoint(endpoint, region)
        if state.config_name == config_name:
            return False
        if state.status not in ("InService",):
            raise SageMakerError(
                f"SageMaker endpoint `{endpoint}` is {state.status}, so it cannot be moved to endpoint config "
                f"`{config_name}` now; this is retried on the next pass."
            )
        sm = self._clients.client("sagemaker", region)
        try:
            sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=config_name)
        except (ClientError, BotoCoreError) as exc:
            raise SageMakerError(_failure(exc, what) + "; the endpoint was left as it was.") from None
        return True


    def describe_endpoint_config(self, config_name: str, region: str) -> dict:
        sm = self._clients.client("sagemaker", region)
        try:
            return sm.describe_endpoint_config(EndpointConfigName=config_name)
        except (ClientError, BotoCoreError) as exc:
            raise SageMakerError(_failure(exc, f"describe endpoint config `{config_name}` in {region}") + ".") from None


    def ensure_single_variant_config(self, source_config: str, variant: str, new_name: str, region: str, *,
                                     idle: tuple[str, ...] = (), counts: dict[str, int] | None = None) -> str:
        """An endpoint config like `source_config` serving only `variant` (weight 1), created once; the
        variants in `idle` stay on it at weight 0 (a candidate whose rollout waits for this one to end).
        `counts` (variant -> instances) replaces their initial instance count: UpdateEndpoint gives each variant
        its config's count, so a variant that scaled since its config was written keeps its instances.

        Used after a rollout has baked, to retire the old variant's instances. The copy keeps every setting of
        the source config that CreateEndpointConfig accepts (data capture, KMS key, ...); an existing config of
        that name is reused, so a retry after a crash does not fail.
        """
        sm = self._clients.client("sagemaker", region)
        try:
            sm.describe_endpoint_config(EndpointConfigName=new_name)
            return new_name
        except ClientError as exc:
            if not _is_not_found(exc):
                raise SageMakerError(_failure(exc, f"look up endpoint config `{new_name}` in {region}") + ".") from None
        except BotoCoreError as exc:
            raise SageMakerError(_failure(exc, f"look up endpoint config `{new_name}` in {region}") + ".") from None
        source = self.describe_endpoint_config(source_config, region)
        entries = {pv.get("VariantName"): pv for pv in source.get("ProductionVariants", [])}
        if variant not in entries:
            raise SageMakerError(
                f"SageMaker endpoint config `{source_config}` has no variant `{variant}`; "
                f"no config serving only `{variant}` was created."
            )
        variant_keys = _allowed(sm, "ProductionVariant")
        kept = []
        for name, weight in [(variant, 1.0), *((n, 0.0) for n in idle if n in entries and n != variant)]:
            copied = {k: v for k, v in entries[name].items() if k in variant_keys and v not in (None, {}, [])}
            copied["InitialVariantWeight"] = weight
            if (counts or {}).get(name) and "InitialInstanceCount" in copied:
                copied["InitialInstanceCount"] = int(counts[name])
            kept.append(copied)
        top_keys = _allowed(sm, None, "CreateEndpointConfig") - {"EndpointConfigName", "ProductionVariants", "Tags"}
        # Shadow variants belong to the old setup; empty structures (moto echoes VpcConfig {}) are rejected by AWS.
        extra = {k: v for k, v in source.items() if k in top_keys - {"ShadowProductionVariants"} and v not in (None, {}, [])}
        try:
            sm.create_endpoint_config(EndpointConfigName=new_name, ProductionVariants=kept, **extra)
        except ClientError as exc:
            message = exc.response.get("Error", {}).get("Message", "")
            if "already exist" not in message:
                raise SageMakerError(
                    _failure(exc, f"create endpoint config `{new_name}` in {region}") + "; the endpoint was left as it was."
                ) from None
        except BotoCoreError as exc:
            raise SageMakerError(_failure(exc, f"create endpoint config `{new_name}` in {region}") + ".") from None
        return new_name


    def read_endpoint(self, endpoint: str, region: str, *, known_config: str | None = None,
                      known_types: dict[str, str] | None = None,
                      call: Callable[[Callable[[], Any]], Any] = lambda once: once()) -> tuple[EndpointState, int]:
        """DescribeEndpoint, plus DescribeEndpointConfig only when the endpoint's config is not `known_config`
        (endpoint configs cannot be changed, so their instance types are read once). Returns the state and the
        number of calls made. `call(once)` runs each request (the snapshot's pacing and back-off); a throttled
        request raises Throttled."""
        sm = self._clients.client("sagemaker", region, attempts=1)
        calls = 0

        def request(operation: str, **kwargs) -> dict:
            def once() -> dict:
                nonlocal calls
                calls += 1
                try:
                    return getattr(sm, operation)(**kwargs)
                except ClientError as exc:
                    if _error_code(exc) in THROTTLING_CODES:
                        raise Throttled(f"SageMaker throttled {operation} of `{endpoint}` in {region}.") from None
                    raise

            return call(once)

        try:
            desc = request("describe_endpoint", EndpointName=endpoint)
        except ClientError as exc:
            if _is_not_found(exc):
                raise EndpointNotFound(f"SageMaker endpoint `{endpoint}` was not found in {region}.") from None
            raise SageMakerError(_failure(exc, f"describe endpoint `{endpoint}` in {region}") + ".") from None
        except BotoCoreError as exc:
            raise SageMakerError(_failure(exc, f"describe endpoint `{endpoint}` in {region}") + ".") from None
        config_name = desc.get("EndpointConfigName", "")
        types = dict(known_types or {}) if config_name and config_name == known_config else None
        if types is None:
            types = {}
            try:
                if config_name:
                    types = _instance_types(request("describe_endpoint_config", EndpointConfigName=config_name))
            except (ClientError, BotoCoreError):
                pass  # instance types are a detail; the split and the status are what matter
        return _endpoint_state(endpoint, desc, types), calls
