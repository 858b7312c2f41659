"""Realistic, fixed-seed example data for every chart: the README images, the benchmark and the tests use it.

`python -m charts.examples docs` writes docs/chart-*.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from charts.diagnostics import diagnostics
from charts.evaluation import evaluation
from charts.rollout import rollout
from charts.run_history import run_history
from charts.status import status
from charts.style import RenderedChart

T0 = pd.Timestamp("2025-06-02 09:00")


def evaluation_history(runs: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    at = [T0 - pd.Timedelta(days=7 * (runs - 1 - i)) + pd.Timedelta(minutes=int(rng.integers(0, 180)))
          for i in range(runs)]
    production, rows = 0.861, []
    for i, t in enumerate(at):
        candidate = production + rng.normal(0.004, 0.008)
        if i == runs - 1:
            candidate = production + 0.018
        promote = candidate > production + 0.002
        rows.append({"run_id": f"scheduled__{t:%Y-%m-%dT%H:%M}", "at": t, "candidate": round(candidate, 4),
                     "production": round(production, 4), "promoted": promote})
        if promote and i < runs - 1:
            production = candidate
    return pd.DataFrame(rows)


def classification_frame(n: int = 5000) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    score = rng.beta(0.7, 2.2, n)
    # Slightly over-confident at the top end, as real churn models often are.
    y = (rng.random(n) < score**1.15).astype(int)
    return pd.DataFrame({"y_true": y, "y_pred": score.round(4)})


def regression_frame(n: int = 3000) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    actual = rng.gamma(4.0, 25.0, n)
    predicted = actual * 0.95 + rng.normal(3, 9 + actual * 0.06, n)
    return pd.DataFrame({"y_true": actual.round(2), "y_pred": predicted.round(2)})


def rollout_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A rollout of v42 over v41: three steps, a pause and resume, then a 5XX rise and a rollback."""
    rng = np.random.default_rng(4)
    tick = pd.Timedelta(minutes=5)
    rate_per_tick = 2400
    # (candidate weight, ticks, candidate true error rate)
    plan = [(10, 12, 0.005), (25, 10, 0.0055), (25, 6, 0.0055), (50, 9, 0.016)]
    rows, events = [], [{"at": T0, "kind": "start", "label": "v42 at 0%"}]
    t = T0
    for step, (weight, ticks, cand_rate) in enumerate(plan):
        if step == 2:
            events.append({"at": t, "kind": "pause", "label": "by @alice"})
            t += pd.Timedelta(minutes=25)
            events.append({"at": t, "kind": "resume", "label": ""})
        else:
            events.append({"at": t, "kind": "shift", "label": f"to {weight}%"})
        counts = {"v41": [0, 0], "v42": [0, 0]}
        for _ in range(ticks):
            t += tick
            for variant, share, true_rate in (("v41", 100 - weight, 0.005), ("v42", weight, cand_rate)):
                n = rng.poisson(rate_per_tick * share / 100)
                counts[variant][0] += n
                counts[variant][1] += rng.binomial(n, true_rate)
                req, err = counts[variant]
                p = err / req
                # Wide, anytime-valid-looking band: the controller supplies the real one.
                half = 3.0 * np.sqrt(max(p, 1e-4) * (1 - p) / req) + 1 / req
                rows.append({"at": t, "variant": variant, "requests": req, "errors": err, "rate": p,
                             "lower": max(p - half, 0.0), "upper": p + half, "weight": share})
    events.append({"at": t, "kind": "rollback", "label": "5XX up, paged"})
    return pd.DataFrame(rows), pd.DataFrame(events)


def run_frame(runs: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    tasks = [("extract", 6), ("validate", 3), ("train", 38), ("evaluate", 7), ("deploy", 5)]
    rows = []
    for r in range(runs):
        start = T0 - pd.Timedelta(days=runs - 1 - r) + pd.Timedelta(minutes=int(rng.integers(0, 20)))
        run_id = f"scheduled__{start:%Y-%m-%dT%H:%M}"
        fail_at = {3: "train", 7: "evaluate"}.get(r)
        upstream_failed = False
        t = start
        for task, minutes in tasks:
            if upstream_failed:
                rows.append({"run_id": run_id, "task_id": task, "start": pd.NaT, "end": pd.NaT,
                             "state": "upstream_failed"})
                continue
            took = pd.Timedelta(minutes=float(max(1.0, rng.normal(minutes, minutes * 0.15))))
            if r == runs - 1 and task == "train":
                rows.append({"run_id": run_id, "task_id": task, "start": t, "end": pd.NaT, "state": "running"})
                upstream_failed = True  # later tasks have not started yet
                continue
            state = "failed" if task == fail_at else "success"
            rows.append({"run_id": run_id, "task_id": task, "start": t, "end": t + took, "state": state})
            t += took + pd.Timedelta(seconds=20)
            upstream_failed = state == "failed"
    frame = pd.DataFrame(rows)
    last = frame["run_id"] == frame["run_id"].iloc[-1]
    frame.loc[last & (frame["start"].isna()), "state"] = "scheduled"
    return frame


def status_frame() -> pd.DataFrame:
    rng = np.random.default_rng(6)
    end = T0 + pd.Timedelta(hours=8)
    periods = pd.date_range(end=end, periods=24 * 12, freq="5min")
    rows = []
    for i, at in enumerate(periods):
        hour = at.hour + at.minute / 60
        load = 900 + 600 * np.sin((hour - 9) / 24 * 2 * np.pi)
        cand_weight = 0 if i < 200 else 25
        for variant, weight, e5, e4 in (("v41", 100 - cand_weight, 0.004, 0.011), ("v42", cand_weight, 0.006, 0.010)):
            calls = rng.poisson(load * weight / 100)
            rows.append({"at": at, "variant": variant, "weight": weight, "invocations": calls,
                         "errors_5xx": rng.binomial(calls, e5), "errors_4xx": rng.binomial(calls, e4)})
    return pd.DataFrame(rows)


def all_examples() -> dict[str, RenderedChart]:
    evidence, events = rollout_frames()
    return {
        "evaluation": evaluation(evaluation_history(), "churn", "auc", "maximize", "v42"),
        "diagnostics-classification": diagnostics(classification_frame(), "churn", "v42"),
        "diagnostics-regression": diagnostics(regression_frame(), "demand", "v7"),
        "rollout": rollout(evidence, events, "churn", "v41", "v42"),
        "run-history": run_history(run_frame(), "churn", "churn_lifecycle", now=T0 + pd.Timedelta(minutes=40)),
        "status": status(status_frame(), "churn", "churn-prod", stable="v41"),
    }


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "docs")
    out.mkdir(parents=True, exist_ok=True)
    for name, chart in all_examples().items():
        path = out / f"chart-{name}.png"
        path.write_bytes(chart.png)
        print(f"{path}  {len(chart.png) / 1024:.0f} KB  {chart.title}\n  alt: {chart.alt_text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
