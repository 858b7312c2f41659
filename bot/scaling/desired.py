"""What Application Auto Scaling should have on each variant of a model's endpoint: a pure function of the
model's `[models.X.scaling]` table, what the endpoint serves, and the model's latest rollout.

    no rollout moving traffic   every variant with traffic: [min, max], the policy, scale-in on;
                                a candidate just rolled back or aborted: parked at 1 instance, no policy;
                                any other variant: no target (modelbot leaves it alone)
    a rollout in progress       both variants: the policy, scale-in suspended (a step is not judged on a fleet
    (pending .. baking)         that shrinks under it); the candidate's minimum raised to the instances its
                                share of the traffic needs, so it has them before it takes that share

The instances a share needs are counted from the stable variant's fleet: it carried all the traffic before the
rollout, and with scale-in suspended it does not shrink while the rollout runs, so `share x stable instances`
(rounded up, within [min, max]) is what the candidate needs to carry `share` of the same load. A candidate on a
bigger or smaller instance type is counted the same way: the policy then scales it on its own invocations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bot.integrations.autoscaling import Observed, Policy
from bot.registry import ScalingSettings

ACTIVE = ("pending", "progressing", "paused", "baking")
ENDED_WITHOUT_PROMOTION = ("rolled_back", "aborted")
PARKED_INSTANCES = 1  # a real-time variant cannot have fewer
WEIGHT_EPSILON = 1e-9


@dataclass(frozen=True)
class VariantView:
    name: str
    weight: float
    instance_count: int | None = None
    instance_type: str | None = None


@dataclass(frozen=True)
class EndpointView:
    endpoint: str
    region: str
    variants: tuple[VariantView, ...]

    def variant(self, name: str) -> VariantView | None:
        return next((v for v in self.variants if v.name == name), None)


@dataclass(frozen=True)
class RolloutView:
    state: str
    stable: str
    candidate: str
    candidate_share: float = 0.0  # what the rollout's latest traffic target gives the candidate, 0..1


@dataclass(frozen=True)
class Target:
    """One variant's scalable target as modelbot wants it. `role` is for the wording only."""

    min_capacity: int
    max_capacity: int
    scale_in_suspended: bool
    policy: Policy | None
    role: str = "serving"  # serving | stable | candidate | baking | parked

    def key(self) -> tuple:
        p = self.policy
        return (self.min_capacity, self.max_capacity, self.scale_in_suspended,
                None if p is None else (round(p.target_value, 6), p.scale_in_cooldown, p.scale_out_cooldown, p.metric))

    def to_json(self) -> dict:
        p = self.policy
        return {"min": self.min_capacity, "max": self.max_capacity, "scale_in_suspended": self.scale_in_suspended,
                "role": self.role,
                "policy": None if p is None else {"target": p.target_value, "scale_in_cooldown": p.scale_in_cooldown,
                                                  "scale_out_cooldown": p.scale_out_cooldown, "metric": p.metric}}

    @classmethod
    def from_json(cls, value: dict | None) -> "Target | None":
        if not value:
            return None
        p = value.get("policy")
        policy = None if p is None else Policy(target_value=float(p["target"]),
                                               scale_in_cooldown=p.get("scale_in_cooldown"),
                                               scale_out_cooldown=p.get("scale_out_cooldown"),
                                               metric=p.get("metric") or Policy.metric)
        return cls(min_capacity=int(value["min"]), max_capacity=int(value["max"]),
                   scale_in_suspended=bool(value.get("scale_in_suspended")), policy=policy,
                   role=value.get("role") or "serving")


def policy_for(settings: ScalingSettings) -> Policy:
    return Policy(target_value=float(settings.target_invocations_per_instance),
                  scale_in_cooldown=settings.scale_in_cooldown_seconds,
                  scale_out_cooldown=settings.scale_out_cooldown_seconds)


def instances_for_share(share: float, fleet: int | None, settings: ScalingSettings) -> int:
    """The instances a variant needs to carry `share` (0..1) of the traffic `fleet` instances carry in all, within
    the model's [min_instances, max_instances]; min_instances when the fleet is unknown."""
    if fleet is None or fleet <= 0 or share <= 0:
        return settings.min_instances
    need = math.ceil(share * fleet - WEIGHT_EPSILON)
    return max(settings.min_instances, min(settings.max_instances, need))


def desired(settings: ScalingSettings | None, endpoint: EndpointView,
            rollout: RolloutView | None) -> dict[str, Target | None]:
    """Variant name -> the target it should have (None: no scalable target from modelbot), for every variant on
    the endpoint. Without a scaling table nothing is wanted."""
    wanted: dict[str, Target | None] = {v.name: None for v in endpoint.variants}
    if settings is None:
        return wanted
    policy = policy_for(settings)
    lo, hi = settings.min_instances, settings.max_instances
    stable = endpoint.variant(rollout.stable) if rollout else None
    candidate = endpoint.variant(rollout.candidate) if rollout else None
    if rollout and rollout.state in ACTIVE and stable and candidate and stable.name != candidate.name:
        need = instances_for_share(rollout.candidate_share, stable.instance_count, settings)
        wanted[stable.name] = Target(lo, hi, True, policy, "baking" if rollout.state == "baking" else "stable")
        wanted[candidate.name] = Target(max(lo, need), hi, True, policy, "candidate")
        return wanted
    for v in endpoint.variants:
        if v.weight > WEIGHT_EPSILON:
            wanted[v.name] = Target(lo, hi, False, policy, "serving")
        elif rollout and rollout.state in ENDED_WITHOUT_PROMOTION and v.name == rollout.candidate:
            # Rolled back: it serves nothing; the instances a step gave it go, one stays (SageMaker's minimum).
            wanted[v.name] = Target(PARKED_INSTANCES, PARKED_INSTANCES, False, None, "parked")
    return wanted


# ---------------------------------------------------------------------------------------------------------
# Comparing with what Application Auto Scaling has


def policy_matches(want: Policy | None, have: Policy | None) -> bool:
    if want is None or have is None:
        return want is None and have is None
    return (math.isclose(want.target_value, have.target_value, rel_tol=1e-9, abs_tol=1e-9)
            and want.metric == have.metric
            and (want.scale_in_cooldown is None or want.scale_in_cooldown == have.scale_in_cooldown)
            and (want.scale_out_cooldown is None or want.scale_out_cooldown == have.scale_out_cooldown))


def bounds_match(want: Target, have: Observed) -> bool:
    return (want.min_capacity == have.min_capacity and want.max_capacity == have.max_capacity
            and want.scale_in_suspended == have.scale_in_suspended
            and not have.scale_out_suspended and not have.scheduled_suspended)


def matches(want: Target, have: Observed | None) -> bool:
    return have is not None and bounds_match(want, have) and policy_matches(want.policy, have.policy)


def differences(want: Target, have: Observed | None) -> list[str]:
    """What `have` does differently from `want`, in words (for the drift message)."""
    if have is None:
        return ["it is no longer a scalable target"]
    out = []
    if have.min_capacity != want.min_capacity:
        out.append(f"min {have.min_capacity} (modelbot keeps {want.min_capacity})")
    if have.max_capacity != want.max_capacity:
        out.append(f"max {have.max_capacity} (modelbot keeps {want.max_capacity})")
    if have.scale_in_suspended != want.scale_in_suspended:
        out.append("scale-in " + ("suspended" if have.scale_in_suspended else "on")
                   + (" (suspended while a rollout runs)" if want.scale_in_suspended else " (modelbot keeps it on)"))
    if have.scale_out_suspended:
        out.append("scale-out suspended")
    if have.scheduled_suspended:
        out.append("scheduled scaling suspended")
    if not policy_matches(want.policy, have.policy):
        if have.policy is None:
            out.append("modelbot's target-tracking policy removed")
        elif want.policy is None:
            out.append("a target-tracking policy added")
        else:
            out.append(f"target {have.policy.target_value:g} invocations per instance "
                       f"(modelbot keeps {want.policy.target_value:g})"
                       + ("" if have.policy.metric == want.policy.metric else f", metric {have.policy.metric}"))
    return out or ["its settings changed"]


# ---------------------------------------------------------------------------------------------------------
# What to do about one variant


@dataclass(frozen=True)
class Step:
    """What one pass does to one variant: nothing, apply `target`, or deregister; and why (for the wording):
    initial (first time), takeover (a target modelbot did not make was there), change (modelbot's wish moved:
    a rollout, the models file), drift (someone changed what modelbot had set), off (no longer wanted)."""

    action: str  # none | apply | deregister
    reason: str = ""
    target: Target | None = None


def plan(want: Target | None, have: Observed | None, applied: Target | None) -> Step:
    if want is None:
        if have is not None and applied is not None:
            return Step("deregister", "off")
        return Step("none")
    if matches(want, have):
        return Step("none")
    if applied is not None and applied.key() == want.key():
        return Step("apply", "drift", want)
    if applied is None:
        return Step("apply", "initial" if have is None else "takeover", want)
    return Step("apply", "change", want)
