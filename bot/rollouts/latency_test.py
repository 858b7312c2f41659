"""The latency test: is the candidate's mean latency more than `latency_margin` (relative) above the stable's?

CloudWatch gives ModelLatency per variant per minute as aggregates (Sum and SampleCount, so the minute's
mean), not per-request values. Each minute in which both variants served at least MIN_REQUESTS_PER_MINUTE
requests gives one paired observation

    x = log(candidate's mean / stable's mean) - log(1 + latency_margin)

(pairing by minute cancels what both variants share: load, time of day, a slow dependency). The test assumes
these minute values are independent and normal with one unknown spread within a step: the minute means are
averages of many requests (normal by the central limit theorem), the log makes a ratio symmetric, and the
split between the variants is fixed within a step. It does not assume any per-request distribution.

On those assumptions the Bayes factor of "mean of x = sigma*delta, delta ~ N(0, PRIOR_G)" against "mean 0",
with the right-Haar prior 1/sigma on the unknown spread, is an e-process (Lai 1976; Perez-Ortiz, Lardy,
de Heide & Grunwald 2024): checking it after every minute keeps its error below alpha. It is used one-sided:
evidence with a positive mean of x is evidence that the candidate is worse than the margin (roll back), with
a negative mean that it is within it (may shift). A shift of all x towards the null only lowers both, so the
composite nulls ("no worse than the margin", "at least the margin worse") are covered as well.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

# Variance of the standardised effect mean/sigma under the alternative. Per-minute log ratios spread by about
# 0.05-0.15 at a few hundred requests a minute, while the regressions worth a rollback are 10%-100% (0.1-0.7
# on the log scale): standardised effects of 1-5. Tuned with bench/judgement.py's latency section.
PRIOR_G = 9.0
# A minute with fewer requests on either variant is left out: its mean is too noisy, and too skewed by a few
# slow requests, to pass for normal. Which minutes count depends on request counts only, never on latencies.
MIN_REQUESTS_PER_MINUTE = 10


class LatencyStats(NamedTuple):
    minutes: np.ndarray  # minutes used
    mean: np.ndarray  # mean of x (log ratio minus the margin's log)
    sd: np.ndarray  # sample standard deviation of x (nan below 2 minutes)
    stable_mean: np.ndarray  # request-weighted mean latency over the minutes used, the metric's unit
    candidate_mean: np.ndarray


def stats(stable_sum, stable_count, candidate_sum, candidate_count, margin: float) -> LatencyStats:
    """Per-minute aggregates of both variants (arrays, last axis = minute, aligned) -> the test's statistics."""
    ss, sc = np.asarray(stable_sum, dtype=float), np.asarray(stable_count, dtype=float)
    cs, cc = np.asarray(candidate_sum, dtype=float), np.asarray(candidate_count, dtype=float)
    used = (sc >= MIN_REQUESTS_PER_MINUTE) & (cc >= MIN_REQUESTS_PER_MINUTE) & (ss > 0) & (cs > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.log((cs / cc) / (ss / sc)) - math.log1p(margin)
    x = np.where(used, x, 0.0)
    n = used.sum(axis=-1).astype(float)
    mean = np.divide(x.sum(axis=-1), n, out=np.zeros(n.shape), where=n > 0)
    dev = np.where(used, x - mean[..., None], 0.0)
    var = np.divide((dev * dev).sum(axis=-1), n - 1, out=np.full(n.shape, np.nan), where=n > 1)
    total_s, total_c = np.where(used, sc, 0).sum(-1), np.where(used, cc, 0).sum(-1)
    stable_mean = np.divide(np.where(used, ss, 0).sum(-1), total_s, out=np.full(n.shape, np.nan), where=total_s > 0)
    cand_mean = np.divide(np.where(used, cs, 0).sum(-1), total_c, out=np.full(n.shape, np.nan), where=total_c > 0)
    return LatencyStats(n, mean, np.sqrt(var), stable_mean, cand_mean)


def log_bayes_factor(s: LatencyStats, g: float = PRIOR_G) -> np.ndarray:
    """log of the scale-invariant Bayes factor (normal prior on the standardised effect; Gonen et al. 2005):
    BF = (1 + n g)^(-1/2) * ((nu + t^2) / (nu + t^2 / (1 + n g)))^((nu + 1) / 2),  nu = n - 1.
    0 (no evidence) below two minutes. Bounded by (1 + n g)^(nu / 2) however tight the minutes agree, so a
    handful of minutes can never decide."""
    n = np.asarray(s.minutes, dtype=float)
    nu = n - 1.0
    ok = n >= 2
    sd = np.where(ok, s.sd, 1.0)
    # Below 1e-12 (far under any real latency ratio's noise) a spread or a mean is rounding, not a measurement.
    with np.errstate(divide="ignore", invalid="ignore"):
        t2 = np.where(sd > 1e-12, n * s.mean * s.mean / (sd * sd), np.where(np.abs(s.mean) > 1e-12, np.inf, 0.0))
    ng = n * g
    # log(nu + t2) - log(nu + t2/(1+ng)) = log(1+ng) + log1p(-nu*ng / (nu*(1+ng) + t2)), finite at t2 = inf
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log1p(ng) + np.log1p(-np.where(ok, nu * ng / (nu * (1.0 + ng) + t2), 0.0))
    out = -0.5 * np.log1p(ng) + 0.5 * (nu + 1.0) * ratio
    return np.where(ok, out, 0.0)


def directional(s: LatencyStats, g: float = PRIOR_G) -> tuple[np.ndarray, np.ndarray]:
    """(log evidence that the candidate is slower than the margin allows, log evidence that it is within it):
    the Bayes factor on the side the data lean to, 0 on the other."""
    log_bf = log_bayes_factor(s, g)
    worse = np.where(s.mean > 0, log_bf, 0.0)
    within = np.where(s.mean < 0, log_bf, 0.0)
    return worse, within
