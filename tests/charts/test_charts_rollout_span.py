"""The rollout chart covers the rollout's own span and shows what decided it (issue 21, item 18; issue 22).

The sandbox's fraud story: the candidate starts at 10% at 06:13:15, the controller judges every second or so on
counts that are still zero (CloudWatch counts whole minutes), and the first judgement with counts rolls it back
at 06:14:10. Its chart read as an hour long (minute ticks labelled 15, 20, ... 55 were seconds), showed no error
line (the decisive counts were in the rollback's row, which the chart did not read) and the candidate at 10%
after it was rolled back.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pandas as pd
import pytest

from bot.registry import RolloutSettings
from bot.rollouts.chart_data import chart_frames
from bot.rollouts.judgement import Counts, judge
from bot.rollouts.plans import event_row
from bot.rollouts.tables import Rollout, RolloutEvent
from charts.rollout import rollout
from charts.style import TALL
from tests.judgement.conftest import store  # noqa: F401 -- fixture

START = datetime(2026, 12, 1, 6, 13, 15, tzinfo=timezone.utc)
ROLLBACK = START + timedelta(seconds=55)
SETTINGS = RolloutSettings(alpha=0.05)
DECISIVE = (Counts(6_700, 10, 27), Counts(743, 35, 2))  # 0.15% vs 4.71% 5XX


def sandbox_frames(before: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What chart_frames gives for the fraud story, plus rows of an hour before the start."""
    rows = []

    def judged(at, stable: Counts, candidate: Counts, weight: float, bound=float("nan"), shift_line=float("nan"),
               **judgement):
        for variant, c, w in (("v17", stable, 100 - weight), ("v18", candidate, weight)):
            rate = c.errors_5xx / c.requests if c.requests else float("nan")
            mine = {"bound": bound, "shift_line": shift_line} if variant == "v18" else {}
            rows.append({"at": at, "variant": variant, "requests": c.requests, "errors": c.errors_5xx,
                         "rate": rate, "lower": float("nan"), "upper": float("nan"), "weight": w, **judgement,
                         **mine})

    if before:  # whatever data exists before the rollout: not the rollout's
        for k in range(6):
            judged(START - timedelta(minutes=60 - k), Counts(900, 2, 3), Counts(100, 0, 0), 10)
    for k in range(40):
        judged(START + timedelta(seconds=2 + 1.3 * k), Counts(0, 0, 0), Counts(0, 0, 0), 10, evidence=0.01,
               shift_evidence=0.01)
    judged(ROLLBACK, *DECISIVE, 10, bound=0.0015 + 0.08, shift_line=0.0015 + 0.002, evidence=1.2e8,
           shift_evidence=1e-9)
    events = pd.DataFrame([{"at": START, "kind": "start", "label": "10%", "weight": 10},
                           {"at": ROLLBACK, "kind": "rollback", "label": "automatic", "weight": 0}])
    return pd.DataFrame(rows), events


def test_a_one_minute_rollout_spans_its_minute_and_ends_at_zero(valid_png):
    evidence, events = sandbox_frames()
    chart = rollout(evidence, events, "fraud", "v17", "v18")
    valid_png(chart.png, TALL)
    assert "2026-12-01 06:13:15 to 06:14:10, 55 s" in chart.alt_text, chart.alt_text
    assert "05:" not in chart.alt_text  # nothing from before the rollout
    assert chart.title == "fraud rollout v17 → v18: candidate at 0% traffic, last event rollback"
    assert "v18 4.71% (at most 8.15% by the judgement), 35 errors in 743 requests" in chart.alt_text
    assert "Judgement: 1.2e+08x the evidence needed to roll back" in chart.alt_text


def test_charts_without_the_judgements_columns_still_draw(valid_png):
    evidence, events = sandbox_frames(before=False)
    evidence = evidence.drop(columns=["bound", "shift_line", "evidence", "shift_evidence"])
    chart = rollout(evidence, events.drop(columns=["weight"]), "fraud", "v17", "v18")
    valid_png(chart.png, TALL)
    assert "55 s" in chart.alt_text and "candidate at 10% traffic" in chart.title  # as the evidence says


@pytest.mark.parametrize("minutes, label", [(0.9, "54 s"), (50, "50 min"), (6 * 60, "6 h 0 min"),
                                           (3 * 24 * 60, "3 days 0 h")])
def test_the_span_is_written_out_whatever_its_length(minutes, label):
    evidence, events = sandbox_frames(before=False)
    end = START + timedelta(minutes=minutes)
    evidence.loc[evidence.index[-2:], "at"] = end
    events.loc[1, "at"] = end
    assert label in rollout(evidence, events, "fraud", "v17", "v18").alt_text


def test_the_chart_reads_the_decisive_judgement_and_the_traffic_each_event_set(store):
    """Through rollout_events, as the controller writes them: zero-count judgements, then the rollback's row."""
    with store.session() as s:
        r = Rollout(model="fraud", active_model=None, source="airflow", endpoint="fraud-prod", region="us-east-1",
                    stable_variant="v17", candidate_variant="v18", steps=[10, 25, 50, 100], state="progressing",
                    step_index=0, step_started_at=START, version=1)
        s.add(r)
        s.flush()
        s.add(RolloutEvent(rollout_id=r.id, **event_row(r, "start", START, state="progressing", step_index=0,
                                                        label="10%")))
        for k in range(5):
            zero = (Counts(0, 0, 0), Counts(0, 0, 0))
            s.add(RolloutEvent(rollout_id=r.id, **event_row(
                r, "judgement", START + timedelta(seconds=10 * (k + 1)), state="progressing", step_index=0,
                decision=judge(*zero, SETTINGS, 0.5), stable=zero[0], candidate=zero[1])))
        decision = judge(*DECISIVE, SETTINGS, 1.0)
        assert decision.action.value == "rollback"
        r.state = "rolled_back"
        s.add(RolloutEvent(rollout_id=r.id, **event_row(r, "rollback", ROLLBACK, state="rolled_back", step_index=0,
                                                        decision=decision, stable=DECISIVE[0],
                                                        candidate=DECISIVE[1], label="automatic")))
        rid = r.id
    services = SimpleNamespace(store=store, registry=SimpleNamespace(get=lambda name: SimpleNamespace(
        rollout=SETTINGS)))
    evidence, events = chart_frames(services, rid)
    last = evidence[evidence["variant"] == "v18"].iloc[-1]
    assert (last["requests"], last["errors"], last["weight"]) == (743, 35, 10)  # judged at 10%
    assert last["bound"] == pytest.approx(10 / 6700 + decision.evidence.upper_5xx)
    assert last["shift_line"] == pytest.approx(10 / 6700 + SETTINGS.margin)
    assert last["evidence"] == pytest.approx(decision.evidence.statistic / decision.evidence.threshold)
    assert list(events["kind"]) == ["start", "rollback"] and list(events["weight"]) == [10, 0]
    chart = rollout(evidence, events, "fraud", "v17", "v18")
    assert "candidate at 0% traffic, last event rollback" in chart.title and "v18 4.71%" in chart.alt_text


def test_an_overwhelming_rollback_draws_and_says_so(valid_png):
    """A 5% candidate against a 0.4% stable (tests/rollout's bad-candidate scenario) gives an e-value of 1e302, or
    one that overflowed to infinity: the chart must still draw (a log axis up to 3e302 raised OverflowError while
    rendering, so the rollback's thread had no chart) and its text must not call infinity 'no evidence'."""
    evidence, events = sandbox_frames(before=False)
    last = evidence.index[evidence["variant"] == "v18"][-1]
    evidence.loc[last, ["evidence", "shift_evidence"]] = [1.014232e302, 7.256404e-59]
    valid_png(rollout(evidence, events, "fraud", "v17", "v18").png, TALL)
    evidence.loc[last, ["evidence", "shift_evidence"]] = [float("inf"), float("nan")]
    chart = rollout(evidence, events, "fraud", "v17", "v18")
    valid_png(chart.png, TALL)
    assert "overwhelming evidence (beyond counting) to roll back; no evidence to shift" in chart.alt_text
