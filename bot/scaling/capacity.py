"""The two scaling steps that must happen in order with a traffic change, called by the rollout executor:

- before the candidate takes a larger share (a rollout's start, a shift, the step to 100%, a forced promotion):
  both variants get the rollout's targets (scale-in suspended; the candidate's minimum raised to what the new
  share needs, so Application Auto Scaling adds its instances), and the weights wait until those instances are
  in service. Application Auto Scaling failing or throttling does not hold the traffic: the change goes ahead
  and the model's channel is told once. A rollback never comes here.
- before SageMaker moves the endpoint to a config without a variant (or with another instance type for it):
  the variant's scalable target is deregistered, as UpdateEndpoint refuses otherwise.
"""

from __future__ import annotations

from bot.integrations.autoscaling import AutoScalingError
from bot.integrations.sagemaker import EndpointState, SageMakerError, weights_match
from bot.scaling import messages as text
from bot.scaling import reconcile
from bot.scaling.desired import EndpointView, RolloutView, VariantView, desired, instances_for_share
from bot.store.base import utcnow

# Intent kinds that give the candidate a larger share of the traffic.
CAPACITY_FIRST = frozenset({"start", "shift", "bake", "forced"})


class Waiting(SageMakerError):
    """The candidate has fewer instances in service than its next share needs: the traffic change stays owed and
    is carried out on a later tick, once they are."""


def view_of(state: EndpointState, region: str) -> EndpointView:
    return EndpointView(endpoint=state.name, region=region, variants=tuple(
        VariantView(name=v.name, weight=v.current_weight,
                    instance_count=v.instance_count if v.instance_count is not None else v.desired_instance_count,
                    instance_type=v.instance_type) for v in state.variants))


def before_traffic(services, *, kind: str, model_name: str, endpoint: str, region: str, stable: str,
                   candidate: str, weights: dict[str, float]) -> None:
    """Raises Waiting while the candidate lacks the instances `weights` give it work for; returns when the
    weights may be set. Models without a scaling table are not held: modelbot does not size them."""
    model = services.registry.get(model_name)
    if kind not in CAPACITY_FIRST or model is None or model.scaling is None:
        return
    total = sum(weights.values()) or 1.0
    share = weights.get(candidate, 0.0) / total
    if share <= 0:
        return
    state = services.sagemaker.describe_endpoint(endpoint, region)
    if weights_match(state, weights):
        return  # already serving them (a retry after a crash): nothing to wait for
    st, cand = state.variant(stable), state.variant(candidate)
    if st is None or cand is None:
        return  # setting the weights says which variant is missing
    view = view_of(state, region)
    rollout = RolloutView(state="baking" if share >= 1.0 else "progressing", stable=stable, candidate=candidate,
                          candidate_share=share)
    wanted = {name: t for name, t in desired(model.scaling, view, rollout).items() if name in (stable, candidate)}
    try:
        observed = services.autoscaling.read(region, [(endpoint, stable), (endpoint, candidate)])
        recorded = [r for r in reconcile.recorded_for(services, [model_name])
                    if r.endpoint == endpoint and r.variant in (stable, candidate)]
        reconcile.converge(services, model, endpoint, region, wanted, observed, recorded, utcnow())
    except AutoScalingError as exc:
        reconcile.report_capacity_problem(services, model, candidate, share, exc)
        return
    fleet = view.variant(stable).instance_count
    need = instances_for_share(share, fleet, model.scaling)
    have = cand.instance_count
    if have is None or have >= need:
        return
    raise Waiting(text.waiting_for_capacity(candidate, have, need, share))


def clear_for_config(services, model_name: str, state: EndpointState, region: str, config_name: str) -> list[str]:
    """Deregisters the scalable target of every variant of `state` that endpoint config `config_name` drops or
    gives another instance type, before UpdateEndpoint moves the endpoint to it. Returns the variants
    deregistered; raises AutoScalingError (then UpdateEndpoint would be refused: the caller does not call it)."""
    config = services.sagemaker.describe_endpoint_config(config_name, region)
    kept = {pv["VariantName"]: pv.get("InstanceType") for pv in config.get("ProductionVariants", [])}
    leaving = [v.name for v in state.variants
               if v.name not in kept or (v.instance_type and kept[v.name] and kept[v.name] != v.instance_type)]
    if not leaving:
        return []
    registered = services.autoscaling.registered(state.name, region, leaving)
    done = [name for name in leaving if name in registered and services.autoscaling.deregister(state.name, name, region)]
    reconcile.forget(services, model_name, state.name, leaving)
    return done
