"""The desired scaling state, a pure function: steady state, through a rollout, after it; and what a pass does
about one variant (initial, drift, change, takeover, off)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.integrations.autoscaling import Observed, Policy
from bot.registry import ScalingSettings
from bot.scaling.desired import (
    EndpointView,
    RolloutView,
    Target,
    VariantView,
    desired,
    differences,
    instances_for_share,
    plan,
)

SETTINGS = ScalingSettings(min_instances=2, max_instances=8, target_invocations_per_instance=700,
                           scale_in_cooldown_seconds=600)
POLICY = Policy(target_value=700.0, scale_in_cooldown=600)


def endpoint(*variants: tuple[str, float, int]) -> EndpointView:
    return EndpointView("churn-prod", "us-east-1", tuple(VariantView(n, w, c, "ml.m5.large") for n, w, c in variants))


def test_steady_state_scales_the_variant_with_traffic_and_leaves_others_alone():
    wanted = desired(SETTINGS, endpoint(("v41", 1.0, 4), ("v40", 0.0, 1)), None)
    assert wanted == {"v41": Target(2, 8, False, POLICY, "serving"), "v40": None}
    assert desired(None, endpoint(("v41", 1.0, 4)), None) == {"v41": None}


def test_a_rollout_suspends_scale_in_on_both_and_sizes_the_candidate_for_its_share():
    ep = endpoint(("v41", 0.75, 6), ("v42", 0.25, 1))
    wanted = desired(SETTINGS, ep, RolloutView("progressing", "v41", "v42", candidate_share=0.5))
    assert wanted["v41"] == Target(2, 8, True, POLICY, "stable")
    assert wanted["v42"] == Target(3, 8, True, POLICY, "candidate")  # half of the stable's 6
    # Baking: the candidate carries all of it, the old variant keeps its fleet for a rollback.
    baking = desired(SETTINGS, ep, RolloutView("baking", "v41", "v42", candidate_share=1.0))
    assert baking["v42"].min_capacity == 6 and baking["v41"].role == "baking" and baking["v41"].scale_in_suspended


def test_after_a_promotion_the_scaling_is_on_the_promoted_variant_and_off_the_old_one():
    ep = endpoint(("v41", 0.0, 6), ("v42", 1.0, 6))
    wanted = desired(SETTINGS, ep, RolloutView("promoted", "v41", "v42", 1.0))
    assert wanted == {"v41": None, "v42": Target(2, 8, False, POLICY, "serving")}


def test_a_rolled_back_candidate_is_parked_at_one_instance_and_the_stable_resumes_scale_in():
    ep = endpoint(("v41", 1.0, 6), ("v42", 0.0, 3))
    wanted = desired(SETTINGS, ep, RolloutView("rolled_back", "v41", "v42", 0.0))
    assert wanted == {"v41": Target(2, 8, False, POLICY, "serving"), "v42": Target(1, 1, False, None, "parked")}


@given(share=st.floats(0.0, 1.0), more=st.floats(0.0, 1.0), fleet=st.integers(1, 50))
def test_the_instances_a_share_needs_stay_within_bounds_and_grow_with_the_share(share, more, fleet):
    low, high = sorted((share, more))
    a, b = instances_for_share(low, fleet, SETTINGS), instances_for_share(high, fleet, SETTINGS)
    assert SETTINGS.min_instances <= a <= b <= SETTINGS.max_instances
    if SETTINGS.min_instances < high * fleet <= SETTINGS.max_instances:
        assert b >= high * fleet - 1e-6  # enough for its share of the fleet's load


def observed(min_=2, max_=8, suspended=False, policy=POLICY) -> Observed:
    return Observed("churn-prod", "v41", min_, max_, scale_in_suspended=suspended, policy=policy)


def test_plan_tells_first_registration_drift_change_takeover_and_off_apart():
    want = Target(2, 8, False, POLICY)
    assert plan(want, None, None).reason == "initial"
    assert plan(want, observed(min_=1), None).reason == "takeover"
    assert plan(want, observed(), want).action == "none"
    assert plan(want, observed(min_=5), want).reason == "drift"  # modelbot had set it; someone changed it
    assert plan(want, None, want).reason == "drift"  # deregistered by hand
    moved = Target(2, 8, True, POLICY, "stable")
    assert plan(moved, observed(), want).reason == "change"  # a rollout began: not a drift
    assert plan(None, observed(), want).action == "deregister"
    assert plan(None, observed(), None).action == "none"  # someone else's target: not modelbot's to remove


def test_drift_is_described_in_words():
    want = Target(2, 8, False, POLICY)
    found = differences(want, observed(min_=5, suspended=True, policy=Policy(900.0)))
    assert "min 5 (modelbot keeps 2)" in found
    assert any("scale-in suspended" in f for f in found)
    assert "target 900 invocations per instance (modelbot keeps 700)" in found
