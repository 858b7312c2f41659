"""Chart render time: each chart's median over 20 renders, beside a bare matplotlib figure of the same size saved
the same way in the same run, and the ratio. Target: under 250 ms a chart.

    .venv/bin/python bench/charts.py [--quick]

--quick (what `make test` runs so the benchmark cannot rot): one timed render a chart; it checks that every chart
draws and stays under Slack's size limit, not how fast.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and this file is itself named charts.py: put the
# project root there instead, so `import charts` finds the package, not this benchmark.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import pandas as pd  # noqa: E402

from charts import examples  # noqa: E402
from charts.diagnostics import diagnostics  # noqa: E402
from charts.evaluation import evaluation  # noqa: E402
from charts.fonts import warm_font_cache  # noqa: E402
from charts.rollout import rollout  # noqa: E402
from charts.run_history import run_history  # noqa: E402
from charts.status import status  # noqa: E402
from charts.style import DPI, MAX_PNG_BYTES, SIZE, TALL, WIDE, new_figure, to_png  # noqa: E402

RENDERS = 20
TARGET_MS = 250


def median_ms(render, renders: int = RENDERS) -> tuple[float, float, bytes]:
    """Median wall-clock and CPU milliseconds. CPU time is printed too because on a shared machine other
    processes stretch the wall clock, not the work done."""
    png = render()  # first render outside the timing: imports and caches, as a warm process has them
    wall, cpu = [], []
    for _ in range(renders):
        start, start_cpu = time.perf_counter(), time.process_time()
        png = render()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu), png


def bare(size):
    """An empty figure through the same Figure, canvas and PNG encoding: what matplotlib costs before any data."""
    return lambda: to_png(new_figure(size))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timed render a chart: does every chart still draw?")
    renders = 1 if parser.parse_args().quick else RENDERS
    warm_font_cache()
    history = examples.evaluation_history()
    classes, regression = examples.classification_frame(), examples.regression_frame()
    evidence, events = examples.rollout_frames()
    runs = examples.run_frame()
    series = examples.status_frame()
    now = examples.T0 + pd.Timedelta(minutes=40)
    cases = [
        ("evaluation (12 runs)", SIZE, lambda: evaluation(history, "churn", "auc", "maximize", "v42").png),
        ("diagnostics, classifier (5,000 rows)", WIDE, lambda: diagnostics(classes, "churn", "v42").png),
        ("diagnostics, regressor (3,000 rows)", WIDE, lambda: diagnostics(regression, "demand", "v7").png),
        ("rollout (37 ticks x 2 variants, 7 events)", TALL,
         lambda: rollout(evidence, events, "churn", "v41", "v42").png),
        ("run history (10 runs x 5 tasks)", SIZE, lambda: run_history(runs, "churn", "churn_lifecycle", now=now).png),
        ("status (24 h of 5-min periods x 2)", TALL, lambda: status(series, "churn", "churn-prod", stable="v41").png),
    ]
    rows = []
    for name, size, render in cases:
        # The baseline is measured right beside each chart, so both see the same machine load.
        base, base_cpu, _ = median_ms(bare(size), renders)
        ms, cpu, png = median_ms(render, renders)
        rows.append((name, size, ms, cpu, base, base_cpu, len(png)))

    print(f"chart render time, median of {renders} renders; bare = an empty figure of the same size through the "
          "same draw and PNG encoding")
    header = (f"{'chart':44} {'pixels':>10} {'ms':>7} {'bare ms':>8} {'ratio':>6} {'cpu ms':>7} {'bare cpu':>9} "
              f"{'PNG KB':>7}")
    print(header)
    print("-" * len(header))
    too_big = []
    for name, size, ms, cpu, base, base_cpu, nbytes in rows:
        pixels = f"{size[0] * DPI:.0f}x{size[1] * DPI:.0f}"
        flag = "  over target" if ms > TARGET_MS else ""
        print(f"{name:44} {pixels:>10} {ms:7.1f} {base:8.1f} {ms / base:6.1f} {cpu:7.1f} {base_cpu:9.1f} "
              f"{nbytes / 1024:7.0f}{flag}")
        if nbytes >= MAX_PNG_BYTES:
            too_big.append(name)
    worst = max(row[2] for row in rows)
    print(f"slowest chart {worst:.0f} ms (target < {TARGET_MS} ms)")
    if too_big:
        print(f"over the {MAX_PNG_BYTES // 1024} KB limit: {', '.join(too_big)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
