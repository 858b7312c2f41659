"""What a variant costs and what right-sizing says, as pure functions: prices x instances over a 730-hour month, a
missing price as unknown with its reason (never $0), whose cost a variant is, the p95, the cheapest type that fits
with 30% headroom; and the cost chart with its numbers in the alt text."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from bot.cost.costs import ModelCost, price_variant, role_of
from bot.cost.rightsizing import MIN_POINTS, Load, p95, recommend
from bot.pricing.service import Offer
from charts.cost import cost as cost_chart
from charts.style import MAX_PNG_BYTES

OFFERS = {o.instance_type: o for o in [
    Offer("ml.t2.medium", 2, 4, 0, None, 0.056), Offer("ml.c5.large", 2, 4, 0, None, 0.102),
    Offer("ml.m5.large", 2, 8, 0, None, 0.115), Offer("ml.c5.xlarge", 4, 8, 0, None, 0.204),
    Offer("ml.m5.xlarge", 4, 16, 0, None, 0.23), Offer("ml.m5.2xlarge", 8, 32, 0, None, 0.461),
    Offer("ml.g4dn.xlarge", 4, 16, 1, 16, 0.736)]}


def test_a_variant_costs_its_instances_at_the_hourly_price_over_730_hours():
    v = price_variant("v41", "production", "ml.m5.xlarge", 2, "us-east-1", OFFERS, True)
    assert v.usd_per_hour == 0.46 and round(v.usd_per_month, 2) == 335.8
    m = ModelCost("churn", "us-east-1", [v, price_variant("v42", "candidate", "ml.m5.large", 1, "us-east-1", OFFERS,
                                                            True)])
    assert round(m.usd_per_month, 2) == round(335.8 + 83.95, 2) and round(m.by_role("candidate"), 2) == 83.95
    assert m.instances == 3


def test_a_missing_price_is_unknown_with_the_reason_never_zero():
    odd = price_variant("v1", "production", "ml.z9.huge", 1, "us-east-1", OFFERS, True)
    assert odd.usd_per_month is None and "`ml.z9.huge` has no on-demand hosting price in us-east-1" in odd.unknown
    nothing = price_variant("v1", "production", "ml.m5.large", 1, "eu-west-3", {}, False)
    assert "no SageMaker prices are stored for eu-west-3" in nothing.unknown and "prices refresh" in nothing.unknown
    serverless = price_variant("v1", "production", None, None, "us-east-1", OFFERS, True)
    assert serverless.usd_per_month is None and "instance count is not known" in serverless.unknown
    m = ModelCost("fraud", "us-east-1", [odd])
    assert m.usd_per_month == 0 and m.unknown == [odd]  # the total leaves it out and says so


def test_whose_cost_a_variant_is():
    assert role_of("v42", True, "progressing", "v41", "v42") == "candidate"
    assert role_of("v41", True, "progressing", "v41", "v42") == "production"
    assert role_of("v41", False, "baking", "v41", "v42") == "baking"
    assert role_of("v42", True, "baking", "v41", "v42") == "production"
    assert role_of("v42", False, "rolled_back", "v41", "v42") == "idle"
    assert role_of("v1", True, None, None, None) == "production"


@given(st.lists(st.floats(0, 400), min_size=1, max_size=500))
def test_p95_is_numpys_linear_percentile(values):
    assert abs(p95(values) - float(np.percentile(values, 95))) < 1e-6


def load(cpu: float, memory: float, points: int = 4032) -> Load:
    # Five-minute maxima: mostly `cpu`/`memory`, a few spikes above the p95 that must not drive the size.
    spikes = points // 50
    return Load.from_points([cpu] * (points - spikes) + [cpu * 3] * spikes,
                            [memory] * (points - spikes) + [memory * 2] * spikes,
                            [cpu / 2] * points, [memory] * points, days=14)


def test_right_sizing_picks_the_cheapest_type_with_30_percent_headroom():
    # 2 x ml.m5.xlarge (4 vCPU, 16 GiB): p95 CPU 60% of one core, memory 20% = 3.2 GiB.
    r = recommend("v41", OFFERS["ml.m5.xlarge"], 2, load(60, 20), list(OFFERS.values()))
    # c5.large and t2.medium have 4 GiB: 70% is 2.8 < 3.2. m5.large (8 GiB, 2 vCPU) carries it.
    assert r.verdict == "cheaper" and r.pick.instance_type == "ml.m5.large"
    assert round(r.saving_per_month, 2) == round((0.23 - 0.115) * 2 * 730, 2)
    assert round(r.vcpu_busy, 2) == 0.6 and round(r.memory_used_gib, 1) == 3.2


def test_right_sizing_says_when_it_fits_runs_hot_or_cannot_tell():
    right = recommend("v41", OFFERS["ml.m5.large"], 1, load(60, 50), list(OFFERS.values()))
    assert right.verdict == "right" and right.saving_per_month == 0
    hot = recommend("v41", OFFERS["ml.c5.large"], 1, load(180, 40), list(OFFERS.values()))
    assert hot.verdict == "larger" and hot.pick.instance_type == "ml.c5.xlarge"  # 1.8 vCPUs busy > 70% of 2
    short = recommend("v41", OFFERS["ml.m5.xlarge"], 1, load(60, 20, points=MIN_POINTS - 1), list(OFFERS.values()))
    assert short.verdict == "unknown" and "not enough" in short.why
    gpu = recommend("v41", OFFERS["ml.g4dn.xlarge"], 1, load(10, 10), list(OFFERS.values()))
    assert gpu.verdict == "right"  # never a type without the GPU it has


def test_the_cost_chart_draws_instances_and_puts_the_numbers_in_its_alt_text():
    until = datetime(2025, 3, 10, 12, tzinfo=timezone.utc)
    segments = pd.DataFrame([
        {"variant": "v41", "instance_type": "ml.m5.large", "count": 2, "start": until - timedelta(days=3),
         "end": until - timedelta(days=1), "usd_per_hour": 0.115},
        {"variant": "v41", "instance_type": "ml.m5.large", "count": 4, "start": until - timedelta(days=1),
         "end": until, "usd_per_hour": 0.115},
        {"variant": "v42", "instance_type": "ml.z9.huge", "count": 1, "start": until - timedelta(hours=6),
         "end": until, "usd_per_hour": float("nan")},
    ])
    chart = cost_chart(segments, model="churn", days=7, until=pd.Timestamp(until))
    assert chart.png.startswith(b"\x89PNG") and len(chart.png) < MAX_PNG_BYTES
    assert "v41 on ml.m5.large: 192 instance hours, $22.08" in chart.alt_text  # 2x48 h + 4x24 h at $0.115
    assert "v42 on ml.z9.huge: 6 instance hours, cost unknown" in chart.alt_text
    empty = cost_chart(segments.iloc[0:0], model="churn", days=7, until=pd.Timestamp(until))
    assert "no data yet" in empty.alt_text
