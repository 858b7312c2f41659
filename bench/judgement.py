"""The rollout judgement on simulated rollouts judged every tick, against Wald's SPRT knowing the true rates (the
oracle) and against the judgement before issue 22 (bench/_judgement_previous.py), all in one run.

Setting (README, "The judgement"; issue 22): stable 0.5% 5XX and 0.2% 4XX, the candidate at 10% of 1,000
requests a tick (each request routed at random), alpha 0.01, min_requests 500, margin 0.2 pp, up to 400 ticks
in a step. "requests" are requests to both variants together since the step began, at the tick of the
decision; medians are over all rollouts (one never decided counts as infinitely many).

  (a) judgement   bot.rollouts.judgement.judge_vector: the code judge() runs, alpha for the whole rollout
                  (3 judged steps: 10%, 25%, 50%)
  (b) previous    the judgement before issue 22: alpha per step, mixture over relative risks, split 3:1
                  between 5XX and 4XX; shift by a two-sided confidence sequence
  (c) oracle      Wald's SPRT knowing the rates. Rollback: candidate errors, H0 the stable's rate, H1 the
                  candidate's true rate. Shift: H0 "worse by the margin" (stable + 0.2 pp), H1 "equal",
                  on 5XX (the slower type; the 4XX one decides sooner).

Sections: 1. one step at 10% (rollbacks and shifts); 2. a whole 3-step rollout of an equal candidate (every
false rollback in any step counts); 3. latency (per-minute ModelLatency aggregates, the latency test alone).

  python bench/judgement.py [--rollouts N] [--seed S] [--quick]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _judgement_previous as previous  # noqa: E402
from bot.rollouts import judgement, latency_test  # noqa: E402

TICKS = 400
REQUESTS_PER_TICK = 1000
CANDIDATE_SHARE = 0.10
STEPS = (10, 25, 50, 100)
STABLE_5XX = 0.005
STABLE_4XX = 0.002
ALPHA = 0.01
MIN_REQUESTS = 500
MARGIN = 0.002
GOAL = 1.3  # issue 22: shift and 2x detection within 1.3x the oracle's requests


def _flat(value: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda t: np.full(t.shape, value, dtype=float)


def _diurnal(low: float, high: float) -> Callable[[np.ndarray], np.ndarray]:
    """From `low` up to `high` at mid-step and back: a busy afternoon within one step."""
    return lambda t: low + (high - low) * np.sin(np.pi * t / TICKS)


@dataclass(frozen=True)
class Scenario:
    name: str
    regression: bool  # False: any rollback is a false rollback
    ratio_5xx: float = 1.0  # candidate rate = ratio * stable rate, tick by tick
    ratio_4xx: float = 1.0
    stable_5xx: Callable[[np.ndarray], np.ndarray] = _flat(STABLE_5XX)
    traffic: Callable[[np.ndarray], np.ndarray] = _flat(REQUESTS_PER_TICK)
    note: str = ""


SCENARIOS = [
    Scenario("equal", False, note="0.5% vs 0.5%"),
    Scenario("better", False, ratio_5xx=0.7, note="candidate 0.35%"),
    Scenario("drifting", False, stable_5xx=_diurnal(0.005, 0.0125), traffic=_diurnal(600, 1400),
             note="both 0.5% -> 1.25% -> 0.5%, traffic 600 -> 1,400 -> 600 a tick"),
    Scenario("low traffic", False, traffic=_flat(100), note="100 requests a tick"),
    Scenario("at margin", True, ratio_5xx=1.4, note="candidate 0.7%: +0.2 pp, exactly the margin"),
    Scenario("1.5x worse", True, ratio_5xx=1.5, note="candidate 0.75%"),
    Scenario("2x worse", True, ratio_5xx=2.0, note="candidate 1.0%"),
    Scenario("3x worse", True, ratio_5xx=3.0, note="candidate 1.5%"),
    Scenario("10x worse", True, ratio_5xx=10.0, note="candidate 5%"),
    Scenario("4XX 2x worse", True, ratio_4xx=2.0, note="candidate 4XX 0.4%, 5XX equal"),
]


@dataclass
class Batch:
    total: np.ndarray  # cumulative requests, both variants (R, T)
    ns: np.ndarray  # cumulative counts since the step began (R, T)
    s5: np.ndarray
    s4: np.ndarray
    nc: np.ndarray
    c5: np.ndarray
    c4: np.ndarray
    tick_nc: np.ndarray  # per-tick candidate requests and errors, for the oracles
    tick_c5: np.ndarray
    tick_c4: np.ndarray
    p5s: np.ndarray  # the stable's true rates per tick (T,)


def simulate(sc: Scenario, rollouts: int, rng: np.random.Generator, share: float = CANDIDATE_SHARE,
             ticks: int = TICKS) -> Batch:
    t = np.arange(ticks, dtype=float)
    traffic = np.rint(sc.traffic(t)).astype(np.int64)
    p5s, p4s = sc.stable_5xx(t), np.full(ticks, STABLE_4XX)
    shape = (rollouts, ticks)
    nc = rng.binomial(np.broadcast_to(traffic, shape), share)
    ns = traffic - nc

    def errors(n, p5, p4):  # a request fails with 5XX, or else perhaps 4XX: the two are exclusive
        e5 = rng.binomial(n, np.broadcast_to(p5, shape))
        return e5, rng.binomial(n - e5, np.broadcast_to(p4 / (1 - p5), shape))

    e5s, e4s = errors(ns, p5s, p4s)
    e5c, e4c = errors(nc, p5s * sc.ratio_5xx, p4s * sc.ratio_4xx)
    cum = lambda a: np.cumsum(a, axis=1, dtype=float)  # noqa: E731
    return Batch(np.broadcast_to(np.cumsum(traffic, dtype=float), shape), cum(ns), cum(e5s), cum(e4s), cum(nc),
                 cum(e5c), cum(e4c), nc, e5c, e4c, p5s)


def _first(hit: np.ndarray, total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(decided at any tick, requests at the first such tick or inf), per rollout."""
    any_hit = hit.any(axis=1)
    idx = hit.argmax(axis=1)
    return any_hit, np.where(any_hit, total[np.arange(len(idx)), idx], np.inf)


def run_new(b: Batch, step: int = 0, carry=None) -> judgement.VectorJudgement:
    return judgement.judge_vector(b.ns, b.s5, b.s4, b.nc, b.c5, b.c4, min_requests=MIN_REQUESTS, margin=MARGIN,
                                  alpha=ALPHA, step=step, steps=judgement.judged_steps(STEPS), carry=carry)


def run_previous(b: Batch):
    return previous.judge_vector(b.ns, b.s5, b.s4, b.nc, b.c5, b.c4, min_requests=MIN_REQUESTS, margin=MARGIN,
                                 alpha=ALPHA)


def oracle_rollback(b: Batch, sc: Scenario) -> np.ndarray:
    kind4 = sc.ratio_4xx != 1.0
    p0 = np.full(b.p5s.shape, STABLE_4XX) if kind4 else b.p5s
    ratio = sc.ratio_4xx if kind4 else sc.ratio_5xx
    ratio = ratio if ratio > 1.0 else 2.0  # no regression to know: test against 2x
    errs = b.tick_c4 if kind4 else b.tick_c5
    p1 = p0 * ratio
    llr = errs * np.log(p1 / p0) + (b.tick_nc - errs) * np.log((1 - p1) / (1 - p0))
    return np.cumsum(llr, axis=1) >= math.log(1 / ALPHA)


def oracle_shift(b: Batch) -> np.ndarray:
    p0, p1, errs = b.p5s + MARGIN, b.p5s, b.tick_c5
    llr = errs * np.log(p1 / p0) + (b.tick_nc - errs) * np.log((1 - p1) / (1 - p0))
    return np.cumsum(llr, axis=1) >= math.log(1 / ALPHA)


def _first_decision(action: np.ndarray, code_wait: int, code_shift: int) -> np.ndarray:
    decided = action != code_wait
    return np.where(decided.any(axis=1), action[np.arange(len(action)), decided.argmax(axis=1)], -1) == code_shift


def _median(x) -> float:
    return float(np.median(np.concatenate(x) if isinstance(x, list) else x))


def _req(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:,.0f}"


def _ratio(x: float, oracle: float) -> str:
    return f"{x / oracle:.2f}x" if math.isfinite(x) and math.isfinite(oracle) and oracle > 0 else "-"


# ---- section 1: one step -----------------------------------------------------------------------------------

def one_step(rollouts: int, rng: np.random.Generator, chunk: int) -> tuple[dict, list[str]]:
    figures: dict = {}
    lines = [f"{'scenario':<14}{'method':<11}{'rolled back':>12}{'median requests':>17}{'x oracle':>10}"
             f"{'shifted first':>15}{'median to shift':>17}{'x oracle':>10}"]
    for sc in SCENARIOS:
        acc: dict[str, list] = {k: [] for k in ("new_rb", "new_rbreq", "new_sh", "new_shreq", "old_rb",
                                                 "old_rbreq", "old_sh", "old_shreq", "or_rb", "or_rbreq",
                                                 "or_shreq", "new_anyshift")}
        done = 0
        while done < rollouts:
            size = min(chunk, rollouts - done)
            b = simulate(sc, size, rng)
            for tag, v, codes in (("new", run_new(b), (judgement.WAIT, judgement.SHIFT, judgement.ROLLBACK)),
                                  ("old", run_previous(b), (previous.WAIT, previous.SHIFT, previous.ROLLBACK))):
                rb, rbreq = _first(v.action == codes[2], b.total)
                shifted_first = _first_decision(v.action, codes[0], codes[1])
                _, shreq = _first(v.action == codes[1], b.total)
                acc[f"{tag}_rb"].append(rb)
                acc[f"{tag}_rbreq"].append(rbreq)
                acc[f"{tag}_sh"].append(shifted_first)
                acc[f"{tag}_shreq"].append(np.where(shifted_first, shreq, np.inf))
                if tag == "new":
                    acc["new_anyshift"].append((v.action == codes[1]).any(axis=1))
            rb, rbreq = _first(oracle_rollback(b, sc), b.total)
            acc["or_rb"].append(rb)
            acc["or_rbreq"].append(rbreq)
            acc["or_shreq"].append(_first(oracle_shift(b), b.total)[1])
            done += size
        m = {k: np.concatenate(v) for k, v in acc.items()}
        oracle_rb, oracle_sh = _median(m["or_rbreq"]), _median(m["or_shreq"])
        figures[sc.name] = f = {
            "new_rolled_back": m["new_rb"].mean(), "new_rb_median": _median(m["new_rbreq"]),
            "old_rolled_back": m["old_rb"].mean(), "old_rb_median": _median(m["old_rbreq"]),
            "oracle_rolled_back": m["or_rb"].mean(), "oracle_rb_median": oracle_rb,
            "new_shift_first": m["new_sh"].mean(), "new_shift_median": _median(m["new_shreq"]),
            "old_shift_first": m["old_sh"].mean(), "old_shift_median": _median(m["old_shreq"]),
            "oracle_shift_median": oracle_sh, "new_any_shift": m["new_anyshift"].mean()}
        lines.append(f"{sc.name:<14}{'':<11}({sc.note}; {'regression' if sc.regression else 'no regression'})")
        for tag, name in (("new", "judgement"), ("old", "previous")):
            lines.append(f"{'':<14}{name:<11}{f[f'{tag}_rolled_back'] * 100:>11.2f}%"
                         f"{_req(f[f'{tag}_rb_median']):>17}{_ratio(f[f'{tag}_rb_median'], oracle_rb):>10}"
                         f"{f[f'{tag}_shift_first'] * 100:>14.2f}%{_req(f[f'{tag}_shift_median']):>17}"
                         f"{_ratio(f[f'{tag}_shift_median'], oracle_sh):>10}")
        lines.append(f"{'':<14}{'oracle':<11}{f['oracle_rolled_back'] * 100:>11.2f}%{_req(oracle_rb):>17}"
                     f"{'':>10}{'':>15}{_req(oracle_sh):>17}")
    return figures, lines


# ---- section 2: a whole rollout ------------------------------------------------------------------------------

def whole_rollout(rollouts: int, rng: np.random.Generator, chunk: int, ticks: int) -> dict:
    """An equal candidate through the three judged steps: each step lasts until its shift (a step not shifted
    after `ticks` ticks is continued by hand, the strictest view); a rollback in any step is a false one."""
    judged = [s / 100 for s in STEPS if s < 100]
    sc = SCENARIOS[0]
    false_new = false_old = 0
    per_step_new = np.zeros(len(judged))
    per_step_old = np.zeros(len(judged))
    done = 0
    while done < rollouts:
        size = min(chunk, rollouts - done)
        carry = judgement.initial_carry(len(judged), (size,))
        alive_new = np.ones(size, dtype=bool)
        alive_old = np.ones(size, dtype=bool)
        for step, share in enumerate(judged):
            b = simulate(sc, size, rng, share=share, ticks=ticks)
            v = run_new(b, step=step, carry=carry)
            end = np.where((v.action == judgement.SHIFT).any(1), (v.action == judgement.SHIFT).argmax(1), ticks - 1)
            before = np.arange(ticks)[None, :] <= end[:, None]
            hit = ((v.action == judgement.ROLLBACK) & before).any(1) & alive_new
            per_step_new[step] += hit.sum()
            alive_new &= ~hit
            carry = judgement.carry_after(b.ns, b.s5, b.s4, b.nc, b.c5, b.c4, carry=carry, step=step,
                                          steps=len(judged), end=end)
            o = run_previous(b)
            end = np.where((o.action == previous.SHIFT).any(1), (o.action == previous.SHIFT).argmax(1), ticks - 1)
            before = np.arange(ticks)[None, :] <= end[:, None]
            hit = ((o.action == previous.ROLLBACK) & before).any(1) & alive_old
            per_step_old[step] += hit.sum()
            alive_old &= ~hit
        false_new += (~alive_new).sum()
        false_old += (~alive_old).sum()
        done += size
    return {"new": false_new / rollouts, "old": false_old / rollouts, "new_steps": per_step_new / rollouts,
            "old_steps": per_step_old / rollouts}


# ---- section 3: latency ---------------------------------------------------------------------------------------

LATENCY_MARGIN = 0.2
LATENCY_MINUTES = 120


def latency_minutes(rollouts: int, rng: np.random.Generator, ratio: float, per_minute: int = 1000,
                    minutes: int = LATENCY_MINUTES):
    """Per-minute ModelLatency aggregates: requests with lognormal latencies (50 ms, coefficient of variation
    1), minute means by the central limit theorem, a slow-down shared by both variants each minute (load;
    sd 20%), and a little noise of each variant's own (sd 3%). The candidate's latency is `ratio` x stable's."""
    shape = (rollouts, minutes)
    nc = rng.binomial(per_minute, CANDIDATE_SHARE, shape).astype(float)
    ns = per_minute - nc
    shared = np.exp(rng.normal(0, 0.2, shape))
    cv = 1.0

    def minute_sum(n, scale):
        mean = 50_000.0 * scale * shared * np.exp(rng.normal(0, 0.03, shape))
        return np.maximum(n * mean * (1 + cv / np.sqrt(np.maximum(n, 1)) * rng.standard_normal(shape)), 0.0)

    return minute_sum(ns, 1.0), ns, minute_sum(nc, ratio), nc


def latency_section(rollouts: int, rng: np.random.Generator) -> dict:
    """The latency test alone, judged after every minute of a 10% step: its alpha is LATENCY_SHARE of the
    rollout's times the first step's share (rollback) and alpha (shift), as in judge_vector."""
    steps = judgement.judged_steps(STEPS)
    rollback_level = math.log(1 / (ALPHA * judgement.LATENCY_SHARE * judgement.step_shares(steps)[0]))
    shift_level = math.log(1 / ALPHA)
    out = {}
    for name, ratio in (("equal", 1.0), ("at margin", 1 + LATENCY_MARGIN), ("1.5x slower", 1.5),
                        ("3x slower", 3.0)):
        ss, sc_, cs, cc = latency_minutes(rollouts, rng, ratio)
        worse = np.empty(ss.shape)
        within = np.empty(ss.shape)
        for k in range(ss.shape[1]):  # what the judgement sees after minute k: every minute so far
            s = latency_test.stats(ss[:, :k + 1], sc_[:, :k + 1], cs[:, :k + 1], cc[:, :k + 1], LATENCY_MARGIN)
            worse[:, k], within[:, k] = latency_test.directional(s)
        minutes = np.arange(1, ss.shape[1] + 1, dtype=float)[None, :].repeat(rollouts, 0)
        rb, rb_min = _first(worse >= rollback_level, minutes)
        sh, sh_min = _first(within >= shift_level, minutes)
        out[name] = {"rolled_back": rb.mean(), "rb_minutes": _median(rb_min), "shifted": sh.mean(),
                     "shift_minutes": _median(sh_min)}
    return out


# ---- the run ---------------------------------------------------------------------------------------------------

def run(rollouts: int, seed: int, quick: bool) -> bool:
    rng = np.random.default_rng(seed)
    chunk = 2000
    started = time.perf_counter()
    print(f"{rollouts:,} rollouts per scenario; one step at {CANDIDATE_SHARE:.0%} of {REQUESTS_PER_TICK:,} requests "
          f"a tick for {TICKS} ticks; alpha {ALPHA}, min_requests {MIN_REQUESTS}, margin {MARGIN * 100:.2f} pp\n")
    print("1. One step. 'rolled back': at any of the ticks, shifts ignored (the strictest view of false "
          "rollbacks);\n   'shifted first': the first decision was a shift; medians of requests at the decision.\n")
    figures, lines = one_step(rollouts, rng, chunk)
    print("\n".join(lines))
    t1 = time.perf_counter() - started

    rollout_runs = max(rollouts // 2, 200)
    print(f"\n2. A whole rollout of an equal candidate ({rollout_runs:,} rollouts; steps "
          f"{', '.join(f'{s:g}%' for s in STEPS if s < 100)}; each until its shift, or {TICKS} ticks and then "
          "continued):")
    whole = whole_rollout(rollout_runs, rng, chunk, TICKS)
    for tag, name in (("new", "judgement"), ("old", "previous")):
        steps = ", ".join(f"{x * 100:.2f}%" for x in whole[f"{tag}_steps"])
        print(f"   {name:<10} false rollbacks in the rollout {whole[tag] * 100:.2f}% (by step: {steps})")

    lat_runs = max(rollouts // 5, 200)
    print(f"\n3. Latency alone ({lat_runs:,} rollouts, 1,000 requests a minute, candidate at 10%, margin "
          f"+{LATENCY_MARGIN:.0%}, judged every minute for {LATENCY_MINUTES} minutes):")
    lat = latency_section(lat_runs, rng)
    for name, f in lat.items():
        print(f"   {name:<12} rolled back {f['rolled_back'] * 100:6.2f}% (median minute {_req(f['rb_minutes'])}), "
              f"shifted {f['shifted'] * 100:6.2f}% (median minute {_req(f['shift_minutes'])})")

    eq, margin, two = figures["equal"], figures["at margin"], figures["2x worse"]
    checks = [
        (f"false rollbacks over a whole 3-step rollout {whole['new'] * 100:.2f}% <= alpha {ALPHA:.0%}",
         whole["new"] <= ALPHA),
        (f"false shifts of a candidate at the margin {margin['new_any_shift'] * 100:.2f}% <= alpha {ALPHA:.0%} "
         "(any shift in 400 ticks, rollbacks ignored)", margin["new_any_shift"] <= ALPHA),
        (f"shift of an equal candidate: median {_req(eq['new_shift_median'])} requests = "
         f"{eq['new_shift_median'] / eq['oracle_shift_median']:.2f}x the oracle's {_req(eq['oracle_shift_median'])} "
         f"(goal {GOAL}x)", eq["new_shift_median"] <= GOAL * eq["oracle_shift_median"]),
        (f"2x regression: median {_req(two['new_rb_median'])} requests = "
         f"{two['new_rb_median'] / two['oracle_rb_median']:.2f}x the oracle's {_req(two['oracle_rb_median'])} "
         f"(goal {GOAL}x), detected {two['new_rolled_back'] * 100:.2f}%",
         two["new_rb_median"] <= GOAL * two["oracle_rb_median"] and two["new_rolled_back"] >= 0.99),
        (f"latency: false rollbacks {lat['equal']['rolled_back'] * 100:.2f}% and at the margin "
         f"{lat['at margin']['rolled_back'] * 100:.2f}% (rollbacks) / {lat['at margin']['shifted'] * 100:.2f}% "
         f"(shifts) <= alpha", max(lat["equal"]["rolled_back"], lat["at margin"]["rolled_back"],
                                   lat["at margin"]["shifted"]) <= ALPHA),
    ]
    print("\nBars" + (" (quick run: too few rollouts to hold anyone to them; printed, not enforced)" if quick else "")
          + ":")
    for text, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    print(f"\n{time.perf_counter() - started:.0f} s (section 1: {t1:.0f} s)")
    return quick or all(ok for _, ok in checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=20240501)
    parser.add_argument("--quick", action="store_true", help="a few seconds: 300 rollouts, bars not enforced")
    args = parser.parse_args()
    return 0 if run(300 if args.quick else args.rollouts, args.seed, args.quick) else 1


if __name__ == "__main__":
    sys.exit(main())
