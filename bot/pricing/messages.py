"""What `/model pricing` says in Slack: the quote's header, the offers, the comparison with what an endpoint
runs on now, and the short replies and notes (no stored prices, unreadable endpoint, chart refused).

Pure functions from a Quote and plain data to text and Block Kit blocks; nothing here reads the database or calls
Slack. `text` carries everything the blocks say: it is the notification.
"""

from __future__ import annotations

from bot.pricing.service import HOURS_PER_MONTH, Offer, Quote
from bot.slack.formatting import age, money
from bot.slack.text import escape

HEADER_MAX = 150  # Slack's limit for a header block's text


def no_prices(reason: object) -> str:
    """The reply when the region has no stored price list yet."""
    return f":information_source: {reason}"


def endpoint_unreadable(endpoint: str, exc: object) -> str:
    """The note when SageMaker would not say what the model's endpoint runs on."""
    return f"Could not read what `{escape(endpoint)}` runs on now: {exc}"


def no_instance_type(endpoint: str) -> str:
    """The note when the endpoint has no instance-backed variant to compare with."""
    return f"`{escape(endpoint)}` reports no instance type (serverless or still creating)."


def chart_refused(exc: BaseException) -> str:
    """The note when Slack would not take the chart upload; the reply still goes out."""
    return f":warning: Slack did not take the chart ({exc.__class__.__name__}); the prices above are complete."


def comparison(q: Quote, current_type: str, count: int, current: Offer | None) -> str:
    times = f"{count} × " if count > 1 else ""
    if current is None:
        return f"The endpoint runs on {times}`{current_type}`, which has no stored price in {q.region}."
    pay = f"You pay {money(current.usd_per_month * count)} a month on {times}`{current_type}`"
    if not q.offers:
        return pay + "."
    best = q.offers[0]
    if best.instance_type == current_type:
        return pay + ", already the cheapest instance that fits."
    if not current.fits(q.need):
        return (pay + f", which is below the registered needs; `{best.instance_type}` fits for "
                f"{money(best.usd_per_month * count)}.")
    saving = (current.usd_per_month - best.usd_per_month) * count
    if saving <= 0:
        return pay + f"; `{best.instance_type}` fits for {money(best.usd_per_month * count)}."
    return (pay + f"; `{best.instance_type}` fits for {money(best.usd_per_month * count)} "
            f"(saves {money(saving)} a month).")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _offer_section(rank: int, o: Offer) -> dict:
    mark = " :star: cheapest" if rank == 1 else ""
    return {
        "type": "section",
        "text": {"type": "mrkdwn", "text": f"*{rank}. `{o.instance_type}`*{mark}\n{o.specs()}"},
        "fields": [
            {"type": "mrkdwn", "text": f"*{money(o.usd_per_hour)}* an hour"},
            {"type": "mrkdwn", "text": f"*{money(o.usd_per_month)}* a month"},
        ],
    }


def render(q: Quote, *, subject: str, notes: list[str]) -> tuple[str, list[dict]]:
    """(fallback text, Block Kit blocks) for a quote."""
    header = f"SageMaker hosting prices for {subject}"
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": header[:HEADER_MAX], "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn",
                                      "text": f"At least *{q.need.describe()}* in *{q.region}*, on-demand."}},
    ]
    lines: list[str] = []
    if q.stale():
        lines.append(f":warning: These prices are {age(q.age())} old; run "
                     f"`modelbot prices refresh --region {q.region}` for current ones.")
    lines += notes
    if q.offers:
        best = q.offers[0]
        summary = (f"Cheapest fit for {q.need.describe()} in {q.region}: {best.instance_type} at "
                   f"{money(best.usd_per_hour)}/h ({money(best.usd_per_month)} a month).")
    else:
        big = q.largest
        summary = (f"No instance in {q.region} has at least {q.need.describe()}; the largest available is "
                   f"{big.instance_type} ({big.specs()}) at {money(big.usd_per_hour)}/h.")
        lines.insert(0, ":x: " + summary.replace(big.instance_type, f"`{big.instance_type}`"))
    for line in lines:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": line}})
    if q.offers:
        blocks.append({"type": "divider"})
        blocks += [_offer_section(i, o) for i, o in enumerate(q.offers, start=1)]
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text":
                   f"{_sentence(q.freshness())}. A month is {HOURS_PER_MONTH} hours."}]})
    text = " ".join([summary] + [n for n in lines if not n.startswith(":x:")] + [_sentence(q.freshness()) + "."])
    return text, blocks
