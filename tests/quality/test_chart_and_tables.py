"""The quality chart (a pure DataFrame -> PNG function, its numbers in the alt text) and the 0013_quality migration
matching the tables the code uses."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bot.quality import tables
from bot.store import Store
from bot.store.base import Base
from charts.quality import quality
from charts.style import MAX_PNG_BYTES

START = date(2025, 3, 1)


def frames():
    rows = []
    for k in range(20):
        day = START + timedelta(days=k)
        rows.append({"day": day, "variant": "v41", "value": 0.86 - 0.006 * k, "labels": 180 + k})
        if k >= 14:
            rows.append({"day": day, "variant": "v42", "value": 0.85 + 0.002 * (k - 14), "labels": 40})
    rows.append({"day": START + timedelta(days=20), "variant": "v41", "value": None, "labels": 12})  # undefined
    refs = pd.DataFrame([{"variant": "v41", "value": 0.86, "source": "offline"},
                         {"variant": "v42", "value": 0.852, "source": "offline"}])
    events = pd.DataFrame([{"at": datetime(2025, 3, 15, 14), "kind": "promoted", "variant": "v42"},
                           {"at": datetime(2025, 3, 10, 9), "kind": "rolled back", "variant": "v40"}])
    windows = pd.DataFrame([{"variant": "v41", "value": 0.752, "labels": 1_400}])
    return pd.DataFrame(rows), refs, events, windows


def test_the_chart_draws_the_reference_threshold_and_marks_and_says_the_numbers():
    days, refs, events, windows = frames()
    chart = quality(days, refs, events, model="churn", metric="auc", direction="maximize", tolerance=0.05,
                    window_days=7, windows=windows)
    assert chart.png.startswith(b"\x89PNG") and len(chart.png) < MAX_PNG_BYTES
    assert chart.filename == "quality-churn.png" and chart.title == "churn: auc per day"
    alt = chart.alt_text
    assert "churn: auc per day (higher is better), 2025-03-01 to 2025-03-21." in alt
    assert "v41: 0.860 on 03-01, 0.746 on 03-20; last 7 days 0.752 on 1,400 labels." in alt
    assert "Reference 0.860 (offline evaluation); decay past 0.810." in alt
    assert "v40 rolled back 2025-03-10. v42 promoted 2025-03-15." in alt


def test_lower_is_better_and_no_data():
    days, refs, _, _ = frames()
    chart = quality(days, refs, None, model="fraud", metric="logloss", direction="minimize", tolerance=0.02,
                    window_days=7)
    assert "(lower is better)" in chart.alt_text and "decay past 0.880" in chart.alt_text
    assert "mean of the last 7 daily values" in chart.alt_text
    empty = quality(pd.DataFrame(columns=["day", "variant", "value", "labels"]), None, None, model="churn",
                    metric="auc", direction="maximize", tolerance=0.05, window_days=7)
    assert empty.png.startswith(b"\x89PNG") and "no data yet" in empty.alt_text
    with pytest.raises(ValueError, match="lacks column"):
        quality(pd.DataFrame({"day": [START]}), None, None, model="churn", metric="auc", direction="maximize",
                tolerance=0.05, window_days=7)


def test_the_migration_creates_exactly_the_quality_tables(database_url):
    store = Store(database_url)
    try:
        store.migrate()
        ours = {name for name in Base.metadata.tables if name.startswith("quality_")}
        assert ours == {t.__tablename__ for t in vars(tables).values()
                        if isinstance(t, type) and issubclass(t, Base) and t is not Base}
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        ours_diff = [d for d in diff if "quality_" in repr(d)]
        assert ours_diff == []
    finally:
        store.dispose()
