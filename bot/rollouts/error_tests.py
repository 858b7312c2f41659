"""E-processes on error counts: the rollback test and the shift (non-inferiority) test of one error type.

Both read the path of cumulative counts of one step, tick by tick (arrays whose last axis is the tick), and
multiply one likelihood ratio per tick, each an e-variable given everything before that tick. Whatever
alternative a tick bets on may be learnt from the ticks before it, so the products are e-processes and
Ville's inequality bounds the chance that one ever reaches 1/alpha, however often it is looked at.
docs/judgement.md has the derivations and the figures.

Rollback (null: the candidate's rate is at most the stable's). Given the errors n of one tick, each came from
the candidate with probability at most pi = w_c / (w_c + w_s); at relative risk rho with probability
rho*pi / (1 + (rho-1)*pi). The binomial likelihood ratio of that split is an e-variable given n (requests
routed at random: the exact law, hypergeometric, is below the binomial in convex order). The test is a
mixture over RELATIVE_RISKS, carried from one step to the next (see judgement.py for the spending).

Shift (null: the candidate is worse by at least `margin`, p_c >= p_s + margin, p_s unknown). Each tick bets on
"the candidate is as good as stable" at the stable rate estimated from the earlier ticks (a, a), against the
null point nearest to it, (mu + margin, mu): for Poisson counts that ratio has expectation exactly 1 at every
null point (s + margin, s), below 1 inside the null, and at most that for binomial counts. So the unknown
stable rate costs only what its estimate is off by, not a separate bound on it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

# Relative risks the rollback test bets on, and their prior weights: most weight on 1.5x-3x, the regressions
# that take tens of thousands of requests to show at a 0.5% base rate, and 2x above all; 5x and beyond show
# within a few thousand requests whatever their weight; 1.25x keeps a small regression on a busy endpoint
# from never being called worse. Tuned with bench/judgement.py (docs/judgement.md).
RELATIVE_RISKS: tuple[float, ...] = (1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0)
PRIOR_WEIGHTS: tuple[float, ...] = (0.03, 0.14, 0.14, 0.4, 0.15, 0.09, 0.03, 0.01, 0.01)

# The shift test's alternatives, in units of the margin: "as good as stable" above all, and "worse by half the
# margin" so that a candidate slightly worse than stable but well within the margin still shifts.
SHIFT_ALTERNATIVES: tuple[float, ...] = (0.0, 0.5)
SHIFT_WEIGHTS: tuple[float, ...] = (0.8, 0.2)
# The stable rate a tick bets on before any stable request was seen: 0.5 errors in 100 requests. Its weight is
# that of 100 requests, so the first few hundred real ones outweigh it.
PRIOR_ERRORS, PRIOR_REQUESTS = 0.5, 100.0
_TINY = 1e-12

_LOG_RISKS = np.log(np.asarray(RELATIVE_RISKS))
_RISKS_M1 = np.asarray(RELATIVE_RISKS) - 1.0
LOG_PRIOR = np.log(np.asarray(PRIOR_WEIGHTS) / sum(PRIOR_WEIGHTS))
_LOG_SHIFT_WEIGHTS = np.log(np.asarray(SHIFT_WEIGHTS) / sum(SHIFT_WEIGHTS))


class Ticks(NamedTuple):
    """What each tick added, for one error type: non-negative increments (arrays, last axis = tick)."""

    cand_requests: np.ndarray
    cand_errors: np.ndarray
    stable_requests: np.ndarray
    stable_errors: np.ndarray


def increments(cumulative) -> np.ndarray:
    """Per-tick increments of a cumulative count path. CloudWatch sums only grow, but a read that came back
    short must not make a later tick count the same requests twice: increments are of the running maximum."""
    running = np.maximum.accumulate(np.asarray(cumulative, dtype=float), axis=-1)
    return np.diff(running, axis=-1, prepend=0.0)


def ticks(cand_requests, cand_errors, stable_requests, stable_errors) -> Ticks:
    """Ticks of one error type from cumulative paths; a tick never adds more errors than requests."""
    nc, ns = increments(cand_requests), increments(stable_requests)
    return Ticks(nc, np.minimum(increments(cand_errors), nc), ns, np.minimum(increments(stable_errors), ns))


def _components(x: np.ndarray, k: int) -> np.ndarray:
    """x with a leading axis for k components."""
    return np.broadcast_to(x, (k,) + x.shape)


def rollback_log_lr(t: Ticks) -> np.ndarray:
    """log likelihood ratio of each relative risk against "no worse", cumulated over the ticks:
    shape (len(RELATIVE_RISKS),) + t.cand_errors.shape. Increasing in the candidate's errors, decreasing in the
    stable's (more candidate errors never make it look better)."""
    nc, ec, ns, es = np.broadcast_arrays(*t)
    total = nc + ns
    pi = np.divide(nc, total, out=np.zeros(total.shape), where=total > 0)
    shape = (-1,) + (1,) * pi.ndim
    inc = ec * _LOG_RISKS.reshape(shape) - (ec + es) * np.log1p(_RISKS_M1.reshape(shape) * pi)
    return np.cumsum(inc, axis=-1)


def mixture(log_lr: np.ndarray, log_carry) -> np.ndarray:
    """log of sum_k prior_k * exp(carry_k + log_lr_k): the rollback e-process of one type. `log_carry` (shape
    (..., K) or broadcastable) is what earlier steps left to each relative risk (judgement.py)."""
    carry = np.moveaxis(np.asarray(log_carry, dtype=float), -1, 0)  # (K, *lead)
    lead = log_lr.ndim - 2 - (carry.ndim - 1)  # rollout axes the carry does not have
    carry = carry.reshape((carry.shape[0],) + (1,) * lead + carry.shape[1:] + (1,))
    prior = LOG_PRIOR.reshape((-1,) + (1,) * (log_lr.ndim - 1))
    return np.logaddexp.reduce(log_lr + prior + carry, axis=0)


def _null_point(theta_c, theta_s, nc, ns, margin):
    """mu with (mu + margin, mu) the null point nearest (in expected Poisson log-likelihood) to the alternative
    (theta_c, theta_s), for a tick of nc and ns requests: the root of
    N = nc*theta_c/(mu + margin) + ns*theta_s/mu with mu > max(0, -margin), in a form that does not cancel."""
    n = nc + ns
    b = n * margin - (nc * theta_c + ns * theta_s)
    c = ns * theta_s * margin
    root = np.sqrt(np.maximum(b * b + 4.0 * n * c, 0.0))
    positive = b > 0
    big = (root - b) / (2.0 * n)  # b <= 0: no cancellation (n >= 1: ticks without requests are skipped)
    small = 2.0 * c / np.where(positive, b + root, 1.0)  # b > 0 (then c > 0): no cancellation
    return np.where(positive, small, big)


def stable_estimate(t: Ticks) -> np.ndarray:
    """The stable rate each tick bets on: from the ticks before it only (that is what keeps it valid)."""
    before_e = np.cumsum(t.stable_errors, axis=-1) - t.stable_errors
    before_n = np.cumsum(t.stable_requests, axis=-1) - t.stable_requests
    return (before_e + PRIOR_ERRORS) / (before_n + PRIOR_REQUESTS)


def shift_log_e(t: Ticks, margin, level=None, final: bool = False) -> np.ndarray:
    """log e-process against "the candidate is worse than stable by at least `margin`", per tick (cumulative;
    `final`: the last tick only). `margin` may carry extra leading axes (several margins at once, for the
    bounds). Ticks without requests on either variant are skipped: which ticks count depends on request
    counts, never on errors."""
    level = stable_estimate(t) if level is None else level
    margin = np.asarray(margin, dtype=float)[..., None]  # against the tick axis
    used = (t.cand_requests > 0) & (t.stable_requests > 0)
    nc, ns = np.where(used, t.cand_requests, 1.0), np.where(used, t.stable_requests, 1.0)
    out = None
    for delta, log_w in zip(SHIFT_ALTERNATIVES, _LOG_SHIFT_WEIGHTS):
        theta_s = level
        theta_c = np.maximum(level + delta * np.maximum(margin, 0.0), _TINY)
        mu = np.maximum(_null_point(theta_c, theta_s, nc, ns, margin), np.maximum(-margin, 0.0) + _TINY)
        null_c = np.maximum(mu + margin, _TINY)
        # Every rate here is at least _TINY: the logs are finite.
        inc = (t.cand_errors * np.log(theta_c / null_c) - nc * (theta_c - null_c)
               + t.stable_errors * np.log(theta_s / mu) - ns * (theta_s - mu))
        inc = np.where(used, inc, 0.0)
        part = (inc.sum(axis=-1) if final else np.cumsum(inc, axis=-1)) + log_w
        out = part if out is None else np.logaddexp(out, part)
    return out


def upper_bound(t: Ticks, alpha: float, margin, points: int = 16) -> np.ndarray:
    """Anytime-valid upper bound on candidate rate - stable rate at the last tick: the smallest margin the
    shift test rejects at level alpha (its evidence grows with the margin), located on two geometric grids and
    interpolated (to about 0.2% of its value), then kept on the side of `margin` that the test at the margin
    itself is on, so the bound shown is below the margin exactly when that test is passed. It bets on "as good
    as stable", so for a candidate clearly worse it lies well above the difference: it answers "is it within
    the margin?", not "how much worse is it?". Shape: t's without the tick axis; 1.0 while nothing is known."""
    level = stable_estimate(t)
    threshold = math.log(1.0 / alpha)
    shape = t.cand_errors.shape[:-1]
    steps = np.linspace(0.0, 1.0, points).reshape((points,) + (1,) * len(shape))
    lo, hi = np.full(shape, 1e-6), np.ones(shape)
    f_lo = f_hi = None
    for _ in range(2):
        grid = lo * (hi / lo) ** steps
        f = shift_log_e(t, grid, level, final=True) - threshold
        rejected = f >= 0
        found = rejected.any(axis=0)
        first = np.argmax(rejected, axis=0)[None]
        below = np.maximum(first - 1, 0)
        take = lambda a, i: np.take_along_axis(a, i, axis=0)[0]  # noqa: E731
        lo, hi = np.where(found, take(grid, below), lo), np.where(found, take(grid, first), hi)
        f_lo, f_hi = take(f, below), take(f, first)
        if not found.any():
            break
    found = shift_log_e(t, np.ones(shape), level, final=True) >= threshold
    # Linear in log(margin) between the two grid points around the crossing.
    span = np.where(f_hi > f_lo, f_hi - f_lo, 1.0)
    weight = np.clip(np.where(f_hi > f_lo, -f_lo / span, 1.0), 0.0, 1.0)
    bound = np.where(hi > lo, lo * (hi / lo) ** weight, hi)
    margin = np.broadcast_to(np.asarray(margin, dtype=float), shape)
    passed = shift_log_e(t, margin, level, final=True) >= threshold
    bound = np.where(passed, np.minimum(bound, margin * (1 - 1e-9)), np.maximum(bound, margin))
    return np.where(found, bound, 1.0)
