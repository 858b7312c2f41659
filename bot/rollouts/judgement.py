"""The rollout judgement: shift, wait, roll back or pause, from the counts each tick of the rollout saw.

Pure and fast: no I/O, and the maths runs on numpy arrays, so `judge()` (one rollout, its earlier ticks read
back from rollout_events) and `judge_vector()` (thousands of simulated rollouts in bench/judgement.py) share
one implementation. docs/judgement.md has the method, its assumptions and the measured figures.

* Roll back when the rollout's e-process against "the candidate's 5XX and 4XX rates are no higher than the
  stable's" reaches 1/alpha (bot/rollouts/error_tests.py). One bound per rollout: alpha is spent across the
  judged steps. Step 1's e-process gets FIRST_STEP_SHARE of it and runs on through every later step; each later
  step starts an e-process of its own with an equal part of the rest. Their weighted sum, with the parts of
  steps not yet begun counted at their starting value 1, is one supermartingale for the whole rollout, so
  the chance of any false rollback in the rollout is at most alpha. 5XX and 4XX share it ALPHA_SHARE_5XX to
  ALPHA_SHARE_4XX. With `latency_margin` set, LATENCY_SHARE of alpha goes to the latency test instead
  (bot/rollouts/latency_test.py), spent over the steps in the same shares.
* Shift when, for each error type, the e-process against "the candidate is worse by at least `margin`"
  reaches 1/alpha, both variants have `min_requests`, and (with `latency_margin`) latency is shown to be
  within its margin. A false shift needs every one of these tests to be wrong, so alpha bounds it per step.
* Pause after `max_step_minutes` without either; wait otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple, Protocol, Sequence

import numpy as np

from bot.rollouts import error_tests, latency_test
from bot.rollouts.judgement_text import reason
from bot.rollouts.error_tests import PRIOR_WEIGHTS, RELATIVE_RISKS  # noqa: F401 -- documented constants

# Step 1 carries most of the false-rollback budget: a bad candidate is usually bad from its first request, and
# step 1 is where catching it hurts fewest users. Its e-process keeps running in later steps, so a subtle
# regression that passed step 1 keeps adding evidence; each later step's fresh e-process (for a regression
# that shows only under more traffic) starts with an equal part of the remaining 10%.
FIRST_STEP_SHARE = 0.9
# Subtle regressions (1.5x-2x), where the budget matters, are typically 5XX (timeouts, memory pressure); a
# model that breaks its input contract floods 4XX and shows within a few errors at any threshold.
ALPHA_SHARE_5XX = 0.9
ALPHA_SHARE_4XX = 1.0 - ALPHA_SHARE_5XX
LATENCY_SHARE = 0.2  # of alpha, when the model's latency_margin is set

_LOG_CAP = 700.0  # exp(700) ~ 1e304: e-values stay finite floats whatever the counts


class JudgementSettings(Protocol):
    """What the judgement reads from a model's rollout settings (bot.registry.RolloutSettings fits);
    `steps` and `latency_margin` are optional (one judged step; latency not judged)."""

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
class Latency:
    """ModelLatency of both variants per minute since the step began (Sum and SampleCount, minute by minute,
    aligned: the same minute at the same index)."""

    stable_sum: tuple[float, ...]
    stable_count: tuple[float, ...]
    candidate_sum: tuple[float, ...]
    candidate_count: tuple[float, ...]


@dataclass(frozen=True)
class StepTicks:
    """The counts the controller's earlier ticks saw in one step of this rollout, oldest first."""

    step: int
    stable: tuple[Counts, ...]
    candidate: tuple[Counts, ...]


@dataclass(frozen=True)
class Evidence:
    stable_rate_5xx: float
    candidate_rate_5xx: float
    stable_rate_4xx: float
    candidate_rate_4xx: float
    diff_5xx: float  # candidate - stable point estimate
    # Anytime-valid upper bounds on candidate rate - stable rate (level alpha): below the margin exactly when
    # the shift test for that error type is passed.
    upper_5xx: float
    upper_4xx: float
    statistic_5xx: float  # each type's part of the rollout's evidence against the candidate
    statistic_4xx: float
    statistic: float  # the whole of it (with the starting value of steps not yet begun): rolls back at threshold
    threshold: float  # 1 / (alpha spent on error rates)
    shift_statistic_5xx: float  # evidence that the candidate is not worse by the margin; shifts at shift_threshold
    shift_statistic_4xx: float
    shift_threshold: float  # 1 / alpha
    step: int  # which step the counts belong to (0-based)
    reason: str  # one sentence for Slack
    latency_stable: float | None = None  # mean ModelLatency over the minutes judged (microseconds)
    latency_candidate: float | None = None
    latency_minutes: int = 0
    latency_statistic: float | None = None  # evidence the candidate is slower than the margin allows
    latency_threshold: float | None = None
    latency_shift_statistic: float | None = None  # evidence it is within the margin; shifts at shift_threshold


class Action(str, Enum):
    SHIFT = "shift"
    WAIT = "wait"
    ROLLBACK = "rollback"
    PAUSE = "pause"


@dataclass(frozen=True)
class Decision:
    action: Action
    evidence: Evidence
    failing: str | None = None  # "5xx" / "4xx" / "latency" when rolling back, else None


# Action codes of the vectorised path, index into ACTIONS.
WAIT, SHIFT, ROLLBACK, PAUSE = 0, 1, 2, 3
ACTIONS = (Action.WAIT, Action.SHIFT, Action.ROLLBACK, Action.PAUSE)
FAILING = (None, "5xx", "4xx", "latency")


class VectorJudgement(NamedTuple):
    action: np.ndarray  # int8 codes WAIT/SHIFT/ROLLBACK/PAUSE, per tick
    failing: np.ndarray  # int8: 0 none, 1 5xx, 2 4xx, 3 latency
    log_rollback: np.ndarray  # log of the rollout's evidence against the candidate (statistic)
    log_rollback_5xx: np.ndarray  # log of each type's part of it
    log_rollback_4xx: np.ndarray
    log_shift_5xx: np.ndarray  # log of the shift tests' e-processes
    log_shift_4xx: np.ndarray
    log_latency_worse: np.ndarray  # log evidence the candidate is slower than the margin allows (0 when off)
    log_latency_within: np.ndarray


# ---- spending alpha over the steps ---------------------------------------------------------------------

def judged_steps(steps: Sequence[float] | None) -> int:
    """Steps below 100% are judged; the 100% step is the bake, with nothing left to compare."""
    return max(1, sum(1 for s in steps if s < 100)) if steps else 1


def step_shares(steps: int) -> np.ndarray:
    """The share of the rollout's alpha each judged step's e-process starts with (sums to 1)."""
    if steps <= 1:
        return np.ones(1)
    return np.array([FIRST_STEP_SHARE] + [(1.0 - FIRST_STEP_SHARE) / (steps - 1)] * (steps - 1))


def _reserve(step: int, steps: int) -> float:
    """The starting value 1, weighted, of the e-processes of steps not begun yet."""
    return float(step_shares(steps)[min(step, steps - 1) + 1:].sum())


def initial_carry(steps: int, shape: tuple[int, ...] = ()) -> np.ndarray:
    """What the rollback e-processes start with at step 1: log carry per error type and relative risk."""
    return np.full(shape + (2, len(RELATIVE_RISKS)), math.log(step_shares(steps)[0]))


def carry_after(stable_requests, stable_5xx, stable_4xx, candidate_requests, candidate_5xx, candidate_4xx, *,
                carry: np.ndarray, step: int, steps: int, end=None) -> np.ndarray:
    """The carry into step + 1, given the cumulative counts of step `step` (last axis: ticks) up to tick index
    `end` (per rollout; default the last tick): the running e-processes multiply by what this step showed, and
    the next step's own e-process joins with its share."""
    out = []
    for kind, (ce, se) in enumerate(((candidate_5xx, stable_5xx), (candidate_4xx, stable_4xx))):
        lr = error_tests.rollback_log_lr(error_tests.ticks(candidate_requests, ce, stable_requests, se))
        if lr.shape[-1] == 0:
            at_end = np.zeros(lr.shape[:-1])
        elif end is None:
            at_end = lr[..., -1]
        else:
            index = np.broadcast_to(np.asarray(end), lr.shape[1:-1])[None, ..., None]
            at_end = np.take_along_axis(lr, np.broadcast_to(index, lr.shape[:-1] + (1,)), axis=-1)[..., 0]
        out.append(np.moveaxis(at_end, 0, -1) + carry[..., kind, :])  # (..., K)
    ran = np.stack(out, axis=-2)
    shares = step_shares(steps)
    if step + 1 < steps:
        ran = np.logaddexp(ran, math.log(shares[step + 1]))
    return ran


# ---- the decision rule -----------------------------------------------------------------------------------

def judge_vector(stable_requests, stable_5xx, stable_4xx, candidate_requests, candidate_5xx, candidate_4xx, *,
                 min_requests: float, margin: float, alpha: float, step: int = 0, steps: int = 1,
                 carry: np.ndarray | None = None, minutes_in_step=0.0, max_step_minutes: float = math.inf,
                 latency: latency_test.LatencyStats | None = None,
                 alpha_share_5xx: float = ALPHA_SHARE_5XX) -> VectorJudgement:
    """The decision rule at every tick of the current step. Counts are cumulative since the step began, along
    the last axis (ticks, oldest first; leading axes: independent rollouts); `carry` is what earlier steps left
    (carry_after); `latency` (latency_test.stats, with the margin applied) broadcasts against the ticks.
    judge() is this on one rollout's path. Inputs are assumed valid (see validate_counts)."""
    arrays = [np.atleast_1d(np.asarray(a, dtype=float)) for a in
              (stable_requests, stable_5xx, stable_4xx, candidate_requests, candidate_5xx, candidate_4xx)]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    ns, s5, s4, nc, c5, c4 = (np.broadcast_to(a, shape) for a in arrays)
    step = min(max(step, 0), steps - 1)
    carry = initial_carry(steps) if carry is None else np.asarray(carry, dtype=float)
    lat_share = LATENCY_SHARE if latency is not None else 0.0
    alpha_errors = alpha * (1.0 - lat_share)

    t5, t4 = error_tests.ticks(nc, c5, ns, s5), error_tests.ticks(nc, c4, ns, s4)
    m5 = error_tests.mixture(error_tests.rollback_log_lr(t5), carry[..., 0, :]) + math.log(alpha_share_5xx)
    m4 = error_tests.mixture(error_tests.rollback_log_lr(t4), carry[..., 1, :]) + math.log(1.0 - alpha_share_5xx)
    reserve = _reserve(step, steps)
    log_rb = np.logaddexp(m5, m4)
    if reserve > 0:
        log_rb = np.logaddexp(log_rb, math.log(reserve))
    rollback = log_rb >= math.log(1.0 / alpha_errors)
    failing = np.where(rollback, np.where(m5 >= m4, 1, 2), 0)

    shift5, shift4 = error_tests.shift_log_e(t5, margin), error_tests.shift_log_e(t4, margin)
    log_alpha = math.log(1.0 / alpha)
    enough = (ns >= min_requests) & (nc >= min_requests)
    shift = enough & (shift5 >= log_alpha) & (shift4 >= log_alpha)

    worse = within = np.zeros(shape)
    if latency is not None:
        worse, within = (np.broadcast_to(x, shape) for x in latency_test.directional(latency))
        slow = worse >= math.log(1.0 / (alpha * lat_share * step_shares(steps)[step]))
        failing = np.where(~rollback & slow, 3, failing)
        rollback = rollback | slow
        shift = shift & (within >= log_alpha)

    out_of_time = np.asarray(minutes_in_step, dtype=float) >= max_step_minutes
    action = np.where(rollback, ROLLBACK, np.where(shift, SHIFT, np.where(out_of_time, PAUSE, WAIT)))
    return VectorJudgement(action.astype(np.int8), failing.astype(np.int8), log_rb, m5, m4, shift5, shift4,
                           worse, within)


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


def _validate_latency(latency: Latency) -> None:
    columns = (latency.stable_sum, latency.stable_count, latency.candidate_sum, latency.candidate_count)
    if len({len(c) for c in columns}) != 1:
        raise ValueError("latency minutes are not aligned: the four series have different lengths")
    for column in columns:
        for value in column:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"latency aggregates must be finite numbers >= 0, got {value!r}")


def _plausible(path: list[np.ndarray]) -> bool:
    ns, s5, s4, nc, c5, c4 = path
    return bool(all(np.isfinite(a).all() and (a >= 0).all() for a in path)
                and (s5 <= ns).all() and (s4 <= ns).all() and (c5 <= nc).all() and (c4 <= nc).all())


def _path(ticks: Sequence[tuple[Counts, Counts]]) -> list[np.ndarray]:
    return [np.array([getattr(c, f) for c in column], dtype=float)
            for column in (tuple(s for s, _ in ticks), tuple(c for _, c in ticks))
            for f in ("requests", "errors_5xx", "errors_4xx")]


def judge(stable: Counts, candidate: Counts, settings: JudgementSettings, minutes_in_step: float, *,
          step: int = 0, steps: Sequence[float] | None = None, history: Sequence[StepTicks] = (),
          latency: Latency | None = None) -> Decision:
    """Judge one rollout at a tick: `stable` and `candidate` are the counts since step `step` began, `history`
    what the earlier ticks of this rollout saw (any steps; their order within a step is kept), `steps` the
    rollout's traffic steps (default: the settings'), `latency` this step's ModelLatency minutes (judged when
    the settings have a latency_margin)."""
    validate_counts("stable", stable)
    validate_counts("candidate", candidate)
    if not math.isfinite(minutes_in_step) and minutes_in_step != math.inf:
        raise ValueError(f"minutes_in_step must be a number, got {minutes_in_step!r}")
    count = judged_steps(steps if steps is not None else getattr(settings, "steps", None))
    step = min(max(int(step), 0), count - 1)
    by_step: dict[int, list[tuple[Counts, Counts]]] = {}
    for h in history:
        ticks = list(zip(h.stable, h.candidate))
        if ticks and not _plausible(_path(ticks)):  # one check for the lot; the culprit named when it fails
            for s, c in ticks:
                validate_counts(f"step {h.step + 1} stable", s)
                validate_counts(f"step {h.step + 1} candidate", c)
        by_step.setdefault(min(max(int(h.step), 0), count - 1), []).extend(ticks)
    carry = initial_carry(count)
    for earlier in range(step):
        carry = carry_after(*_path(by_step.get(earlier, [])), carry=carry, step=earlier, steps=count)
    current = by_step.get(step, []) + [(stable, candidate)]
    ns, s5, s4, nc, c5, c4 = _path(current)

    latency_margin = getattr(settings, "latency_margin", None)
    lat = None
    if latency_margin is not None:
        latency = latency or Latency((), (), (), ())
        _validate_latency(latency)
        lat = latency_test.stats(latency.stable_sum, latency.stable_count, latency.candidate_sum,
                                 latency.candidate_count, latency_margin)
    v = judge_vector(ns, s5, s4, nc, c5, c4, min_requests=settings.min_requests, margin=settings.margin,
                     alpha=settings.alpha, step=step, steps=count, carry=carry, minutes_in_step=minutes_in_step,
                     max_step_minutes=settings.max_step_minutes, latency=lat)
    action, failing = ACTIONS[int(v.action[-1])], FAILING[int(v.failing[-1])]
    t5, t4 = error_tests.ticks(nc, c5, ns, s5), error_tests.ticks(nc, c4, ns, s4)
    both = error_tests.Ticks(*(np.stack(f) for f in zip(t5, t4)))
    upper = error_tests.upper_bound(both, settings.alpha, settings.margin)
    rates = (_rate(stable.errors_5xx, stable.requests), _rate(candidate.errors_5xx, candidate.requests),
             _rate(stable.errors_4xx, stable.requests), _rate(candidate.errors_4xx, candidate.requests))
    lat_share = LATENCY_SHARE if lat is not None else 0.0
    values = dict(
        stable_rate_5xx=rates[0], candidate_rate_5xx=rates[1], stable_rate_4xx=rates[2], candidate_rate_4xx=rates[3],
        diff_5xx=rates[1] - rates[0], upper_5xx=float(upper[0]), upper_4xx=float(upper[1]),
        statistic_5xx=_evalue(v.log_rollback_5xx[-1]), statistic_4xx=_evalue(v.log_rollback_4xx[-1]),
        statistic=_evalue(v.log_rollback[-1]), threshold=1.0 / (settings.alpha * (1.0 - lat_share)),
        shift_statistic_5xx=_evalue(v.log_shift_5xx[-1]), shift_statistic_4xx=_evalue(v.log_shift_4xx[-1]),
        shift_threshold=1.0 / settings.alpha, step=step)
    if lat is not None:
        values.update(
            latency_stable=_finite(lat.stable_mean), latency_candidate=_finite(lat.candidate_mean),
            latency_minutes=int(lat.minutes), latency_statistic=_evalue(v.log_latency_worse[-1]),
            latency_threshold=1.0 / (settings.alpha * lat_share * float(step_shares(count)[step])),
            latency_shift_statistic=_evalue(v.log_latency_within[-1]))
    evidence = Evidence(reason="", **values)
    evidence = Evidence(**{**values, "reason": reason(action.value, failing, evidence, stable, candidate, settings,
                                                      minutes_in_step)})
    return Decision(action=action, evidence=evidence, failing=failing)


def _evalue(log_value) -> float:
    return math.exp(min(max(float(log_value), -_LOG_CAP), _LOG_CAP))


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _rate(errors: float, requests: float) -> float:
    return float(errors) / float(requests) if requests > 0 else 0.0
