"""The rollout judgement: properties over any counts, simulated error rates under repeated looks, examples."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from statistics import NormalDist
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from bot.rollouts.judgement import (
    ALPHA_SHARE_4XX,
    ALPHA_SHARE_5XX,
    ROLLBACK,
    SHIFT,
    Action,
    Counts,
    judge,
    judge_vector,
)
from bot.registry import RolloutSettings

DEFAULTS = RolloutSettings()  # min_requests 500, margin 0.002, alpha 0.01, max_step_minutes 120
RANK = {Action.SHIFT: 0, Action.WAIT: 1, Action.PAUSE: 1, Action.ROLLBACK: 2}
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def counts(draw, max_requests: int = 10**9) -> Counts:
    requests = draw(st.one_of(st.integers(0, 3000), st.integers(0, 300_000), st.integers(0, max_requests)))

    def errors() -> int:
        return draw(st.one_of(
            st.integers(0, min(requests, 40)),
            st.floats(0, 0.05).map(lambda r: int(r * requests)),
            st.floats(0, 1).map(lambda r: int(r * requests)),
        ))

    return Counts(requests, errors(), errors())


rollout_settings = st.builds(
    SimpleNamespace,
    min_requests=st.integers(1, 5000),
    margin=st.floats(1e-4, 0.5),
    alpha=st.floats(1e-4, 0.3),
    max_step_minutes=st.floats(1, 1000),
)


def _settings(**kw) -> RolloutSettings:
    return DEFAULTS.model_copy(update=kw)


# ---- any counts ------------------------------------------------------------------------------------------

@PROPERTY
@given(counts(), counts(), rollout_settings, st.floats(0, 2000))
def test_any_counts_give_a_complete_consistent_decision(stable, candidate, s, minutes):
    d = judge(stable, candidate, s, minutes)
    ev = d.evidence
    assert isinstance(d.action, Action)
    assert ev.threshold == pytest.approx(1 / s.alpha)
    for value in (ev.stable_rate_5xx, ev.candidate_rate_5xx, ev.stable_rate_4xx, ev.candidate_rate_4xx):
        assert 0 <= value <= 1
    assert ev.diff_5xx == pytest.approx(ev.candidate_rate_5xx - ev.stable_rate_5xx)
    for lo, hi in (ev.interval_5xx, ev.interval_4xx):
        assert -1 <= lo <= hi <= 1
    assert math.isfinite(ev.statistic_5xx) and math.isfinite(ev.statistic_4xx)
    assert ev.statistic_5xx >= 0 and ev.statistic_4xx >= 0
    assert isinstance(ev.reason, str) and ev.reason
    if d.action is Action.ROLLBACK:
        stat = ev.statistic_5xx if d.failing == "5xx" else ev.statistic_4xx
        assert d.failing in ("5xx", "4xx") and stat >= ev.threshold
    else:
        assert d.failing is None
        assert max(ev.statistic_5xx, ev.statistic_4xx) < ev.threshold
    if d.action is Action.SHIFT:
        assert min(stable.requests, candidate.requests) >= s.min_requests
        assert ev.interval_5xx[1] < s.margin and ev.interval_4xx[1] < s.margin
    if d.action is Action.PAUSE:
        assert minutes >= s.max_step_minutes


@pytest.mark.parametrize("stable, candidate, message", [
    (Counts(100, 101, 0), Counts(100, 0, 0), "stable has more errors_5xx"),
    (Counts(100, 0, 0), Counts(100, 0, 101), "candidate has more errors_4xx"),
    (Counts(-1, 0, 0), Counts(100, 0, 0), "stable requests"),
    (Counts(100, 0, 0), Counts(100, float("nan"), 0), "candidate errors_5xx"),
    (Counts(100, 0, 0), Counts(float("inf"), 0, 0), "candidate requests"),
])
def test_impossible_counts_are_refused_with_the_field_named(stable, candidate, message):
    with pytest.raises(ValueError, match=message):
        judge(stable, candidate, DEFAULTS, 1.0)


def test_no_traffic_yet_waits_without_dividing_by_zero():
    d = judge(Counts(0, 0, 0), Counts(0, 0, 0), DEFAULTS, 0.0)
    assert d.action is Action.WAIT
    assert d.evidence.interval_5xx == (-1.0, 1.0)
    assert "fewer than 500 requests per variant" in d.evidence.reason


def test_counts_as_cloudwatch_floats_are_fine():
    as_ints = judge(Counts(9000, 45, 18), Counts(1000, 20, 2), DEFAULTS, 5.0)
    as_floats = judge(Counts(9000.0, 45.0, 18.0), Counts(1000.0, 20.0, 2.0), DEFAULTS, 5.0)
    assert as_floats == as_ints


def test_huge_counts_stay_finite_and_decide():
    equal = judge(Counts(10**9, 5 * 10**6, 2 * 10**6), Counts(10**9, 5 * 10**6, 2 * 10**6), DEFAULTS, 5.0)
    assert equal.action is Action.SHIFT
    worse = judge(Counts(10**9, 5 * 10**6, 2 * 10**6), Counts(10**9, 6 * 10**6, 2 * 10**6), DEFAULTS, 5.0)
    assert worse.action is Action.ROLLBACK and worse.failing == "5xx"
    assert math.isfinite(worse.evidence.statistic_5xx)


# ---- monotone and symmetric ------------------------------------------------------------------------------

@PROPERTY
@given(counts(max_requests=10**7), counts(max_requests=10**7), st.integers(1, 10**6), st.sampled_from(["5xx", "4xx"]),
       st.floats(0, 300))
def test_more_candidate_errors_never_make_the_candidate_look_better(stable, candidate, extra, kind, minutes):
    field = f"errors_{kind}"
    worse = replace(candidate, **{field: min(candidate.requests, getattr(candidate, field) + extra)})
    before = judge(stable, candidate, DEFAULTS, minutes)
    after = judge(stable, worse, DEFAULTS, minutes)
    assert RANK[after.action] >= RANK[before.action]
    # (up to rounding: with no stable traffic the statistic is 1 x share give or take an ulp)
    assert getattr(after.evidence, f"statistic_{kind}") >= getattr(before.evidence, f"statistic_{kind}") * (1 - 1e-9)
    assert getattr(after.evidence, f"interval_{kind}")[1] >= getattr(before.evidence, f"interval_{kind}")[1] - 1e-12


@PROPERTY
@given(counts(), counts(), rollout_settings)
def test_below_min_requests_never_shifts(stable, candidate, s):
    assume(min(stable.requests, candidate.requests) < s.min_requests)
    assert judge(stable, candidate, s, 0.0).action is not Action.SHIFT


@PROPERTY
@given(counts(), st.integers(0, 10**9), st.floats(0, 1), st.floats(0, 1), rollout_settings)
def test_a_candidate_no_worse_than_stable_is_never_rolled_back(stable, cand_requests, f5, f4, s):
    def no_worse(stable_errors: int, fraction: float) -> int:
        # Integer arithmetic: candidate errors / candidate requests <= stable errors / stable requests, exactly.
        if stable.requests == 0:
            return 0
        return int(fraction * stable_errors) * cand_requests // stable.requests

    candidate = Counts(cand_requests, no_worse(stable.errors_5xx, f5), no_worse(stable.errors_4xx, f4))
    d = judge(stable, candidate, s, 0.0)
    assert d.action is not Action.ROLLBACK
    assert d.evidence.statistic_5xx <= ALPHA_SHARE_5XX * (1 + 1e-9)
    assert d.evidence.statistic_4xx <= ALPHA_SHARE_4XX * (1 + 1e-9)


@PROPERTY
@given(counts(), counts())
def test_swapping_the_variants_mirrors_the_interval(a, b):
    ab = judge(a, b, DEFAULTS, 0.0).evidence
    ba = judge(b, a, DEFAULTS, 0.0).evidence
    for x, y in ((ab.interval_5xx, ba.interval_5xx), (ab.interval_4xx, ba.interval_4xx)):
        assert x[0] == pytest.approx(-y[1], abs=1e-12) and x[1] == pytest.approx(-y[0], abs=1e-12)
    assert ab.diff_5xx == pytest.approx(-ba.diff_5xx)


@PROPERTY
@given(counts())
def test_identical_variants_are_never_worse_and_the_interval_is_centred(c):
    ev = judge(c, c, DEFAULTS, 0.0).evidence
    assert judge(c, c, DEFAULTS, 0.0).action is not Action.ROLLBACK
    assert ev.diff_5xx == 0
    assert ev.interval_5xx[0] == pytest.approx(-ev.interval_5xx[1])


# ---- one implementation for one rollout and for many ------------------------------------------------------

@PROPERTY
@given(st.lists(st.tuples(counts(), counts(), st.floats(0, 300)), min_size=1, max_size=8), rollout_settings)
def test_judge_and_the_vectorised_path_agree(rows, s):
    cols = list(zip(*[(a.requests, a.errors_5xx, a.errors_4xx, b.requests, b.errors_5xx, b.errors_4xx, m)
                      for a, b, m in rows]))
    v = judge_vector(*[np.array(c, dtype=float) for c in cols[:6]], min_requests=s.min_requests, margin=s.margin,
                     alpha=s.alpha, minutes_in_step=np.array(cols[6]), max_step_minutes=s.max_step_minutes)
    for i, (a, b, m) in enumerate(rows):
        d = judge(a, b, s, m)
        assert d.action.value == ("wait", "shift", "rollback", "pause")[v.action[i]]
        assert d.failing == (None, "5xx", "4xx")[v.failing[i]]
        assert d.evidence.interval_5xx == (v.lower_5xx[i], v.upper_5xx[i])
        assert d.evidence.interval_4xx == (v.lower_4xx[i], v.upper_4xx[i])
        if abs(v.log_evalue_5xx[i]) < 600:
            assert d.evidence.statistic_5xx == pytest.approx(ALPHA_SHARE_5XX * math.exp(v.log_evalue_5xx[i]))


# ---- repeated looks: simulated rollouts -----------------------------------------------------------------

def _simulate(rng, rollouts, ticks, per_tick, share, p5_stable, p5_candidate, p4):
    shape = (rollouts, ticks)
    nc = rng.binomial(per_tick, share, shape)
    ns = per_tick - nc
    cum = lambda a: np.cumsum(a, axis=1, dtype=float)  # noqa: E731
    return dict(ns=cum(ns), nc=cum(nc), s5=cum(rng.binomial(ns, p5_stable)), c5=cum(rng.binomial(nc, p5_candidate)),
                s4=cum(rng.binomial(ns, p4)), c4=cum(rng.binomial(nc, p4)))


def _first(hit: np.ndarray) -> np.ndarray:
    """Index of the first tick where hit is true, per rollout; the number of ticks when never."""
    return np.where(hit.any(axis=1), hit.argmax(axis=1), hit.shape[1])


def _judge_all(sim, s: RolloutSettings):
    return judge_vector(sim["ns"], sim["s5"], sim["s4"], sim["nc"], sim["c5"], sim["c4"],
                        min_requests=s.min_requests, margin=s.margin, alpha=s.alpha)


def test_judging_every_tick_keeps_false_rollbacks_below_alpha_where_a_repeated_z_test_does_not():
    started = time.perf_counter()
    rng = np.random.default_rng(20240501)
    # Equal rates, 2% 5XX and 1% 4XX so that 150 ticks hold plenty of errors: 6,000 rollouts, every tick judged.
    sim = _simulate(rng, 6000, 150, 1000, 0.10, 0.02, 0.02, 0.01)
    v = _judge_all(sim, DEFAULTS)
    false_rollbacks = (v.action == ROLLBACK).any(axis=1).mean()
    assert false_rollbacks <= DEFAULTS.alpha, f"{false_rollbacks:.2%} of equal candidates rolled back"

    # The same looks with a plain one-sided z-test at the same alpha: this simulation does catch an invalid test.
    z_crit = NormalDist().inv_cdf(1 - DEFAULTS.alpha)
    pooled = (sim["c5"] + sim["s5"]) / (sim["nc"] + sim["ns"])
    se = np.sqrt(pooled * (1 - pooled) * (1 / sim["nc"] + 1 / sim["ns"]))
    z = (sim["c5"] / sim["nc"] - sim["s5"] / sim["ns"]) / se
    enough = (sim["nc"] >= 500) & (sim["ns"] >= 500)
    assert (enough & (z > z_crit)).any(axis=1).mean() > 3 * DEFAULTS.alpha
    assert time.perf_counter() - started < 10


def test_the_shift_interval_holds_under_repeated_looks():
    rng = np.random.default_rng(7)
    # Candidate worse by exactly the margin (0.5% -> 0.7%) at 10% of traffic: shifting it is the error the
    # confidence sequence bounds (alpha/2). Early ticks hold candidates with 0-1 errors in ~1,000 requests,
    # where a plug-in (Wald) variance would shift a few percent of them.
    at_margin = _simulate(rng, 4000, 100, 1000, 0.10, 0.005, 0.005 + DEFAULTS.margin, 0.002)
    v = _judge_all(at_margin, DEFAULTS)
    wrong_shifts = _first(v.action == SHIFT) < _first(v.action == ROLLBACK)
    assert wrong_shifts.mean() <= DEFAULTS.alpha / 2, f"{wrong_shifts.mean():.2%} shifted although worse by the margin"
    # And the interval is not uselessly wide: equal candidates do shift (a wider margin, half the traffic).
    s = _settings(margin=0.005)
    equal = _simulate(rng, 1000, 150, 1000, 0.5, 0.01, 0.01, 0.005)
    assert (_judge_all(equal, s).action == SHIFT).any(axis=1).mean() > 0.9


def test_a_2x_regression_is_caught_in_the_calibration_setting():
    rng = np.random.default_rng(3)
    sim = _simulate(rng, 1000, 400, 1000, 0.10, 0.005, 0.010, 0.002)
    v = _judge_all(sim, DEFAULTS)
    caught = (v.action == ROLLBACK).any(axis=1)
    assert caught.mean() >= 0.99
    first = (v.action == ROLLBACK).argmax(axis=1)
    # the project's calibration figures (README, "The judgement"): Wald's SPRT knowing both rates needs a median ~22,000 requests (22 ticks).
    assert np.median(first + 1) <= 1.5 * 22
    assert not (v.action[~caught] == SHIFT).any()


# ---- examples a user would recognise ----------------------------------------------------------------------

def test_an_obviously_bad_candidate_is_rolled_back_with_the_rates_in_the_reason():
    d = judge(Counts(10_000, 49, 30), Counts(1_000, 102, 3), DEFAULTS, 10.0)
    assert d.action is Action.ROLLBACK and d.failing == "5xx"
    assert "10.2%" in d.evidence.reason and "0.49%" in d.evidence.reason
    assert "99% CS" in d.evidence.reason and "alpha 0.01" in d.evidence.reason


def test_a_catastrophic_candidate_is_rolled_back_before_min_requests():
    d = judge(Counts(2_000, 10, 4), Counts(200, 100, 0), DEFAULTS, 1.0)
    assert d.action is Action.ROLLBACK
    assert "50%" in d.evidence.reason


def test_a_few_early_errors_do_not_roll_back():
    # 2 errors in the candidate's first 50 requests (4%) against 0.5%: suspicious, not yet evidence.
    assert judge(Counts(450, 2, 1), Counts(50, 2, 0), DEFAULTS, 1.0).action is Action.WAIT


def test_a_4xx_regression_is_named():
    d = judge(Counts(20_000, 100, 20), Counts(2_000, 10, 60), DEFAULTS, 10.0)
    assert d.action is Action.ROLLBACK and d.failing == "4xx"
    assert "4XX rate candidate 3%" in d.evidence.reason


def test_a_clearly_good_candidate_shifts():
    d = judge(Counts(200_000, 1_000, 400), Counts(200_000, 990, 380), DEFAULTS, 30.0)
    assert d.action is Action.SHIFT and d.failing is None
    assert "0.495%" in d.evidence.reason and "0.5%" in d.evidence.reason and "margin" in d.evidence.reason


def test_inconclusive_waits_then_pauses_after_max_step_minutes_but_a_rollback_does_not_wait():
    stable, candidate = Counts(18_000, 90, 40), Counts(2_000, 11, 4)
    assert judge(stable, candidate, DEFAULTS, 119.0).action is Action.WAIT
    paused = judge(stable, candidate, DEFAULTS, 120.0)
    assert paused.action is Action.PAUSE and "120 min" in paused.evidence.reason
    assert judge(Counts(18_000, 90, 40), Counts(2_000, 60, 4), DEFAULTS, 500.0).action is Action.ROLLBACK


def test_too_little_traffic_says_how_much_there_is():
    d = judge(Counts(1_080, 5, 1), Counts(120, 1, 0), DEFAULTS, 3.0)
    assert d.action is Action.WAIT
    assert "candidate 120, stable 1,080" in d.evidence.reason


def test_any_object_with_the_settings_fields_will_do():
    loose = SimpleNamespace(min_requests=500, margin=0.002, alpha=0.01, max_step_minutes=120)
    a = judge(Counts(20_000, 100, 40), Counts(2_000, 30, 4), loose, 10.0)
    b = judge(Counts(20_000, 100, 40), Counts(2_000, 30, 4), DEFAULTS, 10.0)
    assert a == b


def test_judging_hundreds_of_rollouts_is_fast():
    started = time.perf_counter()
    for i in range(300):
        judge(Counts(18_000 + i, 90, 40), Counts(2_000, 11 + i % 7, 4), DEFAULTS, 30.0)
    assert time.perf_counter() - started < 1.5
