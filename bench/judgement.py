"""The rollout judgement against three other ways to decide, on simulated rollouts judged every tick.

Base setting (the project's calibration figures (README, "The judgement")): stable 0.5% 5XX and 0.2% 4XX, the candidate at 10% of 1,000
requests a tick (each request routed at random), 400 ticks in one step, alpha 0.01, min_requests 500,
margin 0.2 pp. Every method looks at every tick; a rollout counts as rolled back if the method would
have rolled it back at any of the 400 ticks (the judgement's SHIFTs are ignored for that count, as if the
step lasted all 400 ticks, which is the strictest view of its false-rollback rate).

  (a) judgement   bot.rollouts.judgement.judge_vector: the same code judge() runs
  (b) z-test      one-sided pooled two-proportion z-test on the cumulative counts, repeated every tick, at
                  the same alpha split between 5XX and 4XX as (a) and the same min_requests gate
  (c) alarm       a fixed-threshold alarm in the style of SageMaker deployment guardrails (a CloudWatch
                  alarm on the new fleet): the candidate's 5XX (or 4XX) rate over the last 10 ticks is
                  above twice the stable variant's pre-rollout baseline (1.0% for 5XX, 0.4% for 4XX) on 3
                  consecutive ticks ("3 out of 3 datapoints"), once the first 10 ticks are in
  (d) oracle      Wald's SPRT knowing the true rates (H0: candidate = stable's true rate, H1: candidate = its
                  true rate, or 2x stable in the scenarios without a regression), at alpha, upper boundary
                  only (an open-ended SPRT); it only looks at the error type that differs

"requests" below are requests to both variants together since the step began, at the tick of the decision.

  python bench/judgement.py [--rollouts N] [--seed S] [--quick]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot import judgement  # noqa: E402

TICKS = 400
REQUESTS_PER_TICK = 1000
CANDIDATE_SHARE = 0.10
STABLE_5XX = 0.005
STABLE_4XX = 0.002
ALPHA = 0.01
MIN_REQUESTS = 500
MARGIN = 0.002
ALARM_WINDOW = 10
ALARM_FACTOR = 2.0
ALARM_DATAPOINTS = 3


def _flat(value: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda t: np.full(t.shape, value, dtype=float)


def _diurnal(low: float, high: float) -> Callable[[np.ndarray], np.ndarray]:
    """From `low` up to `high` at mid-run and back: a busy afternoon within one step."""
    return lambda t: low + (high - low) * np.sin(np.pi * t / TICKS)


@dataclass(frozen=True)
class Scenario:
    name: str
    regression: bool  # False: any rollback is a false rollback
    stable_5xx: Callable[[np.ndarray], np.ndarray] = _flat(STABLE_5XX)
    ratio_5xx: float = 1.0  # candidate rate = ratio * stable rate, tick by tick
    stable_4xx: Callable[[np.ndarray], np.ndarray] = _flat(STABLE_4XX)
    ratio_4xx: float = 1.0
    traffic: Callable[[np.ndarray], np.ndarray] = _flat(REQUESTS_PER_TICK)
    note: str = ""
    oracle_kind: str = field(init=False, default="5xx")

    def __post_init__(self) -> None:
        object.__setattr__(self, "oracle_kind", "4xx" if self.ratio_4xx != 1.0 else "5xx")


SCENARIOS = [
    Scenario("equal", False, note="0.5% vs 0.5%"),
    Scenario("better", False, ratio_5xx=0.7, note="candidate 0.35%"),
    Scenario("drifting", False, stable_5xx=_diurnal(0.005, 0.0125), traffic=_diurnal(600, 1400),
             note="both 0.5% -> 1.25% -> 0.5%, traffic 600 -> 1,400 -> 600 a tick"),
    Scenario("low traffic", False, traffic=_flat(100), note="100 requests a tick"),
    Scenario("at margin", True, ratio_5xx=1.4, note="candidate 0.7%: +0.2 pp, exactly the margin"),
    Scenario("1.5x worse", True, ratio_5xx=1.5, note="candidate 0.75%"),
    Scenario("2x worse", True, ratio_5xx=2.0, note="candidate 1.0%"),
    Scenario("5x worse", True, ratio_5xx=5.0, note="candidate 2.5%"),
    Scenario("4XX 2x worse", True, ratio_4xx=2.0, note="candidate 4XX 0.4%, 5XX equal"),
]


@dataclass
class Outcome:
    rolled_back: np.ndarray  # bool per rollout
    requests: np.ndarray  # requests at the rollback, inf when none


@dataclass
class Batch:
    total: np.ndarray  # cumulative requests, both variants (R, T)
    ns: np.ndarray
    nc: np.ndarray
    s5: np.ndarray
    s4: np.ndarray
    c5: np.ndarray
    c4: np.ndarray
    tick_nc: np.ndarray  # per-tick (not cumulative) candidate requests and errors, for the alarm and SPRT
    tick_c5: np.ndarray
    tick_c4: np.ndarray
    p5s: np.ndarray  # true rates per tick (T,)
    p4s: np.ndarray


def simulate(sc: Scenario, rollouts: int, rng: np.random.Generator) -> Batch:
    t = np.arange(TICKS, dtype=float)
    traffic = np.rint(sc.traffic(t)).astype(np.int64)
    p5s, p4s = sc.stable_5xx(t), sc.stable_4xx(t)
    p5c, p4c = p5s * sc.ratio_5xx, p4s * sc.ratio_4xx
    shape = (rollouts, TICKS)
    nc = rng.binomial(np.broadcast_to(traffic, shape), CANDIDATE_SHARE)
    ns = traffic - nc

    def errors(n, p5, p4):  # a request fails with 5XX, or else perhaps 4XX: the two are exclusive
        e5 = rng.binomial(n, np.broadcast_to(p5, shape))
        e4 = rng.binomial(n - e5, np.broadcast_to(p4 / (1 - p5), shape))
        return e5, e4

    e5s, e4s = errors(ns, p5s, p4s)
    e5c, e4c = errors(nc, p5c, p4c)
    cum = lambda a: np.cumsum(a, axis=1, dtype=float)  # noqa: E731
    return Batch(total=np.broadcast_to(np.cumsum(traffic, dtype=float), shape), ns=cum(ns), nc=cum(nc),
                 s5=cum(e5s), s4=cum(e4s), c5=cum(e5c), c4=cum(e4c), tick_nc=nc, tick_c5=e5c, tick_c4=e4c,
                 p5s=p5s, p4s=p4s)


def _first(hit: np.ndarray, total: np.ndarray) -> Outcome:
    any_hit = hit.any(axis=1)
    idx = hit.argmax(axis=1)
    req = np.where(any_hit, total[np.arange(len(idx)), idx], np.inf)
    return Outcome(any_hit, req)


def method_judgement(b: Batch, share_5xx: float = judgement.ALPHA_SHARE_5XX) -> tuple[Outcome, dict]:
    v = judgement.judge_vector(b.ns, b.s5, b.s4, b.nc, b.c5, b.c4, min_requests=MIN_REQUESTS, margin=MARGIN,
                               alpha=ALPHA, alpha_share_5xx=share_5xx)
    rollback = _first(v.action == judgement.ROLLBACK, b.total)
    decided = v.action != judgement.WAIT
    first = np.where(decided.any(axis=1), v.action[np.arange(len(decided)), decided.argmax(axis=1)], -1)
    shift = _first(v.action == judgement.SHIFT, b.total)
    extra = {"first_shift": first == judgement.SHIFT, "first_rollback": first == judgement.ROLLBACK,
             "undecided": first == -1,
             "shift_requests": np.where(first == judgement.SHIFT, shift.requests, np.inf)}
    return rollback, extra


def method_ztest(b: Batch) -> Outcome:
    hit = np.zeros(b.total.shape, dtype=bool)
    enough = (b.ns >= MIN_REQUESTS) & (b.nc >= MIN_REQUESTS)
    for cand, stab, share in ((b.c5, b.s5, judgement.ALPHA_SHARE_5XX), (b.c4, b.s4, judgement.ALPHA_SHARE_4XX)):
        z_crit = NormalDist().inv_cdf(1 - ALPHA * share)
        pooled = (cand + stab) / (b.nc + b.ns)
        se = np.sqrt(pooled * (1 - pooled) * (1 / np.maximum(b.nc, 1) + 1 / np.maximum(b.ns, 1)))
        diff = cand / np.maximum(b.nc, 1) - stab / np.maximum(b.ns, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(se > 0, diff / se, 0.0)
        hit |= enough & (z > z_crit)
    return _first(hit, b.total)


def method_alarm(b: Batch) -> Outcome:
    def window(x: np.ndarray) -> np.ndarray:
        c = np.cumsum(x, axis=1, dtype=float)
        out = c.copy()
        out[:, ALARM_WINDOW:] -= c[:, :-ALARM_WINDOW]
        return out

    n = window(b.tick_nc)
    breach = np.zeros(b.total.shape, dtype=bool)
    # The threshold is fixed when the alarm is set up: twice the stable baseline measured before the rollout.
    for errs, base in ((b.tick_c5, b.p5s[0]), (b.tick_c4, b.p4s[0])):
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(n > 0, window(errs) / n, 0.0)
        breach |= rate > ALARM_FACTOR * base
    breach[:, : ALARM_WINDOW - 1] = False
    run = np.ones(b.total.shape, dtype=bool)
    for lag in range(ALARM_DATAPOINTS):
        shifted = np.zeros(b.total.shape, dtype=bool)
        shifted[:, lag:] = breach[:, : TICKS - lag]
        run &= shifted
    return _first(run, b.total)


def method_oracle(b: Batch, sc: Scenario) -> Outcome:
    if sc.oracle_kind == "4xx":
        p0, ratio, errs = b.p4s, sc.ratio_4xx, b.tick_c4
    else:
        p0, ratio, errs = b.p5s, sc.ratio_5xx, b.tick_c5
    if ratio <= 1.0:
        ratio = 2.0  # no regression to know: test against the 2x alternative
    p1 = p0 * ratio
    llr = errs * np.log(p1 / p0) + (b.tick_nc - errs) * np.log((1 - p1) / (1 - p0))
    return _first(np.cumsum(llr, axis=1) >= math.log(1 / ALPHA), b.total)


def _median(x: np.ndarray) -> float:
    return float(np.median(x))


def _fmt_req(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:,.0f}"


def run(rollouts: int, seed: int, chunk: int = 2500) -> bool:
    rng = np.random.default_rng(seed)
    names = ["judgement", "judgement 1:1", "z-test", "alarm", "oracle SPRT"]
    print(f"{rollouts:,} rollouts per scenario, {TICKS} ticks, alpha {ALPHA}, min_requests {MIN_REQUESTS}, "
          f"margin {MARGIN * 100:.2f} pp; 'judgement 1:1' is (a) with alpha split equally between 5XX and 4XX "
          f"instead of {judgement.ALPHA_SHARE_5XX:g}:{judgement.ALPHA_SHARE_4XX:g}")
    print("requests = both variants together since the step began, at the decision; median over all rollouts "
          "(a rollout never rolled back counts as infinitely many)\n")
    header = f"{'scenario':<14}{'method':<15}{'rolled back':>12}{'median requests':>17}{'x oracle':>10}"
    checks: list[tuple[str, bool]] = []
    for sc in SCENARIOS:
        outs: dict[str, list[Outcome]] = {n: [] for n in names}
        extras: list[dict] = []
        done = 0
        while done < rollouts:
            size = min(chunk, rollouts - done)
            b = simulate(sc, size, rng)
            o, extra = method_judgement(b)
            outs["judgement"].append(o)
            extras.append(extra)
            outs["judgement 1:1"].append(method_judgement(b, share_5xx=0.5)[0])
            outs["z-test"].append(method_ztest(b))
            outs["alarm"].append(method_alarm(b))
            outs["oracle SPRT"].append(method_oracle(b, sc))
            done += size
        merged = {n: Outcome(np.concatenate([o.rolled_back for o in v]), np.concatenate([o.requests for o in v]))
                  for n, v in outs.items()}
        ex = {k: np.concatenate([e[k] for e in extras]) for k in extras[0]}
        meaning = "regression: rollbacks are detections" if sc.regression else "no regression: every rollback is false"
        print(f"== {sc.name}: {sc.note}  ({meaning})")
        print(header)
        oracle_median = _median(merged["oracle SPRT"].requests)
        for n in names:
            o = merged[n]
            med = _median(o.requests)
            ratio = med / oracle_median if math.isfinite(med) and math.isfinite(oracle_median) else float("nan")
            ratio_text = f"{ratio:.2f}" if math.isfinite(ratio) else "-"
            print(f"{'':<14}{n:<15}{o.rolled_back.mean() * 100:>10.2f}% {_fmt_req(med):>16}{ratio_text:>10}")
        shifted = ex["first_shift"].mean()
        shift_med = _median(ex["shift_requests"])
        print(f"{'':<14}judgement, first decision: shift {shifted * 100:.2f}% (median requests to shift "
              f"{_fmt_req(shift_med)}), rollback {ex['first_rollback'].mean() * 100:.2f}%, "
              f"still waiting after {TICKS} ticks {ex['undecided'].mean() * 100:.2f}%")
        j = merged["judgement"]
        if not sc.regression:
            checks.append((f"{sc.name}: false rollbacks {j.rolled_back.mean() * 100:.2f}% <= alpha {ALPHA * 100:g}%",
                           j.rolled_back.mean() <= ALPHA))
        if sc.name == "at margin":
            checks.append((f"at margin: wrong shifts {shifted * 100:.2f}% <= alpha/2 {ALPHA * 50:g}% "
                           f"(the confidence sequence is time-uniform)", shifted <= ALPHA / 2))
        if sc.name == "2x worse":
            detected = j.rolled_back.mean()
            checks.append((f"2x worse: detected {detected * 100:.2f}% >= 99%", detected >= 0.99))
            ratio = _median(j.requests) / oracle_median
            checks.append((f"2x worse: median requests to detect {_fmt_req(_median(j.requests))} = {ratio:.2f}x "
                           f"the oracle's {_fmt_req(oracle_median)} (bar 1.5x)", ratio <= 1.5))
        print()
    print("Bars:")
    for text, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    return all(ok for _, ok in checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=20240501)
    parser.add_argument("--quick", action="store_true",
                        help="2,000 rollouts per scenario: noisier figures, and a false-rollback rate near alpha "
                             "may then cross the bar by chance")
    args = parser.parse_args()
    rollouts = 2000 if args.quick else args.rollouts
    started = time.perf_counter()
    ok = run(rollouts, args.seed)
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
