"""The rollout judgement: properties over any counts and histories, one rollout against the vectorised rule, the
alpha spent across a rollout's steps, and examples a user would recognise. The e-processes' validity (exact per
tick, and by simulation under random splits) and the latency test are in tests/judgement/."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from bot.registry import RolloutSettings
from bot.rollouts import error_tests, judgement
from bot.rollouts.judgement import Action, Counts, Latency, StepTicks, judge, judge_vector

DEFAULTS = RolloutSettings()  # steps 10/25/50/100, min_requests 500, margin 0.002, alpha 0.01, max 120 min
RANK = {Action.SHIFT: 0, Action.WAIT: 1, Action.PAUSE: 1, Action.ROLLBACK: 2}
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def counts(draw, max_requests: int = 10**9) -> Counts:
    requests = draw(st.one_of(st.integers(0, 3000), st.integers(0, 300_000), st.integers(0, max_requests)))

    def errors() -> int:
        return draw(st.one_of(st.integers(0, min(requests, 40)), st.floats(0, 0.05).map(lambda r: int(r * requests)),
                              st.floats(0, 1).map(lambda r: int(r * requests))))

    return Counts(requests, errors(), errors())


@st.composite
def paths(draw, ticks: int = 12) -> list[tuple[Counts, Counts]]:
    """Cumulative counts at each earlier tick of one step: what rollout_events holds."""
    n = draw(st.integers(0, ticks))
    out, s, c = [], [0, 0, 0], [0, 0, 0]
    for _ in range(n):
        for acc in (s, c):
            req = draw(st.integers(0, 20_000))
            acc[1] += draw(st.integers(0, min(req, 200)))
            acc[2] += draw(st.integers(0, min(req, 200) - 0))
            acc[0] += req + max(0, acc[1] + acc[2] - acc[0] - req)  # never more errors than requests
        out.append((Counts(*s), Counts(*c)))
    return out


def after(path: list[tuple[Counts, Counts]], extra_stable: Counts, extra_candidate: Counts) -> tuple[Counts, Counts]:
    """The counts at the tick being judged: the last earlier tick's plus what this tick added."""
    s, c = path[-1] if path else (Counts(0, 0, 0), Counts(0, 0, 0))
    add = lambda a, b: Counts(a.requests + b.requests, a.errors_5xx + b.errors_5xx,  # noqa: E731
                              a.errors_4xx + b.errors_4xx)
    return add(s, extra_stable), add(c, extra_candidate)


def history(path, step: int = 0) -> list[StepTicks]:
    return [StepTicks(step, tuple(s for s, _ in path), tuple(c for _, c in path))] if path else []


rollout_settings = st.builds(
    SimpleNamespace, min_requests=st.integers(1, 5000), margin=st.floats(1e-4, 0.3), alpha=st.floats(1e-4, 0.3),
    max_step_minutes=st.floats(1, 1000), steps=st.sampled_from([(100,), (50, 100), (10, 25, 50, 100)]),
    latency_margin=st.none())


def _settings(**kw) -> RolloutSettings:
    return DEFAULTS.model_copy(update=kw)


# ---- any counts -----------------------------------------------------------------------------------------------

@PROPERTY
@given(paths(), counts(max_requests=10**6), counts(max_requests=10**6), rollout_settings, st.floats(0, 2000),
       st.integers(0, 3))
def test_any_counts_give_a_complete_consistent_decision(path, more_s, more_c, s, minutes, step):
    stable, candidate = after(path, more_s, more_c)
    d = judge(stable, candidate, s, minutes, step=step, history=history(path, step))
    ev = d.evidence
    assert isinstance(d.action, Action) and isinstance(ev.reason, str) and ev.reason
    assert ev.shift_threshold == pytest.approx(1 / s.alpha) and ev.threshold == pytest.approx(1 / s.alpha)
    for value in (ev.stable_rate_5xx, ev.candidate_rate_5xx, ev.stable_rate_4xx, ev.candidate_rate_4xx):
        assert 0 <= value <= 1
    for value in (ev.statistic_5xx, ev.statistic_4xx, ev.statistic, ev.shift_statistic_5xx, ev.shift_statistic_4xx):
        assert math.isfinite(value) and value >= 0
    assert 0 <= ev.upper_5xx <= 1 and 0 <= ev.upper_4xx <= 1
    if d.action is Action.ROLLBACK:
        assert d.failing in ("5xx", "4xx") and ev.statistic >= ev.threshold * (1 - 1e-9)
    else:
        assert d.failing is None and ev.statistic < ev.threshold * (1 + 1e-9)
    if d.action is Action.SHIFT:
        assert min(stable.requests, candidate.requests) >= s.min_requests
        assert min(ev.shift_statistic_5xx, ev.shift_statistic_4xx) >= ev.shift_threshold * (1 - 1e-9)
        assert ev.upper_5xx < s.margin and ev.upper_4xx < s.margin  # the bound shown agrees with the decision
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


def test_impossible_counts_in_the_history_are_refused_with_the_step_named():
    bad = [StepTicks(1, (Counts(100, 0, 0), Counts(50, 70, 0)), (Counts(10, 0, 0), Counts(20, 0, 0)))]
    with pytest.raises(ValueError, match="step 2 stable has more errors_5xx"):
        judge(Counts(200, 0, 0), Counts(30, 0, 0), DEFAULTS, 1.0, step=1, history=bad)


def test_no_data_decides_nothing_and_every_statistic_is_at_its_start():
    d = judge(Counts(0, 0, 0), Counts(0, 0, 0), DEFAULTS, 0.0)
    ev = d.evidence
    assert d.action is Action.WAIT and "fewer than 500 requests per variant" in ev.reason
    # e-processes start at 1: the rollout's evidence, and the evidence for a shift
    assert ev.statistic == pytest.approx(1.0)
    assert ev.shift_statistic_5xx == pytest.approx(1.0) and ev.shift_statistic_4xx == pytest.approx(1.0)
    assert ev.upper_5xx == 1.0 and ev.upper_4xx == 1.0  # nothing known: the widest bound


@PROPERTY
@given(paths(), st.integers(0, 2))
def test_a_tick_that_added_nothing_changes_nothing(path, step):
    assume(path)
    stable, candidate = path[-1]
    once = judge(stable, candidate, DEFAULTS, 10.0, step=step, history=history(path[:-1], step))
    twice = judge(stable, candidate, DEFAULTS, 10.0, step=step, history=history(path, step))
    assert once.action == twice.action
    assert twice.evidence.statistic == pytest.approx(once.evidence.statistic, rel=1e-9)
    assert twice.evidence.shift_statistic_5xx == pytest.approx(once.evidence.shift_statistic_5xx, rel=1e-9)


def test_a_short_read_in_the_history_does_not_count_requests_twice():
    """CloudWatch came back short once (a minute missing): the next tick's counts are not new requests."""
    steady = [(Counts(9000 * k, 45 * k, 18 * k), Counts(1000 * k, 5 * k, 2 * k)) for k in range(1, 30)]
    short = steady[:10] + [(Counts(8000, 40, 16), Counts(900, 4, 2))] + steady[10:]
    a = judge(*steady[-1], DEFAULTS, 30.0, history=history(steady[:-1])).evidence
    b = judge(*short[-1], DEFAULTS, 30.0, history=history(short[:-1])).evidence
    assert b.shift_statistic_5xx == pytest.approx(a.shift_statistic_5xx, rel=0.05)
    assert b.statistic == pytest.approx(a.statistic, rel=0.05)


def test_counts_as_cloudwatch_floats_are_fine():
    as_ints = judge(Counts(9000, 45, 18), Counts(1000, 20, 2), DEFAULTS, 5.0)
    as_floats = judge(Counts(9000.0, 45.0, 18.0), Counts(1000.0, 20.0, 2.0), DEFAULTS, 5.0)
    assert as_floats == as_ints


def test_huge_counts_stay_finite_and_decide():
    worse = judge(Counts(10**9, 5 * 10**6, 2 * 10**6), Counts(10**9, 6 * 10**6, 2 * 10**6), DEFAULTS, 5.0)
    assert worse.action is Action.ROLLBACK and worse.failing == "5xx" and math.isfinite(worse.evidence.statistic)
    ticks = [(Counts(10**8 * k, 5 * 10**5 * k, 2 * 10**5 * k),) * 2 for k in range(1, 11)]
    equal = judge(*ticks[-1], DEFAULTS, 5.0, history=history(ticks[:-1]))
    assert equal.action is Action.SHIFT


# ---- monotone ----------------------------------------------------------------------------------------------

@PROPERTY
@given(paths(), counts(max_requests=10**6), counts(max_requests=10**6), st.integers(1, 10**5),
       st.sampled_from(["5xx", "4xx"]), st.floats(0, 300), st.integers(0, 2))
def test_more_candidate_errors_never_make_the_candidate_look_better(path, more_s, more_c, extra, kind, minutes, step):
    stable, candidate = after(path, more_s, more_c)
    field = f"errors_{kind}"
    room = candidate.requests - candidate.errors_5xx - candidate.errors_4xx
    worse = replace(candidate, **{field: getattr(candidate, field) + min(extra, max(room, 0))})
    before = judge(stable, candidate, DEFAULTS, minutes, step=step, history=history(path, step))
    later = judge(stable, worse, DEFAULTS, minutes, step=step, history=history(path, step))
    assert RANK[later.action] >= RANK[before.action]
    assert later.evidence.statistic >= before.evidence.statistic * (1 - 1e-9)
    assert getattr(later.evidence, f"shift_statistic_{kind}") <= getattr(before.evidence, f"shift_statistic_{kind}") \
        * (1 + 1e-9)
    assert getattr(later.evidence, f"upper_{kind}") >= getattr(before.evidence, f"upper_{kind}") - 1e-6


@PROPERTY
@given(paths(), counts(max_requests=10**6), counts(max_requests=10**6), st.integers(1, 10**5),
       st.sampled_from(["5xx", "4xx"]), st.integers(0, 2))
def test_more_stable_errors_never_make_the_candidate_look_worse(path, more_s, more_c, extra, kind, step):
    stable, candidate = after(path, more_s, more_c)
    field = f"errors_{kind}"
    room = stable.requests - stable.errors_5xx - stable.errors_4xx
    worse_stable = replace(stable, **{field: getattr(stable, field) + min(extra, max(room, 0))})
    before = judge(stable, candidate, DEFAULTS, 10.0, step=step, history=history(path, step))
    later = judge(worse_stable, candidate, DEFAULTS, 10.0, step=step, history=history(path, step))
    assert RANK[later.action] <= RANK[before.action]
    assert later.evidence.statistic <= before.evidence.statistic * (1 + 1e-9)
    assert getattr(later.evidence, f"shift_statistic_{kind}") >= getattr(before.evidence, f"shift_statistic_{kind}") \
        * (1 - 1e-9)


@PROPERTY
@given(paths(), counts(), counts(), rollout_settings, st.integers(1, 10**6))
def test_below_min_requests_never_shifts(path, more_s, more_c, s, short):
    stable, candidate = after(path, more_s, more_c)
    s.min_requests = min(stable.requests, candidate.requests) + short
    assert judge(stable, candidate, s, 0.0, history=history(path)).action is not Action.SHIFT


@PROPERTY
@given(st.lists(st.tuples(st.integers(0, 50_000), st.floats(0, 0.2), st.floats(0, 0.05), st.floats(0.01, 0.99),
                          st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=15), rollout_settings)
def test_a_candidate_no_worse_than_stable_in_every_tick_is_never_rolled_back(ticks, s):
    """Whatever the split and the rates, a tick whose candidate errs no more often than stable only lowers the
    evidence against it."""
    path, cs, cc = [], np.zeros(3), np.zeros(3)
    for n, p5, p4, share, f5, f4 in ticks:
        nc = int(n * share)
        ns = n - nc
        e5, e4 = int(p5 * ns), int(p4 * ns)
        cs += (ns, e5, e4)
        cc += (nc, (int(f5 * e5) * nc) // ns if ns else 0, (int(f4 * e4) * nc) // ns if ns else 0)
        path.append((Counts(*map(int, cs)), Counts(*map(int, cc))))
    d = judge(*path[-1], s, 0.0, history=history(path[:-1]))
    assert d.action is not Action.ROLLBACK
    assert d.evidence.statistic <= 1.0 + 1e-9


# ---- one implementation for one rollout and for many ------------------------------------------------------

@PROPERTY
@given(st.lists(paths(ticks=6), min_size=1, max_size=5), st.integers(0, 2))
def test_judge_and_the_vectorised_path_agree(rollout_paths, step):
    rows = [p + [after(p, Counts(5000, 30, 10), Counts(600, 4, 1))] for p in rollout_paths]
    width = max(len(p) for p in rows)
    # Pad each rollout at its start with zero counts: a tick that adds nothing changes nothing.
    padded = [[(Counts(0, 0, 0), Counts(0, 0, 0))] * (width - len(p)) + p for p in rows]
    arrays = [np.array([[getattr(t[v], f) for t in p] for p in padded], dtype=float)
              for v in (0, 1) for f in ("requests", "errors_5xx", "errors_4xx")]
    v = judge_vector(*arrays, min_requests=DEFAULTS.min_requests, margin=DEFAULTS.margin, alpha=DEFAULTS.alpha,
                     step=step, steps=3, carry=judgement.initial_carry(3, (len(rows),)) if step == 0 else None)
    for i, p in enumerate(rows):
        d = judge(*p[-1], DEFAULTS, 10.0, step=0, history=history(p[:-1]))
        if step == 0:
            assert d.action.value == ("wait", "shift", "rollback", "pause")[v.action[i, -1]]
            assert d.failing == (None, "5xx", "4xx", "latency")[v.failing[i, -1]]
            assert d.evidence.statistic == pytest.approx(math.exp(v.log_rollback[i, -1]), rel=1e-9)
            assert d.evidence.shift_statistic_5xx == pytest.approx(math.exp(v.log_shift_5xx[i, -1]), rel=1e-9)
        assert np.all(np.diff(v.log_shift_5xx[i]) == pytest.approx(
            np.diff(error_tests.shift_log_e(error_tests.ticks(arrays[3][i], arrays[4][i], arrays[0][i],
                                                              arrays[1][i]), DEFAULTS.margin))))


# ---- alpha for the whole rollout ----------------------------------------------------------------------------

def test_the_steps_share_alpha_and_the_first_step_gets_most():
    for steps in (1, 2, 3, 7):
        shares = judgement.step_shares(steps)
        assert len(shares) == steps and shares.sum() == pytest.approx(1.0)
    assert judgement.step_shares(3)[0] == judgement.FIRST_STEP_SHARE
    assert judgement.judged_steps((10, 25, 50, 100)) == 3 and judgement.judged_steps((100,)) == 1


def test_carrying_the_evidence_is_the_weighted_sum_of_every_steps_own_e_process():
    """The carry is bookkeeping for sum_j share_j * E_j, E_j started at step j: checked against that sum."""
    rng = np.random.default_rng(5)
    steps = 3
    shares = judgement.step_shares(steps)

    def step_path(share, ticks=30):
        nc = rng.binomial(1000, share, ticks)
        ns = 1000 - nc
        return [np.cumsum(x).astype(float) for x in (ns, rng.binomial(ns, 0.005), rng.binomial(ns, 0.002), nc,
                                                      rng.binomial(nc, 0.008), rng.binomial(nc, 0.002))]

    paths_ = [step_path(s) for s in (0.1, 0.25, 0.5)]
    carry = judgement.initial_carry(steps)
    for j in range(2):
        carry = judgement.carry_after(*paths_[j], carry=carry, step=j, steps=steps)
    v = judge_vector(*paths_[2], min_requests=500, margin=0.002, alpha=0.01, step=2, steps=steps, carry=carry)

    def mixture_from(first_step: int, kind: int) -> float:
        """E_j of one error type, from step `first_step` to the end of step 3, computed directly."""
        total = np.zeros(len(error_tests.RELATIVE_RISKS))
        for p in paths_[first_step:]:
            ns, s5, s4, nc, c5, c4 = p
            t = error_tests.ticks(nc, (c5, c4)[kind], ns, (s5, s4)[kind])
            total += error_tests.rollback_log_lr(t)[:, -1]
        return float(np.exp(total) @ (np.array(error_tests.PRIOR_WEIGHTS) / sum(error_tests.PRIOR_WEIGHTS)))

    expected = sum(shares[j] * (judgement.ALPHA_SHARE_5XX * mixture_from(j, 0)
                                + judgement.ALPHA_SHARE_4XX * mixture_from(j, 1)) for j in range(3))
    assert math.exp(v.log_rollback[-1]) == pytest.approx(expected, rel=1e-9)


def test_a_later_step_sees_the_first_steps_evidence_but_needs_more_of_its_own():
    """A subtle regression seen at step 1 keeps counting at step 2; a fresh one at step 2 meets a higher bar."""
    first = [(Counts(9000 * k, 45 * k, 18 * k), Counts(1000 * k, 8 * k, 2 * k)) for k in range(1, 21)]
    second = [(Counts(7500 * k, 38 * k, 15 * k), Counts(2500 * k, 30 * k, 5 * k)) for k in range(1, 6)]
    carried = judge(*second[-1], DEFAULTS, 5.0, step=1, history=history(first, 0) + history(second[:-1], 1))
    fresh = judge(*second[-1], DEFAULTS, 5.0, step=1, history=history(second[:-1], 1))
    assert carried.evidence.statistic > fresh.evidence.statistic
    # With nothing carried, step 2's own e-process holds a tenth of the first step's share of alpha.
    assert judge(Counts(0, 0, 0), Counts(0, 0, 0), DEFAULTS, 0, step=1).evidence.statistic == pytest.approx(1.0)


# ---- examples a user would recognise --------------------------------------------------------------------------

def ramp(ticks: int, stable_rates=(0.005, 0.002), candidate_rates=(0.005, 0.002), per_tick=10_000, share=0.1):
    """The counts of `ticks` ticks at exact rates (what the controller's rows hold), for readable examples."""
    out = []
    for k in range(1, ticks + 1):
        ns, nc = per_tick * (1 - share) * k, per_tick * share * k
        out.append((Counts(int(ns), int(ns * stable_rates[0]), int(ns * stable_rates[1])),
                    Counts(int(nc), int(nc * candidate_rates[0]), int(nc * candidate_rates[1]))))
    return out


def test_an_obviously_bad_candidate_is_rolled_back_with_the_rates_in_the_reason():
    d = judge(Counts(10_000, 49, 30), Counts(1_000, 102, 3), DEFAULTS, 10.0)
    assert d.action is Action.ROLLBACK and d.failing == "5xx"
    assert "10.2%" in d.evidence.reason and "0.49%" in d.evidence.reason
    assert "upper bound" in d.evidence.reason and "alpha 0.01 over the rollout" in d.evidence.reason


def test_a_catastrophic_candidate_is_rolled_back_before_min_requests():
    d = judge(Counts(2_000, 10, 4), Counts(200, 100, 0), DEFAULTS, 1.0)
    assert d.action is Action.ROLLBACK and "50%" in d.evidence.reason


def test_a_few_early_errors_do_not_roll_back():
    # 2 errors in the candidate's first 50 requests (4%) against 0.5%: suspicious, not yet evidence.
    assert judge(Counts(450, 2, 1), Counts(50, 2, 0), DEFAULTS, 1.0).action is Action.WAIT


def test_a_4xx_regression_is_named():
    d = judge(Counts(20_000, 100, 20), Counts(2_000, 10, 60), DEFAULTS, 10.0)
    assert d.action is Action.ROLLBACK and d.failing == "4xx" and "4XX rate candidate 3%" in d.evidence.reason


def test_a_good_candidate_shifts_once_the_ticks_show_it():
    path = ramp(20)
    d = judge(*path[-1], DEFAULTS, 20.0, history=history(path[:-1]))
    assert d.action is Action.SHIFT and d.failing is None
    assert "margin" in d.evidence.reason and d.evidence.upper_5xx < DEFAULTS.margin
    early = judge(*path[1], DEFAULTS, 2.0, history=history(path[:1]))
    assert early.action is Action.WAIT and "inconclusive" in early.evidence.reason


def test_a_candidate_worse_by_the_margin_never_shifts_however_long_it_runs():
    path = ramp(100, candidate_rates=(0.005 + DEFAULTS.margin, 0.002))
    for k in (10, 50, 99):
        assert judge(*path[k], DEFAULTS, k, history=history(path[:k])).action is not Action.SHIFT


def test_inconclusive_waits_then_pauses_after_max_step_minutes_but_a_rollback_does_not_wait():
    stable, candidate = Counts(18_000, 90, 40), Counts(2_000, 11, 4)
    assert judge(stable, candidate, DEFAULTS, 119.0).action is Action.WAIT
    paused = judge(stable, candidate, DEFAULTS, 120.0)
    assert paused.action is Action.PAUSE and "120 min" in paused.evidence.reason
    assert judge(Counts(18_000, 90, 40), Counts(2_000, 60, 4), DEFAULTS, 500.0).action is Action.ROLLBACK


def test_too_little_traffic_says_how_much_there_is():
    d = judge(Counts(1_080, 5, 1), Counts(120, 1, 0), DEFAULTS, 3.0)
    assert d.action is Action.WAIT and "candidate 120, stable 1,080" in d.evidence.reason


def test_any_object_with_the_settings_fields_will_do():
    loose = SimpleNamespace(min_requests=500, margin=0.002, alpha=0.01, max_step_minutes=120)
    a = judge(Counts(20_000, 100, 40), Counts(2_000, 30, 4), loose, 10.0, steps=DEFAULTS.steps)
    b = judge(Counts(20_000, 100, 40), Counts(2_000, 30, 4), DEFAULTS, 10.0)
    assert a == b


def test_latency_is_judged_only_with_a_latency_margin():
    slow = Latency(stable_sum=(900 * 50_000.0,) * 20, stable_count=(900,) * 20,
                   candidate_sum=tuple(100 * 90_000.0 * (1 + 0.01 * (k % 3)) for k in range(20)),
                   candidate_count=(100,) * 20)
    path = ramp(20)
    off = judge(*path[-1], DEFAULTS, 20.0, history=history(path[:-1]), latency=slow)
    assert off.action is Action.SHIFT and off.evidence.latency_statistic is None
    on = judge(*path[-1], _settings(latency_margin=0.2), 20.0, history=history(path[:-1]), latency=slow)
    assert on.action is Action.ROLLBACK and on.failing == "latency"
    assert "latency candidate 90.9 ms vs stable 50 ms (+81.7%" in on.evidence.reason and "+20%" in on.evidence.reason
    # Without latency minutes, a model that judges latency does not shift on error rates alone.
    blind = judge(*path[-1], _settings(latency_margin=0.2), 20.0, history=history(path[:-1]))
    assert blind.action is Action.WAIT and "latency not yet shown within its margin" in blind.evidence.reason


def test_judging_a_long_step_stays_fast():
    path = ramp(240)
    judge(*path[-1], DEFAULTS, 120.0, history=history(path[:-1]))
    started = time.perf_counter()
    for _ in range(20):
        judge(*path[-1], DEFAULTS, 120.0, history=history(path[:-1]))
    per_call = (time.perf_counter() - started) / 20
    assert per_call < 0.25, f"{per_call * 1000:.0f} ms per judgement of a 240-tick step"
