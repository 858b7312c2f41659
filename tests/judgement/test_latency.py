"""The latency test: its Bayes factor is the scale-invariant one it claims to be, it keeps alpha when looked at
every minute, it does not care about units or shared slow-downs, and it decides nothing from too little."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bot.rollouts import latency_test
from bot.rollouts.latency_test import LatencyStats

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def minutes_with(x: np.ndarray, counts: float = 200.0, base_us: float = 50_000.0, margin: float = 0.2,
                 shared: np.ndarray | None = None):
    """Per-minute aggregates whose log ratio minus the margin's log is exactly x (shared: a slow-down of both)."""
    shared = np.ones_like(x) if shared is None else shared
    stable_mean = base_us * shared
    cand_mean = stable_mean * (1 + margin) * np.exp(x)
    count = np.full(x.shape, counts)
    return stable_mean * count, count, cand_mean * count, count


def brute_force_bayes_factor(x: np.ndarray, g: float) -> float:
    """The same Bayes factor by numerical integration: N(0, g) on delta = mean/sigma, 1/sigma on sigma, over the
    normal likelihood of every minute. No closed form used."""
    log_sigma = np.linspace(-8, 6, 2801)
    sigma = np.exp(log_sigma)[:, None]
    delta = np.linspace(-40, 40, 4001)[None, :]
    n = len(x)

    sx, sxx = x.sum(), (x * x).sum()

    def log_lik(mu):  # sum over minutes of log N(x; mu, sigma), for each (sigma, delta)
        return (-0.5 * (sxx - 2 * mu * sx + n * mu * mu) / sigma ** 2
                - n * np.log(sigma) - 0.5 * n * math.log(2 * math.pi))

    prior = -0.5 * delta ** 2 / g - 0.5 * math.log(2 * math.pi * g)
    # d sigma / sigma = d log sigma: the right-Haar prior is flat in log sigma
    num = log_lik(delta * sigma) + prior
    den = log_lik(np.zeros_like(sigma))[:, 0]
    d_delta, d_log = delta[0, 1] - delta[0, 0], log_sigma[1] - log_sigma[0]
    log_num = np.logaddexp.reduce(num.ravel()) + math.log(d_delta * d_log)
    log_den = np.logaddexp.reduce(den) + math.log(d_log)
    return math.exp(log_num - log_den)


@pytest.mark.parametrize("x", [np.array([0.3, -0.1, 0.5]), np.array([0.05, 0.1, 0.02, 0.08, 0.11]),
                               np.array([-0.2, -0.25, -0.1, -0.3, -0.15, -0.22, -0.18])])
def test_the_closed_form_is_the_scale_invariant_bayes_factor(x):
    s = latency_test.stats(*minutes_with(x), margin=0.2)
    closed = math.exp(float(latency_test.log_bayes_factor(s)))
    assert closed == pytest.approx(brute_force_bayes_factor(x, latency_test.PRIOR_G), rel=2e-3)


ALPHA = 0.05


@pytest.mark.parametrize("sigma", [0.02, 0.3])
def test_at_the_margin_looking_every_minute_keeps_both_errors_below_alpha(sigma):
    """A candidate exactly `margin` slower, minute values normal: neither a rollback nor a shift more often than
    alpha over two hours of minutes, checked after every minute."""
    rng = np.random.default_rng(int(sigma * 1000))
    rollouts, minutes = 3000, 120
    x = rng.normal(0, sigma, (rollouts, minutes))
    aggregates = minutes_with(x, shared=np.exp(rng.normal(0, 0.3, (rollouts, minutes))))
    worse = np.zeros(rollouts, dtype=bool)
    within = np.zeros(rollouts, dtype=bool)
    level = math.log(1 / ALPHA)
    for k in range(2, minutes + 1):
        s = latency_test.stats(*(a[:, :k] for a in aggregates), margin=0.2)
        w, i = latency_test.directional(s)
        worse |= w >= level
        within |= i >= level
    bound = ALPHA + 4 * math.sqrt(ALPHA * (1 - ALPHA) / rollouts)
    assert worse.mean() <= bound and within.mean() <= bound, (worse.mean(), within.mean())


def test_a_plain_t_test_every_minute_would_not():
    """The same minutes, with a one-sided t-test at alpha after every minute: the check above can fail."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 0.1, (3000, 120))
    n = np.arange(1, 121)
    mean = np.cumsum(x, 1) / n
    sd = np.sqrt(np.maximum(np.cumsum(x * x, 1) / n - mean ** 2, 1e-12) * n / np.maximum(n - 1, 1))
    t = mean / (sd / np.sqrt(n))
    assert (t[:, 4:] > 2.0).any(axis=1).mean() > 3 * ALPHA


@PROPERTY
@given(st.lists(st.floats(-1, 1), min_size=2, max_size=30), st.floats(1e-3, 1e3), st.floats(0.01, 2))
def test_units_and_a_slow_down_both_share_change_nothing(x, scale, margin):
    x = np.array(x)
    base = latency_test.stats(*minutes_with(x, margin=margin), margin=margin)
    shared = np.exp(np.linspace(-1, 1, len(x)))
    scaled = [a * scale for a in minutes_with(x, margin=margin, shared=shared)]
    scaled[1], scaled[3] = scaled[1] / scale, scaled[3] / scale  # counts are counts
    other = latency_test.stats(*scaled, margin=margin)
    assert float(latency_test.log_bayes_factor(other)) == pytest.approx(float(latency_test.log_bayes_factor(base)),
                                                                          abs=1e-6)


@PROPERTY
@given(st.lists(st.floats(-0.5, 0.5), min_size=2, max_size=30), st.floats(1.0001, 3))
def test_a_candidate_slower_in_every_minute_never_looks_faster(x, factor):
    x = np.array(x)
    before = latency_test.stats(*minutes_with(x), margin=0.2)
    s, sc, c, cc = minutes_with(x)
    after = latency_test.stats(s, sc, c * factor, cc, margin=0.2)
    worse_b, within_b = latency_test.directional(before)
    worse_a, within_a = latency_test.directional(after)
    assert float(worse_a) >= float(worse_b) - 1e-9 or float(before.mean) < 0
    assert float(within_a) <= float(within_b) + 1e-9 or float(after.mean) > 0


def test_too_few_minutes_decide_nothing():
    one = latency_test.stats(*minutes_with(np.array([2.0])), margin=0.2)
    assert float(latency_test.log_bayes_factor(one)) == 0.0
    # However well a few minutes agree, their evidence is bounded: (1 + n g)^((n - 1) / 2).
    few = latency_test.stats(*minutes_with(np.full(4, 2.0)), margin=0.2)
    assert math.exp(float(latency_test.log_bayes_factor(few))) <= (1 + 4 * latency_test.PRIOR_G) ** 1.5 + 1e-6


def test_minutes_with_too_few_requests_are_left_out():
    s, sc, c, cc = minutes_with(np.array([0.5, 0.5, 0.5, 3.0]))
    cc = cc.copy()
    cc[3] = latency_test.MIN_REQUESTS_PER_MINUTE - 1
    stats = latency_test.stats(s, sc, c, cc, margin=0.2)
    assert stats.minutes == 3 and float(stats.mean) == pytest.approx(0.5)


def test_the_means_shown_are_per_request():
    stats = latency_test.stats([9_000.0, 20_000.0], [100, 100], [30_000.0, 3_000.0], [300, 100], margin=0.2)
    assert float(stats.stable_mean) == pytest.approx(29_000 / 200)
    assert float(stats.candidate_mean) == pytest.approx(33_000 / 400)
    assert isinstance(stats, LatencyStats)
