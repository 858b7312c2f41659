"""The cost chart's data: a model's instance history over the period, each stretch with its type's price."""

from __future__ import annotations

from bot.chart_loading import load as load_chart_module
from bot.cost.service import Detail, prices_for


def chart(services, d: Detail):
    """The RenderedChart of charts/cost.py for `d` (pandas and matplotlib load here, on first use)."""
    import pandas as pd  # lazily: the web process stays free of pandas until it draws

    draw = load_chart_module("charts.cost").cost
    with services.store.session() as s:
        prices = prices_for(s, {(d.model.region, seg["instance_type"]) for seg in d.segments})
    offers = prices.offers.get(d.model.region, {})
    rows = [dict(seg, usd_per_hour=offers[seg["instance_type"]].usd_per_hour
                 if seg["instance_type"] in offers else float("nan")) for seg in d.segments]
    frame = pd.DataFrame(rows, columns=["variant", "instance_type", "count", "start", "end", "usd_per_hour"])
    return draw(frame, model=d.model.name, days=d.days, until=pd.Timestamp(d.until))
