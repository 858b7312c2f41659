import numpy as np
import pandas as pd
import pytest

from charts.examples import status_frame
from charts.status import status
from charts.style import TALL

COLUMNS = ["at", "variant", "weight", "invocations", "errors_5xx", "errors_4xx"]


def series(rows):
    return pd.DataFrame(rows, columns=COLUMNS)


def test_traffic_split_and_error_rates(valid_png):
    frame = status_frame()
    chart = status(frame, "churn", "churn-prod", stable="v41")
    valid_png(chart.png, TALL)
    totals = frame.groupby("variant")[["invocations", "errors_5xx", "errors_4xx"]].sum()
    v42 = totals.loc["v42"]
    assert chart.title == "churn: churn-prod, last 24 h, weights v41 75% / v42 25%"
    assert f"{totals['invocations'].sum():,} invocations" in chart.alt_text
    assert (f"v42: {v42['invocations'] / totals['invocations'].sum():.0%} of invocations, {v42['invocations']:,} "
            f"invocations, 5XX {v42['errors_5xx'] / v42['invocations']:.2%}, "
            f"4XX {v42['errors_4xx'] / v42['invocations']:.2%}") in chart.alt_text


def test_only_the_last_24_hours_count():
    rows = [("2025-06-01T00:00Z", "a", 1, 5000, 50, 0), ("2025-06-02T12:00Z", "a", 1, 100, 1, 0),
            ("2025-06-02T13:00Z", "a", 1, 100, 0, 0)]
    chart = status(series(rows), "churn", "ep")
    assert "200 invocations" in chart.alt_text and "5XX 0.50%" in chart.alt_text


def test_dense_one_minute_data_stays_under_the_size_limit(valid_png):
    rng = np.random.default_rng(3)
    at = pd.date_range("2025-06-01", periods=24 * 60, freq="1min")
    rows = [(t, v, w, int(rng.integers(0, 400)), int(rng.integers(0, 20)), int(rng.integers(0, 20)))
            for t in at for v, w in (("v1", 1), ("v2", 1), ("v3", 2))]
    chart = status(series(rows), "churn", "ep")
    valid_png(chart.png, TALL)
    assert "weights v1 25% / v2 25% / v3 50%" in chart.title


@pytest.mark.parametrize(
    "frame, expect",
    [
        (pd.DataFrame(), "no data yet"),
        (series([]), "no data yet"),
        (series([("2025-06-01T10:00Z", "v1", 1, 300, 3, 6)]), "v1: 100% of invocations, 300 invocations, 5XX 1.00%"),
        (series([(f"2025-06-01T10:{m:02d}Z", "v1", 1, 100, 0, 0) for m in range(0, 30, 5)]), "5XX 0.00%, 4XX 0.00%"),
        (series([("2025-06-01T10:00Z", "v1", np.nan, 0, 0, 0), ("2025-06-01T10:05Z", "v1", np.nan, np.nan, 1, 0),
                 ("2025-06-01T10:05Z", "v2", 1, 10, np.nan, 1), (None, "v2", 1, 1, 1, 1)]),
         "v2: 100% of invocations, 10 invocations, 5XX n/a"),
        (series([("2025-06-01T10:00Z", "v1", 0, 0, 0, 0)]), "v1: 0 invocations, 5XX n/a"),
    ],
    ids=["no columns", "empty", "one point", "all equal", "nans", "no traffic"],
)
def test_edge_cases_render_a_readable_png(valid_png, frame, expect):
    chart = status(frame, "churn", "churn-prod")
    valid_png(chart.png, TALL)
    assert expect in chart.alt_text


def test_missing_column_is_named():
    with pytest.raises(ValueError, match="errors_4xx"):
        status(series([("2025-06-01", "v1", 1, 1, 0, 0)]).drop(columns="errors_4xx"), "m", "ep")
