"""The judgement's one sentence for Slack: what was decided and the numbers that decided it.

Reads the evidence by its fields (bot/rollouts/judgement.py's Evidence), so it needs nothing from there.
"""

from __future__ import annotations

import math


def _pct(rate: float) -> str:
    return "0%" if rate == 0 else f"{rate * 100:.3g}%"


def _pp(x: float, sign: bool = True) -> str:
    return f"{x * 100:+.2f}" if sign else f"{x * 100:.2f}"


def _count(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.1f}"


def evalue_text(e: float) -> str:
    return f"{e:.3g}" if e < 1e6 else f"10^{math.log10(e):.0f}"


def _ms(microseconds: float | None) -> str:
    if microseconds is None:
        return "?"
    ms = microseconds / 1000.0
    return f"{ms:.3g} ms" if ms < 1000 else f"{ms:,.0f} ms"


def _kind(ev, kind: str, with_bound: bool = True) -> str:
    stable_rate = getattr(ev, f"stable_rate_{kind}")
    cand_rate = getattr(ev, f"candidate_rate_{kind}")
    text = f"{kind.upper()} rate candidate {_pct(cand_rate)} vs stable {_pct(stable_rate)}"
    if with_bound:
        upper = getattr(ev, f"upper_{kind}")
        text += f" ({_pp(cand_rate - stable_rate)} pp, upper bound {_pp(upper)} pp)"
    return text


def latency_text(ev, margin: float) -> str:
    """'latency candidate 57.1 ms vs stable 50 ms (+14.2%, margin +20%, 12 min)'."""
    if not ev.latency_minutes:
        return f"latency: no minute with enough requests on both variants yet (margin +{margin:.0%})"
    change = ""
    if ev.latency_stable and ev.latency_candidate is not None:
        change = f"{ev.latency_candidate / ev.latency_stable - 1:+.1%}, "
    return (f"latency candidate {_ms(ev.latency_candidate)} vs stable {_ms(ev.latency_stable)} "
            f"({change}margin +{margin:.0%}, {ev.latency_minutes} min)")


def reason(action: str, failing: str | None, ev, stable, candidate, settings, minutes: float) -> str:
    alpha, margin = settings.alpha, settings.margin
    latency_margin = getattr(settings, "latency_margin", None)
    judged_latency = latency_margin is not None and ev.latency_statistic is not None
    if action == "rollback" and failing == "latency":
        return (f"{latency_text(ev, latency_margin)}: slower than the margin allows at alpha {alpha:g} over the "
                f"rollout (evidence {evalue_text(ev.latency_statistic)} >= {ev.latency_threshold:.3g}); "
                f"{_kind(ev, '5xx', False)}, {_kind(ev, '4xx', False)}")
    if action == "rollback":
        rest = _kind(ev, "5xx" if failing == "4xx" else "4xx", with_bound=False)
        return (f"{_kind(ev, failing)}: candidate worse at alpha {alpha:g} over the rollout "
                f"(evidence {evalue_text(ev.statistic)} >= {ev.threshold:.3g}); {rest}")
    lat = f"; {latency_text(ev, latency_margin)}" if judged_latency else ""
    if action == "shift":
        within = f"; latency within its +{latency_margin:.0%} margin" if judged_latency else ""
        return (f"increase below the {_pp(margin, sign=False)} pp margin for both error types: "
                f"{_kind(ev, '5xx')}, {_kind(ev, '4xx')}{within}{lat}")
    fewest = min(stable.requests, candidate.requests)
    if fewest < settings.min_requests:
        status = (f"fewer than {settings.min_requests:,} requests per variant (candidate "
                  f"{_count(candidate.requests)}, stable {_count(stable.requests)}); so far "
                  f"{_kind(ev, '5xx', with_bound=False)}, {_kind(ev, '4xx', with_bound=False)}{lat}")
    else:
        blocking = [k.upper() for k in ("5xx", "4xx")
                    if getattr(ev, f"shift_statistic_{k}") < ev.shift_threshold]
        pending = (f"{' and '.join(blocking)} upper bound not yet below the {_pp(margin, sign=False)} pp margin"
                   if blocking else "")
        if judged_latency and ev.latency_shift_statistic < ev.shift_threshold:
            pending += ("; " if pending else "") + "latency not yet shown within its margin"
        status = (f"{_kind(ev, '5xx')}, {_kind(ev, '4xx')}{lat}; {pending or 'nothing pending'}, evidence "
                  f"{evalue_text(ev.statistic)} of {ev.threshold:.3g} needed to roll back")
    if action == "pause":
        return (f"still undecided after {minutes:.0f} min (limit {settings.max_step_minutes:g} min), "
                f"a human decides: {status}")
    return status if fewest < settings.min_requests else f"inconclusive: {status}"
