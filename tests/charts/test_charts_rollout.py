import numpy as np
import pandas as pd
import pytest

from charts.examples import rollout_frames
from charts.rollout import rollout
from charts.style import TALL

EVIDENCE = ["at", "variant", "requests", "errors", "rate", "lower", "upper", "weight"]


def evidence(rows):
    return pd.DataFrame(rows, columns=EVIDENCE)


def events(rows):
    return pd.DataFrame(rows, columns=["at", "kind", "label"])


def test_rollout_shows_both_variants_steps_and_events(valid_png):
    frame, happened = rollout_frames()
    chart = rollout(frame, happened, "churn", "v41", "v42")
    valid_png(chart.png, TALL)
    last_v42 = frame[frame["variant"] == "v42"].iloc[-1]
    last_v41 = frame[frame["variant"] == "v41"].iloc[-1]
    assert chart.title == "churn rollout v41 → v42: candidate at 50% traffic, last event rollback"
    assert (f"v42 {last_v42['rate'] * 100:.2f}% (band {last_v42['lower'] * 100:.2f}% to "
            f"{last_v42['upper'] * 100:.2f}%), {last_v42['errors']:,} errors in {last_v42['requests']:,} requests"
            in chart.alt_text)
    assert f"v41 {last_v41['rate'] * 100:.2f}%" in chart.alt_text
    for words in ("10:00 shift to 25%", "10:50 pause by @alice", "11:15 resume", "12:30 rollback 5XX up, paged"):
        assert words in chart.alt_text


def test_promotion_is_reported():
    t = pd.Timestamp("2025-06-01 10:00", tz="UTC")
    frame = evidence([
        (t, "a", 1000, 5, 0.005, 0.002, 0.01, 0), (t, "b", 1000, 4, 0.004, 0.001, 0.009, 100),
    ])
    chart = rollout(frame, events([(t, "promote", "100%")]), "churn", "a", "b")
    assert "candidate at 100% traffic, last event promote" in chart.title
    assert "Events: 10:00 promote 100%." in chart.alt_text


@pytest.mark.parametrize(
    "frame, happened, expect",
    [
        (pd.DataFrame(), None, "no data yet"),
        (evidence([]), events([("2025-06-01 10:00", "start", "")]), "Last event: 10:00 start"),
        (evidence([("2025-06-01 10:00", "v1", 600, 3, 0.005, 0.001, 0.02, 90),
                   ("2025-06-01 10:00", "v2", 70, 1, 0.0143, 0.0, 0.08, 10)]), None,
         "v2 1.43% (band 0.00% to 8.00%), 1 errors in 70 requests"),
        (evidence([(f"2025-06-01 10:{m:02d}", v, 100 * m, 0, 0.0, 0.0, 0.0, w)
                   for m in range(1, 6) for v, w in (("v1", 90), ("v2", 10))]), None, "v2 0.00%"),
        (evidence([("2025-06-01 10:00", "v1", 0, 0, np.nan, np.nan, np.nan, 90),
                   ("2025-06-01 10:05", "v1", 500, 5, np.nan, 0.002, 0.03, 90),
                   ("2025-06-01 10:05", "v2", np.nan, np.nan, np.nan, np.nan, np.nan, 10),
                   (None, "v2", 1, 1, 1.0, 0, 1, 10)]), None, "v1 1.00% (band 0.20% to 3.00%)"),
    ],
    ids=["no columns", "only events", "one point", "all equal", "nans"],
)
def test_edge_cases_render_a_readable_png(valid_png, frame, happened, expect):
    chart = rollout(frame, happened, "churn", "v1", "v2")
    valid_png(chart.png, TALL)
    assert expect in chart.alt_text


def test_a_long_noisy_rollout_stays_under_the_size_limit(valid_png):
    rng = np.random.default_rng(7)
    at = pd.date_range("2025-06-01", periods=3000, freq="1min")
    rows = []
    for v, w in (("v1", 50), ("v2", 50)):
        rate = rng.uniform(0, 0.05, len(at))
        rows += [{"at": t, "variant": v, "requests": 1000, "errors": int(r * 1000), "rate": r,
                  "lower": r / 2, "upper": r * 2, "weight": w} for t, r in zip(at, rate)]
    happened = events([(t, "shift", f"{i}%") for i, t in enumerate(at[::150])])
    valid_png(rollout(pd.DataFrame(rows), happened, "churn", "v1", "v2").png, TALL)


def test_missing_column_is_named():
    with pytest.raises(ValueError, match="upper"):
        rollout(evidence([("2025-06-01", "v1", 1, 0, 0, 0, 0, 100)]).drop(columns="upper"), None, "m", "v1", "v2")
