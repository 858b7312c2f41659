"""The rollout judgement: shift, wait, roll back or pause, from error counts since the step began.

Pure and fast: no I/O, and the maths runs on numpy arrays so that `judge()` (one rollout) and
`judge_vector()` (thousands of simulated rollouts in bench/judgement.py) share one implementation.

Method (docs/judgement.md has the derivation, references and measured figures):

* Roll back: an e-process on the error counts. Given the total errors n = e_c + e_s of one type, under
  "candidate no worse" each error comes from the candidate with probability at most pi = w_c / (w_c + w_s)
  (w = requests of each variant). Under relative risk rho it does with p_rho = rho*pi / (1 + (rho-1)*pi).
  The likelihood ratio of the observed split, mixed over rho in RELATIVE_RISKS with PRIOR_WEIGHTS, is an
  e-process, so checking it on every tick does not inflate the false-rollback rate (Ville's inequality).
  Valid at any sample size, hence allowed to roll back before min_requests. alpha is split 3:1 between
  5XX and 4XX.
* Shift: a time-uniform confidence sequence on (candidate rate - stable rate), one-sided normal mixture
  (Robbins; Howard et al. 2021) in the asymptotic form of Waudby-Smith et al. (time-uniform CLT) with a
  score-type (Wilson) variance, each bound at level alpha/2 per error type; shift when the upper bound is
  below the margin for 5XX and 4XX.

Assumption: within one step the traffic weights are constant, so the candidate's share of requests is
(nearly) constant and the cumulative formula equals the product of per-tick likelihood ratios. Counts
restart at every step; alpha therefore bounds false rollbacks per step (see docs/judgement.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple, Protocol

import numpy as np

# Alternatives the rollback test is built to detect quickly, and their prior weights. The weights minimise
# the worst-case slowdown against a test that knows the true relative risk, over regressions of 1.5x-3x
# (about 1.2x, docs/judgement.md): those take tens of thousands of requests to show, so that is where the
# weights matter. Beyond 3x a regression shows within a few thousand requests whatever its weight (a weight
# of 0.04 instead of 0.25 costs about two errors at 10x); below 1.5x it sits inside any sensible margin.
RELATIVE_RISKS: tuple[float, ...] = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
PRIOR_WEIGHTS: tuple[float, ...] = (0.02, 0.38, 0.25, 0.25, 0.06, 0.04)

# Share of the false-rollback budget alpha spent on each error type. Subtle regressions (1.5x-2x) are where
# the budget matters, and those are typically 5XX (timeouts, memory pressure); a model that breaks its input
# contract floods 4XX and is caught within a few errors at any threshold (1/(0.25*alpha) costs about one
# more error than 1/(0.5*alpha) at 10x). Equal shares would make a 2x 5XX regression take ~10% longer
# (bench/judgement.py prints both).
ALPHA_SHARE_5XX = 0.75
ALPHA_SHARE_4XX = 0.25

# The confidence sequence's mixing variance is tuned to be tightest at this many requests (both variants
# together); from 10k to 1M requests the width stays within ~8% of the narrowest any tuning gives at that n
# (alpha 0.01). Below ~5k requests it is wider on purpose: counts that small should not shift anything.
CS_TUNED_REQUESTS = 50_000.0

_LOG_CAP = 700.0  # exp(700) ~ 1e304: e-values stay finite floats whatever the counts

_LOG_RISKS = np.log(np.asarray(RELATIVE_RISKS))
_LOG_WEIGHTS = np.log(np.asarray(PRIOR_WEIGHTS) / sum(PRIOR_WEIGHTS))


class JudgementSettings(Protocol):
    """What the judgement reads from a model's rollout settings (bot.registry.RolloutSettings fits)."""

    min_requests: int
    margin: float
    alpha: float
    max_step_minutes: float


@dataclass(frozen=True)
class Counts:
    requests: int  # Invocations since the step began
    errors_5xx: int
    errors_4xx: int


@dataclass(frozen=True)
class Evidence:
    stable_rate_5xx: float
    candidate_rate_5xx: float
    stable_rate_4xx: float
    candidate_rate_4xx: float
    diff_5xx: float  # candidate - stable point estimate
    interval_5xx: tuple[float, float]  # anytime-valid (1 - alpha) confidence sequence on the difference of rates
    interval_4xx: tuple[float, float]
    statistic_5xx: float  # e-value for "candidate worse", times the share of alpha spent on this error type
    statistic_4xx: float
    threshold: float  # 1/alpha: a statistic at or above it rolls back
    reason: str  # one sentence for Slack


class Action(str, Enum):
    SHIFT = "shift"
    WAIT = "wait"
    ROLLBACK = "rollback"
    PAUSE = "pause"


@dataclass(frozen=True)
class Decision:
    action: Action
    evidence: Evidence
    failing: str | None = None  # "5xx" / "4xx" when rolling back, else None


# Action codes of the vectorised path, index into ACTIONS.
WAIT, SHIFT, ROLLBACK, PAUSE = 0, 1, 2, 3
ACTIONS = (Action.WAIT, Action.SHIFT, Action.ROLLBACK, Action.PAUSE)
FAILING = (None, "5xx", "4xx")


class VectorJudgement(NamedTuple):
    action: np.ndarray  # int8 codes WAIT/SHIFT/ROLLBACK/PAUSE
    failing: np.ndarray  # int8: 0 none, 1 5xx, 2 4xx
    log_evalue_5xx: np.ndarray  # log of the mixture e-value, before the alpha share
    log_evalue_4xx: np.ndarray
    lower_5xx: np.ndarray
    upper_5xx: np.ndarray
    lower_4xx: np.ndarray
    upper_4xx: np.ndarray


def log_evalue_vector(candidate_errors, candidate_requests, stable_errors, stable_requests) -> np.ndarray:
    """log of the mixture e-value for "candidate error rate > stable error rate", elementwise.

    log LR_rho = e_c log(rho) - n log(1 + (rho - 1) pi): the binomial likelihood ratio of the candidate's
    share of the n errors, p_rho against pi. At most 0 whenever the candidate's observed rate is not above
    the stable one (Jensen), and increasing in e_c.
    """
    ec = np.asarray(candidate_errors, dtype=float)
    wc = np.asarray(candidate_requests, dtype=float)
    es = np.asarray(stable_errors, dtype=float)
    ws = np.asarray(stable_requests, dtype=float)
    total = wc + ws
    pi = np.divide(wc, total, out=np.zeros(np.broadcast(wc, total).shape), where=total > 0)
    n = ec + es
    log_lr = (_LOG_WEIGHTS.reshape((-1,) + (1,) * pi.ndim)
              + ec * _LOG_RISKS.reshape((-1,) + (1,) * pi.ndim)
              - n * np.log1p((np.asarray(RELATIVE_RISKS) - 1.0).reshape((-1,) + (1,) * pi.ndim) * pi))
    return np.logaddexp.reduce(log_lr, axis=0)


def _cs_radius_factor(total_requests: np.ndarray, alpha_side: float) -> np.ndarray:
    """g(N): the one-sided bound is diff_hat + g(N) * sqrt(v), v the variance of diff_hat, level alpha_side.

    One-sided normal mixture over lambda >= 0 with precision rho (in units of requests) on the standardised
    sum: 2 sqrt(rho/(N+rho)) exp(x^2/2) Phi(x) >= 1/alpha_side, x = S/sqrt(N+rho). Solved conservatively:
    x0^2 = 2 log(1/(2 alpha_side)) + log(1 + N/rho), then x^2 = x0^2 - 2 log(1 - phi(x0)/x0) (Mills ratio).
    """
    a = 2.0 * math.log(1.0 / (2.0 * alpha_side))
    u = a + math.log1p(a)
    u = a + math.log1p(u)  # fixed point of u = a + log(1 + u): rho = N*/u minimises g at N*
    rho = CS_TUNED_REQUESTS / u
    n = np.maximum(np.asarray(total_requests, dtype=float), 1.0)
    x0_sq = a + np.log1p(n / rho)
    x0 = np.sqrt(x0_sq)
    mills = np.exp(-0.5 * x0_sq) / (math.sqrt(2.0 * math.pi) * x0)
    x_sq = x0_sq - 2.0 * np.log1p(-np.minimum(mills, 0.5))
    return np.sqrt(x_sq * (1.0 + rho / n))


def _score_radius(moving_errors, moving_requests, other_variance, g):
    """How far a bound lies from the point estimate, score-style (Wilson): the variance of the variant whose
    rate moves towards the bound is evaluated at the bound, not at its observed rate.

    Solves x^2 = g^2 [(p + x)(1 - p - x)/n + other_variance] for x >= 0, p = errors/n. A plug-in variance
    would say a candidate with 0 errors in 700 requests has (almost) no variance, and shift it past a 0.2 pp
    margin although its true rate may well be 0.7%; at the bound that variance is of a 2-3% rate instead.
    The bound p + x increases with the errors (as Wilson's does), which makes SHIFT monotone.
    """
    n = np.maximum(moving_requests, 1.0)
    p = moving_errors / n
    g2n = g * g / n
    half_b = 0.5 * g2n * (1.0 - 2.0 * p)
    c = g * g * (p * (1.0 - p) / n + other_variance)
    return (half_b + np.sqrt(half_b * half_b + (1.0 + g2n) * c)) / (1.0 + g2n)


def _fixed_variance(errors, requests):
    """Variance of the rate that stays put, with one pseudo-error in two pseudo-requests so a variant with no
    errors yet is not treated as known exactly."""
    p = (errors + 1.0) / (requests + 2.0)
    return p * (1.0 - p) / np.maximum(requests, 1.0)


def confidence_sequence_vector(candidate_errors, candidate_requests, stable_errors, stable_requests,
                               alpha_side: float) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) time-uniform bounds on candidate rate - stable rate, each at level alpha_side.

    Asymptotically valid (time-uniform CLT) with score-type variances for small counts; clipped to
    [-1, 1]; (-1, 1) while a variant has no requests.
    """
    ec = np.asarray(candidate_errors, dtype=float)
    wc = np.asarray(candidate_requests, dtype=float)
    es = np.asarray(stable_errors, dtype=float)
    ws = np.asarray(stable_requests, dtype=float)
    diff = ec / np.maximum(wc, 1.0) - es / np.maximum(ws, 1.0)
    g = _cs_radius_factor(wc + ws, alpha_side)
    upper = diff + _score_radius(ec, wc, _fixed_variance(es, ws), g)  # worst case: candidate higher
    lower = diff - _score_radius(es, ws, _fixed_variance(ec, wc), g)  # worst case: stable higher
    empty = (wc <= 0) | (ws <= 0)
    lower = np.where(empty, -1.0, np.clip(lower, -1.0, 1.0))
    upper = np.where(empty, 1.0, np.clip(upper, -1.0, 1.0))
    return lower, upper


def judge_vector(stable_requests, stable_5xx, stable_4xx, candidate_requests, candidate_5xx, candidate_4xx, *,
                 min_requests: float, margin: float, alpha: float, minutes_in_step=0.0,
                 max_step_minutes: float = math.inf,
                 alpha_share_5xx: float = ALPHA_SHARE_5XX) -> VectorJudgement:
    """The decision rule on arrays of cumulative counts (any broadcastable shapes); judge() is this on
    scalars. Inputs are assumed valid (see validate_counts)."""
    ws = np.asarray(stable_requests, dtype=float)
    wc = np.asarray(candidate_requests, dtype=float)
    le5 = log_evalue_vector(candidate_5xx, wc, stable_5xx, ws)
    le4 = log_evalue_vector(candidate_4xx, wc, stable_4xx, ws)
    log_threshold = math.log(1.0 / alpha)
    stat5 = le5 + math.log(alpha_share_5xx)
    stat4 = le4 + math.log(1.0 - alpha_share_5xx)
    worse5 = stat5 >= log_threshold
    worse4 = stat4 >= log_threshold
    rollback = worse5 | worse4
    # Both crossing: name the one with the stronger evidence.
    failing = np.where(rollback, np.where((worse5 & (stat5 >= stat4)) | ~worse4, 1, 2), 0).astype(np.int8)

    lo5, up5 = confidence_sequence_vector(candidate_5xx, wc, stable_5xx, ws, alpha / 2.0)
    lo4, up4 = confidence_sequence_vector(candidate_4xx, wc, stable_4xx, ws, alpha / 2.0)
    enough = (ws >= min_requests) & (wc >= min_requests)
    shift = enough & (up5 < margin) & (up4 < margin)
    out_of_time = np.asarray(minutes_in_step, dtype=float) >= max_step_minutes
    action = np.where(rollback, ROLLBACK, np.where(shift, SHIFT, np.where(out_of_time, PAUSE, WAIT)))
    return VectorJudgement(action.astype(np.int8), failing, le5, le4, lo5, up5, lo4, up4)


def validate_counts(name: str, c: Counts) -> None:
    """Counts from CloudWatch are sums of floats; anything negative, non-finite or with more errors than
    requests means the metrics were read wrongly, and judging them would be judging noise."""
    for field in ("requests", "errors_5xx", "errors_4xx"):
        value = getattr(c, field)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"{name} {field} must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} {field} must be a finite count >= 0, got {value!r}")
    for field in ("errors_5xx", "errors_4xx"):
        if getattr(c, field) > c.requests:
            raise ValueError(f"{name} has more {field} ({getattr(c, field)}) than requests ({c.requests}): "
                             "the error and Invocations metrics do not cover the same period")


def judge(stable: Counts, candidate: Counts, settings: JudgementSettings, minutes_in_step: float) -> Decision:
    """Judge one rollout step from counts accumulated since the step began (monotone across calls)."""
    validate_counts("stable", stable)
    validate_counts("candidate", candidate)
    if not math.isfinite(minutes_in_step) and minutes_in_step != math.inf:
        raise ValueError(f"minutes_in_step must be a number, got {minutes_in_step!r}")
    v = judge_vector(stable.requests, stable.errors_5xx, stable.errors_4xx,
                     candidate.requests, candidate.errors_5xx, candidate.errors_4xx,
                     min_requests=settings.min_requests, margin=settings.margin, alpha=settings.alpha,
                     minutes_in_step=minutes_in_step, max_step_minutes=settings.max_step_minutes)
    action = ACTIONS[int(v.action)]
    failing = FAILING[int(v.failing)]
    stat5 = _evalue(float(v.log_evalue_5xx) + math.log(ALPHA_SHARE_5XX))
    stat4 = _evalue(float(v.log_evalue_4xx) + math.log(ALPHA_SHARE_4XX))
    rates = (_rate(stable.errors_5xx, stable.requests), _rate(candidate.errors_5xx, candidate.requests),
             _rate(stable.errors_4xx, stable.requests), _rate(candidate.errors_4xx, candidate.requests))
    interval5 = (float(v.lower_5xx), float(v.upper_5xx))
    interval4 = (float(v.lower_4xx), float(v.upper_4xx))
    facts = _Facts(stable, candidate, settings, minutes_in_step, rates, interval5, interval4, stat5, stat4)
    evidence = Evidence(
        stable_rate_5xx=rates[0], candidate_rate_5xx=rates[1], stable_rate_4xx=rates[2], candidate_rate_4xx=rates[3],
        diff_5xx=rates[1] - rates[0], interval_5xx=interval5, interval_4xx=interval4,
        statistic_5xx=stat5, statistic_4xx=stat4, threshold=1.0 / settings.alpha,
        reason=_reason(action, failing, facts),
    )
    return Decision(action=action, evidence=evidence, failing=failing)


def _evalue(log_value: float) -> float:
    return math.exp(min(max(log_value, -_LOG_CAP), _LOG_CAP))


def _rate(errors: float, requests: float) -> float:
    return float(errors) / float(requests) if requests > 0 else 0.0


# ---- the sentence a human reads in Slack ----------------------------------------------------------------

@dataclass(frozen=True)
class _Facts:
    stable: Counts
    candidate: Counts
    settings: JudgementSettings
    minutes: float
    rates: tuple[float, float, float, float]
    interval5: tuple[float, float]
    interval4: tuple[float, float]
    stat5: float
    stat4: float


def _pct(rate: float) -> str:
    return "0%" if rate == 0 else f"{rate * 100:.3g}%"


def _pp(x: float, sign: bool = True) -> str:
    return f"{x * 100:+.2f}" if sign else f"{x * 100:.2f}"


def _level(alpha: float) -> str:
    return f"{(1 - alpha) * 100:.10g}% CS"


def _count(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.1f}"


def _evalue_text(e: float) -> str:
    return f"{e:.3g}" if e < 1e6 else f"10^{math.log10(e):.0f}"


def _kind(f: _Facts, kind: str, with_interval: bool = True) -> str:
    stable_rate, cand_rate = (f.rates[0], f.rates[1]) if kind == "5xx" else (f.rates[2], f.rates[3])
    lo, hi = f.interval5 if kind == "5xx" else f.interval4
    text = f"{kind.upper()} rate candidate {_pct(cand_rate)} vs stable {_pct(stable_rate)}"
    if with_interval:
        text += (f" ({_pp(cand_rate - stable_rate)} pp, {_level(f.settings.alpha)} "
                 f"[{_pp(lo)}, {_pp(hi)}] pp)")
    return text


def _reason(action: Action, failing: str | None, f: _Facts) -> str:
    alpha, margin = f.settings.alpha, f.settings.margin
    threshold = 1.0 / alpha
    if action is Action.ROLLBACK:
        stat = f.stat5 if failing == "5xx" else f.stat4
        rest = _kind(f, "5xx" if failing == "4xx" else "4xx", with_interval=False)
        return (f"{_kind(f, failing)}: candidate worse at alpha {alpha:g} "
                f"(e-value {_evalue_text(stat)} >= {threshold:.3g}); {rest}")
    if action is Action.SHIFT:
        return (f"increase below the {_pp(margin, sign=False)} pp margin for both error types: "
                f"{_kind(f, '5xx')}, {_kind(f, '4xx')}")
    fewest = min(f.stable.requests, f.candidate.requests)
    evidence = max(f.stat5, f.stat4)
    if fewest < f.settings.min_requests:
        status = (f"fewer than {f.settings.min_requests:,} requests per variant (candidate "
                  f"{_count(f.candidate.requests)}, stable {_count(f.stable.requests)}); so far "
                  f"{_kind(f, '5xx', with_interval=False)}, {_kind(f, '4xx', with_interval=False)}")
    else:
        blocking = [k for k, (_, hi) in (("5xx", f.interval5), ("4xx", f.interval4)) if hi >= margin]
        status = (f"{', '.join(_kind(f, k) for k in ('5xx', '4xx'))}; "
                  f"{' and '.join(k.upper() for k in blocking) or 'no'} upper bound not yet below the "
                  f"{_pp(margin, sign=False)} pp margin, e-value {_evalue_text(evidence)} of "
                  f"{threshold:.3g} needed to roll back")
    if action is Action.PAUSE:
        return (f"still undecided after {f.minutes:.0f} min (limit {f.settings.max_step_minutes:g} min), "
                f"a human decides: {status}")
    return status if fewest < f.settings.min_requests else f"inconclusive: {status}"
