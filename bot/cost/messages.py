"""What `/model cost` and the cost parts of `/model status` say. Pure: data in, mrkdwn and Block Kit out."""

from __future__ import annotations

from datetime import datetime

from bot.cost.costs import ModelCost, VariantCost
from bot.cost.rightsizing import HEADROOM, MIN_POINTS, PERIOD_SECONDS, WINDOW_DAYS, Recommendation
from bot.cost.service import Detail, Overview
from bot.pricing.service import HOURS_PER_MONTH
from bot.slack.formatting import age, money
from bot.slack.text import escape
from bot.store.base import utcnow

SECTION_LIMIT = 3000
LISTED = 40  # models named one per line in the overview; the rest are counted
MONTH_NOTE = (f"On-demand hosting prices from modelbot's price table; a month is {HOURS_PER_MONTH} hours "
              f"(8,760 a year / 12). Savings Plans, storage and data transfer are not included.")
ROLE_WORDS = {"production": "", "candidate": "candidate ", "baking": "kept while baking ", "idle": "idle at 0% "}


def per_month(usd: float | None) -> str:
    return "unknown" if usd is None else f"{money(usd)}/month"


def variant_line(v: VariantCost) -> str:
    """"`v41` 2 × ml.m5.large $167.90/month", or why its cost is unknown."""
    what = f"{v.instance_count} × `{escape(v.instance_type)}`" if v.instance_type else (
        f"{v.instance_count} instance{'s' if v.instance_count != 1 else ''}" if v.instance_count is not None else "")
    head = f"`{escape(v.variant)}` {ROLE_WORDS.get(v.role, '')}{what}".rstrip()
    if v.usd_per_month is None:
        return f"{head}: cost unknown, {escape(v.unknown or 'no price')}"
    return f"{head} {money(v.usd_per_month)}/month"


def model_summary(cost: ModelCost, *, reason: bool = True) -> str:
    """For a /model status line: "$X/month", with what is unknown (and why, unless the variants say it)."""
    if not cost.variants:
        return ""
    known = [v for v in cost.variants if v.usd_per_month is not None]
    if not known:
        return f"cost unknown: {escape(cost.unknown[0].unknown or 'no price')}" if reason else "cost unknown"
    text = f"{money(cost.usd_per_month)}/month"
    if cost.unknown:
        text += f" + {len(cost.unknown)} variant{'s' if len(cost.unknown) != 1 else ''} of unknown cost"
    return text


def _freshness(as_of: dict[str, datetime] | datetime | None) -> str:
    if not as_of:
        return ""
    when = min(as_of.values()) if isinstance(as_of, dict) else as_of
    return f"Prices fetched {age(utcnow() - when)} ago. "


def _chunks(lines: list[str]) -> list[dict]:
    blocks, chunk = [], []
    for line in lines:
        if chunk and len("\n".join(chunk + [line])) > SECTION_LIMIT:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(chunk)}})
            chunk = []
        chunk.append(line[:SECTION_LIMIT])
    if chunk:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(chunk)}})
    return blocks


def render_overview(o: Overview) -> tuple[str, list[dict]]:
    candidates, baking, idle = o.part("candidate"), o.part("baking"), o.part("idle")
    total = (f"*Total: {money(o.total)}/month* — candidates {money(candidates)}, baking {money(baking)}"
             + (f", idle variants {money(idle)}" if idle else ""))
    unknown = sum(len(m.unknown) for m in o.models)
    if unknown:
        total += f" (+{unknown} variant{'s' if unknown != 1 else ''} of unknown cost, not in the total)"
    lines = []
    for rank, m in enumerate(o.models[:LISTED], start=1):
        spent = o.spent.get(m.model)
        tail = f" — last {o.days} days {money(spent)}" if spent is not None else ""
        parts = " · ".join(variant_line(v) for v in m.variants)
        lines.append(f"{rank}. *{escape(m.model)}* {model_summary(m, reason=False)} — {parts}{tail}")
    if len(o.models) > LISTED:
        rest = o.models[LISTED:]
        lines.append(f"…and {len(rest)} more models, {money(sum(m.usd_per_month for m in rest))}/month together "
                     "(`/model cost <model>` for one).")
    if not o.models:
        lines.append("No instances recorded yet: the worker (`python -m jobs`) records each endpoint's instances as "
                     "it reads them; ask again after its next pass.")
    if o.not_seen:
        names = ", ".join(escape(n) for n in o.not_seen[:10]) + (" …" if len(o.not_seen) > 10 else "")
        lines.append(f"_Not read yet: {names}._")
    title = "Model cost, largest first"
    note = _freshness(o.prices_as_of) + MONTH_NOTE
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": title}},
              {"type": "section", "text": {"type": "mrkdwn", "text": total}}]
    blocks += _chunks(lines)
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
    text = "\n".join([title, total.replace("*", "")] + lines + [note])
    return text[:3900], blocks[:50]


def _hours(h: float) -> str:
    if h < 0.05:
        return "under 0.1"
    return f"{h:,.0f}" if h >= 10 else f"{h:,.1f}"


def recommendation_line(r: Recommendation) -> str:
    load, cur = r.load, r.current
    basis = (f"CPU p95 {load.cpu_p95:.0f}% ({r.vcpu_busy:.2f} of {cur.vcpu:g} vCPUs busy), memory p95 "
             f"{load.memory_p95:.0f}% ({r.memory_used_gib:.1f} of {cur.memory_gib:g} GiB); averages "
             f"{load.cpu_average:.0f}% and {load.memory_average:.0f}%; {load.points:,} five-minute maxima"
             if load.cpu_p95 is not None and load.memory_p95 is not None else "")
    name = f"`{escape(r.variant)}` ({r.count} × `{escape(cur.instance_type)}`)"
    if r.verdict == "cheaper":
        p = r.pick
        return (f":bulb: {name} could save *{money(r.saving_per_month)}/month* on `{escape(p.instance_type)}` "
                f"({p.vcpu:g} vCPU, {p.memory_gib:g} GiB, {money(p.usd_per_hour)}/h): {basis}.")
    if r.verdict == "larger":
        p = r.pick
        return (f":warning: {name} {r.why}: {basis}. The cheapest type that fits with {HEADROOM:.0%} headroom is "
                f"`{escape(p.instance_type)}` (+{money(-r.saving_per_month)}/month).")
    if r.verdict == "right":
        return f":white_check_mark: {name} is {r.why}: {basis}."
    return f":grey_question: {name} not sized: {escape(r.why)}."


def render_detail(d: Detail, *, sized: bool) -> tuple[str, list[dict]]:
    m = d.model
    title = f"Cost of {m.name}"
    lines: list[str] = []
    if d.now is None or not d.now.variants:
        lines.append("No instances recorded for its endpoint yet: the worker records them as it reads the endpoint.")
    else:
        hourly = sum(v.usd_per_hour or 0.0 for v in d.now.variants)
        lines.append(f"*Now: {model_summary(d.now)}* ({money(hourly)} an hour) on `{escape(m.endpoint)}` in {m.region}")
        lines += [f"• {variant_line(v)}" for v in d.now.variants]
    since = d.since
    short = d.first_seen is not None and d.first_seen > d.since
    span = f"*Last {d.days} days*" + (f" (history since {d.first_seen:%Y-%m-%d %H:%M} UTC)" if short else "")
    if d.spend:
        unknown = [v for v in d.spend if v.usd is None]
        lines.append(f"{span}: {_hours(d.hours)} instance hours, {money(d.spent)}"
                     + (" + instances of unknown price" if unknown else "") + " at today's prices")
        for v in d.spend:
            cost = (money(v.usd) if v.usd >= 0.01 else "under $0.01") if v.usd is not None else \
                f"cost unknown, {escape(v.unknown or 'no price')}"
            lines.append(f"• `{escape(v.variant)}` {('`' + escape(v.instance_type) + '` ') if v.instance_type else ''}"
                         f"{_hours(v.hours)} instance hours, {cost}")
    else:
        lines.append(f"{span}: no instances recorded since {since:%Y-%m-%d}.")
    if sized:
        lines.append(f"*Right-sizing* (p95 over {WINDOW_DAYS} days of {PERIOD_SECONDS // 60}-minute maxima, "
                     f"{HEADROOM:.0%} headroom, same instance count; never applied by modelbot):")
        lines += [recommendation_line(r) for r in d.recommendations] or ["_No variant to size._"]
        lines += [f"• {escape(n)}" for n in d.notes]
    note = (_freshness(d.prices_as_of) + MONTH_NOTE + " CloudWatch's percentile statistics are not used (the local "
            f"AWS emulator has none): modelbot takes the p95 of the datapoints itself; at least {MIN_POINTS} are "
            "needed. To change the instance type, set `instance_type` in the model's pipeline and deploy.")
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": title}}] + _chunks(lines)
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note[:SECTION_LIMIT]}]})
    return "\n".join([title] + lines)[:3900], blocks

