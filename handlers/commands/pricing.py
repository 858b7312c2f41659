"""`/model pricing`: the cheapest SageMaker hosting instances that fit, from the cached AWS price list."""

from __future__ import annotations

import logging
import math

from bot.pricing import messages
from bot.pricing import service as pricing
from bot.slack.command_line import UsageError
from bot.integrations.sagemaker import SageMaker, SageMakerError
from bot.pricing.service import Need, Quote
from bot.slack.text import code
from handlers.commands.spec import Invocation, Subcommand

log = logging.getLogger(__name__)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_need(args: tuple[str, ...]) -> Need:
    vcpu, memory = _number(args[0]), _number(args[1]) if len(args) > 1 else None
    if len(args) < 2:
        raise UsageError("give both the vCPUs and the memory in GiB, e.g. `/model pricing 2 8`.")
    if memory is None:
        raise UsageError(f"memory {code(args[1])} is not a number of GiB.")
    if vcpu <= 0 or memory <= 0:
        raise UsageError("vCPUs and memory must be above zero.")
    gpus = 0
    if len(args) > 2:
        value = _number(args[2])
        if value is None or value < 0 or value != int(value):
            raise UsageError(f"GPUs {code(args[2])} must be a whole number, 0 or more.")
        gpus = int(value)
    return Need(vcpu=vcpu, memory_gib=memory, gpus=gpus)


def resolve_model(inv: Invocation, name: str):
    registry = inv.services.registry
    model = registry.get(name)
    if model is None:
        close = registry.suggest(name)
        hint = f" Did you mean {', '.join(code(c) for c in close)}?" if close else ""
        raise UsageError(f"{code(name)} is neither a number of vCPUs nor a registered model.{hint}")
    return model


def check_region(inv: Invocation, region: str) -> None:
    if not pricing.is_known_region(region, inv.services.store):
        raise UsageError(
            f"unknown region {code(region)}. Use a region code such as {pricing.region_examples()}."
        )


def current_instance(sm: SageMaker, model, region: str):
    """(instance_type, instance_count, note): what the model's endpoint runs on now, for the comparison."""
    if not model.endpoint:
        return None, None, None
    try:
        state = sm.describe_endpoint(model.endpoint, model.region)
    except SageMakerError as exc:
        return None, None, messages.endpoint_unreadable(model.endpoint, exc)
    typed = [v for v in state.variants if v.instance_type]
    if not typed:
        return None, None, messages.no_instance_type(model.endpoint)
    main = max(typed, key=lambda v: v.current_weight)
    return main.instance_type, main.instance_count or 1, None


def post_chart(inv: Invocation, q: Quote, current_type: str | None, subject: str) -> str | None:
    """Upload the price/memory chart; returns a note for the reply when it could not be posted."""
    import pandas as pd

    from charts.pricing import price_vs_memory

    with inv.services.store.session() as s:
        offers = pricing.all_offers(s, q.region)
    df = pd.DataFrame(
        {
            "instance_type": [o.instance_type for o in offers],
            "memory_gib": [o.memory_gib for o in offers],
            "usd_per_hour": [o.usd_per_hour for o in offers],
            "fits": [o.fits(q.need) for o in offers],
        }
    )
    pick = q.offers[0].instance_type if q.offers else None
    png = price_vs_memory(df, pick=pick, current=current_type, title=f"{subject} in {q.region}: price against memory")
    alt = (f"Scatter of hourly price against memory for {len(offers)} SageMaker instance types in {q.region}; "
           + (f"the cheapest fit, {pick}, is marked." if pick else "none fits."))
    try:
        inv.client.files_upload_v2(
            channel=inv.channel_id,
            thread_ts=inv.thread_ts,
            file=png,
            filename=f"pricing-{q.region}.png",
            title=f"SageMaker prices for {subject} in {q.region}",
            alt_txt=alt,
        )
    except Exception as exc:  # slack_sdk raises SlackApiError or a transport error; the reply still goes out
        log.warning("pricing chart upload failed: %s", exc)
        return messages.chart_refused(exc)
    return None


def run_pricing(inv: Invocation) -> None:
    args = inv.args
    region = inv.line.options.get("region")
    model = None
    if _number(args[0]) is not None:
        need = parse_need(args)
        subject = need.describe()
        region = region or inv.services.registry.defaults.region
    else:
        if len(args) > 1:
            raise UsageError(f"give either a model name or numbers, not {code(' '.join(args))}.")
        model = resolve_model(inv, args[0])
        if model.vcpu is None or model.memory_gib is None:
            raise UsageError(
                f"model {code(model.name)} has no `vcpu` and `memory_gib` in the models file; add them, or ask "
                f"`/model pricing <vcpu> <memory_gib> [gpus]`."
            )
        need = Need(vcpu=model.vcpu, memory_gib=model.memory_gib, gpus=model.gpus)
        subject = model.name
        region = region or model.region
    check_region(inv, region)
    try:
        q = pricing.quote(inv.services.store, region, need)
    except pricing.NoPrices as exc:
        inv.reply(text=messages.no_prices(exc))
        return
    notes: list[str] = []
    current_type = None
    if model is not None:
        current_type, count, note = current_instance(inv.services.sagemaker, model, region)
        if note:
            notes.append(note)
        if current_type:
            with inv.services.store.session() as s:
                current = pricing.offer_for(s, region, current_type)
            notes.append(messages.comparison(q, current_type, count, current))
    if "chart" in inv.line.flags:
        note = post_chart(inv, q, current_type, subject)
        if note:
            notes.append(note)
    text, blocks = messages.render(q, subject=subject, notes=notes)
    inv.reply(text=text, blocks=blocks)


SUBCOMMANDS = [
    Subcommand(
        name="pricing",
        usage="pricing <vcpu> <memory_gib> [gpus] [--region R] [--chart] | pricing <model> [--region R] [--chart]",
        summary="cheapest SageMaker hosting instances that fit, with hourly and monthly cost",
        run=run_pricing,
        flags=frozenset({"chart"}),
        options=frozenset({"region"}),
        min_args=1,
        max_args=3,
        progress=lambda inv: "Looking up prices…",
    )
]
