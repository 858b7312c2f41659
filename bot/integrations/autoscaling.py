"""Application Auto Scaling for SageMaker variants (boto3 `application-autoscaling`).

A variant's scalable target is `endpoint/<endpoint>/variant/<variant>` on the dimension
`sagemaker:variant:DesiredInstanceCount`; modelbot's policy on it is one target-tracking policy on the predefined
metric `SageMakerVariantInvocationsPerInstance`, named POLICY_NAME so it is told apart from a policy someone
added by hand.

Every call goes through AwsClients: connect and read timeouts, and botocore's standard retry mode, which retries
throttling (and 5xx answers) with exponential back-off and jitter. What still fails raises AutoScalingError
naming Application Auto Scaling, the variant and what was not done; `throttled` says whether AWS was only
busy.
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from bot.errors import ExternalError
from bot.integrations import aws

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"
POLICY_NAME = "modelbot-invocations-per-instance"
POLICY_TYPE = "TargetTrackingScaling"
# DescribeScalableTargets takes at most 50 resource ids a call; DescribeScalingPolicies pages 50 at a time.
IDS_PER_CALL = 50
THROTTLING_CODES = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException",
                              "RequestLimitExceeded", "ConcurrentUpdateException"})


class AutoScalingError(ExternalError):
    """An Application Auto Scaling call failed; the message names the system, the variant and what was not done."""

    def __init__(self, message: str, *, throttled: bool = False, code: str = ""):
        super().__init__(message)
        self.throttled = throttled
        self.code = code


def resource_id(endpoint: str, variant: str) -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


def variant_of(resource: str) -> tuple[str, str] | None:
    """(endpoint, variant) of a SageMaker variant's resource id; None for anything else."""
    parts = resource.split("/")
    if len(parts) == 4 and parts[0] == "endpoint" and parts[2] == "variant":
        return parts[1], parts[3]
    return None


@dataclass(frozen=True)
class Policy:
    """A target-tracking policy on invocations per instance (a minute, per instance, as SageMaker counts)."""

    target_value: float
    scale_in_cooldown: int | None = None
    scale_out_cooldown: int | None = None
    metric: str = METRIC

    def configuration(self) -> dict:
        config: dict = {"TargetValue": float(self.target_value),
                        "PredefinedMetricSpecification": {"PredefinedMetricType": self.metric}}
        if self.scale_in_cooldown is not None:
            config["ScaleInCooldown"] = int(self.scale_in_cooldown)
        if self.scale_out_cooldown is not None:
            config["ScaleOutCooldown"] = int(self.scale_out_cooldown)
        return config


@dataclass(frozen=True)
class Observed:
    """A variant's scalable target as Application Auto Scaling has it, with modelbot's policy on it (if any) and
    the names of other policies someone put there."""

    endpoint: str
    variant: str
    min_capacity: int
    max_capacity: int
    scale_in_suspended: bool = False
    scale_out_suspended: bool = False
    scheduled_suspended: bool = False
    policy: Policy | None = None
    other_policies: tuple[str, ...] = ()


def _policy(entry: dict) -> Policy | None:
    config = entry.get("TargetTrackingScalingPolicyConfiguration") or {}
    if entry.get("PolicyType") != POLICY_TYPE or "TargetValue" not in config:
        return None
    metric = (config.get("PredefinedMetricSpecification") or {}).get("PredefinedMetricType") or "custom"
    return Policy(target_value=float(config["TargetValue"]), scale_in_cooldown=config.get("ScaleInCooldown"),
                  scale_out_cooldown=config.get("ScaleOutCooldown"), metric=metric)


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _is_missing(exc: ClientError) -> bool:
    message = exc.response.get("Error", {}).get("Message", "")
    return _code(exc) in ("ObjectNotFoundException", "ValidationException") and (
        "No scalable target" in message or "No scaling policy" in message or "not found" in message.lower())


def _failure(exc: Exception, what: str, not_done: str) -> AutoScalingError:
    if isinstance(exc, ClientError):
        code = _code(exc)
        message = exc.response.get("Error", {}).get("Message", str(exc))
        busy = code in THROTTLING_CODES
        reason = f"it was too busy ({code}) even after retries with back-off" if busy else f"{code}: {message}"
        return AutoScalingError(f"Application Auto Scaling did not {what} ({reason}); {not_done}.",
                                throttled=busy, code=code)
    return AutoScalingError(f"Application Auto Scaling could not be reached to {what} ({exc}); {not_done}.")


class AutoScaling:
    """Application Auto Scaling through boto3. Built once where the services are assembled (bot.services) and
    handed in; raises AutoScalingError."""

    def __init__(self, clients: aws.AwsClients):
        self._clients = clients

    def _client(self, region: str):
        return self._clients.client("application-autoscaling", region)

    def read(self, region: str, variants: list[tuple[str, str]]) -> dict[tuple[str, str], Observed]:
        """The scalable targets of these (endpoint, variant) pairs that exist, with their policies: one
        DescribeScalableTargets per 50 variants, and the region's SageMaker policies read once (paged)."""
        wanted = {resource_id(e, v): (e, v) for e, v in variants}
        if not wanted:
            return {}
        client = self._client(region)
        what = f"describe the scalable targets of {len(wanted)} SageMaker variant(s) in {region}"
        targets: dict[str, dict] = {}
        ids = sorted(wanted)
        try:
            for start in range(0, len(ids), IDS_PER_CALL):
                kwargs = dict(ServiceNamespace=NAMESPACE, ScalableDimension=DIMENSION,
                              ResourceIds=ids[start:start + IDS_PER_CALL])
                while True:
                    page = client.describe_scalable_targets(**kwargs)
                    for t in page.get("ScalableTargets", []):
                        if t.get("ResourceId") in wanted:
                            targets[t["ResourceId"]] = t
                    if not page.get("NextToken"):
                        break
                    kwargs["NextToken"] = page["NextToken"]
            policies = self._policies(client, set(targets)) if targets else {}
        except (ClientError, BotoCoreError) as exc:
            raise _failure(exc, what, "scaling was not checked this pass") from None
        found = {}
        for rid, t in targets.items():
            state = t.get("SuspendedState") or {}
            mine = [p for p in policies.get(rid, []) if p.get("PolicyName") == POLICY_NAME]
            others = tuple(sorted(p.get("PolicyName", "?") for p in policies.get(rid, [])
                                  if p.get("PolicyName") != POLICY_NAME))
            found[wanted[rid]] = Observed(
                endpoint=wanted[rid][0], variant=wanted[rid][1],
                min_capacity=int(t.get("MinCapacity") or 0), max_capacity=int(t.get("MaxCapacity") or 0),
                scale_in_suspended=bool(state.get("DynamicScalingInSuspended")),
                scale_out_suspended=bool(state.get("DynamicScalingOutSuspended")),
                scheduled_suspended=bool(state.get("ScheduledScalingSuspended")),
                policy=_policy(mine[0]) if mine else None, other_policies=others)
        return found

    def _policies(self, client, resources: set[str]) -> dict[str, list[dict]]:
        """The policies on `resources`. One resource: asked for by id; more: the region's SageMaker policies,
        paged, filtered here (DescribeScalingPolicies takes one resource id at most)."""
        out: dict[str, list[dict]] = {}
        kwargs: dict = dict(ServiceNamespace=NAMESPACE, ScalableDimension=DIMENSION)
        if len(resources) == 1:
            kwargs["ResourceId"] = next(iter(resources))
        while True:
            page = client.describe_scaling_policies(**kwargs)
            for p in page.get("ScalingPolicies", []):
                if p.get("ResourceId") in resources:  # exact: a filter by id may also match longer ids
                    out.setdefault(p["ResourceId"], []).append(p)
            if not page.get("NextToken"):
                return out
            kwargs["NextToken"] = page["NextToken"]

    def register(self, endpoint: str, variant: str, region: str, *, min_capacity: int, max_capacity: int,
                 scale_in_suspended: bool) -> None:
        """Registers (or updates) the variant's scalable target. Application Auto Scaling then brings the variant's
        instance count inside [min, max]: raising the minimum adds instances."""
        what = (f"register `{variant}` of endpoint `{endpoint}` in {region} as a scalable target "
                f"({min_capacity}-{max_capacity} instances)")
        try:
            self._client(region).register_scalable_target(
                ServiceNamespace=NAMESPACE, ResourceId=resource_id(endpoint, variant), ScalableDimension=DIMENSION,
                MinCapacity=int(min_capacity), MaxCapacity=int(max_capacity),
                SuspendedState={"DynamicScalingInSuspended": bool(scale_in_suspended),
                                "DynamicScalingOutSuspended": False, "ScheduledScalingSuspended": False})
        except (ClientError, BotoCoreError) as exc:
            raise _failure(exc, what, "its scaling was left as it was") from None

    def put_policy(self, endpoint: str, variant: str, region: str, policy: Policy) -> None:
        what = (f"put the target-tracking policy ({policy.target_value:g} invocations per instance) on `{variant}` "
                f"of endpoint `{endpoint}` in {region}")
        try:
            self._client(region).put_scaling_policy(
                PolicyName=POLICY_NAME, ServiceNamespace=NAMESPACE, ResourceId=resource_id(endpoint, variant),
                ScalableDimension=DIMENSION, PolicyType=POLICY_TYPE,
                TargetTrackingScalingPolicyConfiguration=policy.configuration())
        except (ClientError, BotoCoreError) as exc:
            raise _failure(exc, what, "the variant scales by its old policy, or none") from None

    def delete_policy(self, endpoint: str, variant: str, region: str) -> None:
        """Removes modelbot's policy from the variant; nothing to do when it has none."""
        what = f"delete modelbot's scaling policy on `{variant}` of endpoint `{endpoint}` in {region}"
        try:
            self._client(region).delete_scaling_policy(
                PolicyName=POLICY_NAME, ServiceNamespace=NAMESPACE, ResourceId=resource_id(endpoint, variant),
                ScalableDimension=DIMENSION)
        except ClientError as exc:
            if not _is_missing(exc):
                raise _failure(exc, what, "the policy stays") from None
        except BotoCoreError as exc:
            raise _failure(exc, what, "the policy stays") from None

    def deregister(self, endpoint: str, variant: str, region: str) -> bool:
        """Deregisters the variant's scalable target, every policy on it first (AWS deletes them with the target;
        they are removed explicitly so nothing is left behind where that is not so). False when there was no
        target. SageMaker refuses to remove a variant, or change its instance type, while it is a target."""
        client = self._client(region)
        rid = resource_id(endpoint, variant)
        what = f"deregister `{variant}` of endpoint `{endpoint}` in {region} as a scalable target"
        try:
            for entry in self._policies(client, {rid}).get(rid, []):
                try:
                    client.delete_scaling_policy(PolicyName=entry["PolicyName"], ServiceNamespace=NAMESPACE,
                                                 ResourceId=rid, ScalableDimension=DIMENSION)
                except ClientError as exc:
                    if not _is_missing(exc):
                        raise
            client.deregister_scalable_target(ServiceNamespace=NAMESPACE, ResourceId=rid, ScalableDimension=DIMENSION)
        except ClientError as exc:
            if _is_missing(exc):
                return False
            raise _failure(exc, what, "the variant is still a scalable target") from None
        except BotoCoreError as exc:
            raise _failure(exc, what, "the variant is still a scalable target") from None
        return True

    def registered(self, endpoint: str, region: str, variants: list[str]) -> dict[str, Observed]:
        """The variants among `variants` that are scalable targets now (one call per 50)."""
        return {v: o for (_, v), o in self.read(region, [(endpoint, v) for v in variants]).items()}
