"""Every benchmark in bench/ still runs: each is run with --quick (seconds, small sizes, sanity checks only), as a
process, the way a person runs it, so none can rot unnoticed until someone needs its figures.

What is a benchmark: every bench/*.py whose name does not start with "_". Modules that benchmarks use (the bare
Bolt app of bench/ack_latency.py) start with "_". A new benchmark is picked up by being added; it must accept
--quick. `make bench` runs the full versions.

Two benchmarks run at a time (the machine has two cores and each benchmark waits on its own servers a good part of
the time); each test waits for its own benchmark's result.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import ROOT

BENCH = ROOT / "bench"
# A quick run takes seconds; this is for a machine busy with other work, and for a benchmark that hangs.
QUICK_TIMEOUT_SECONDS = 300
AT_ONCE = 2


def benchmarks() -> list[Path]:
    return sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))


@dataclass
class QuickRun:
    returncode: int | None
    output: str
    seconds: float


def run_quick(script: Path) -> QuickRun:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(script.relative_to(ROOT)), "--quick"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=QUICK_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        # Ctrl-C first: a benchmark's finally blocks stop the servers it started (each in a session of its own).
        os.killpg(proc.pid, signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
        output += f"\n[still running after {QUICK_TIMEOUT_SECONDS} s: stopped]"
        return QuickRun(None, output, time.monotonic() - started)
    return QuickRun(proc.returncode, output, time.monotonic() - started)


@pytest.fixture(scope="module")
def quick_runs(request):
    """The selected benchmarks' quick runs, started at once AT_ONCE at a time; script name -> Future."""
    selected = [item.callspec.params["script"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_each_benchmark_runs_in_quick_mode"]
    pool = ThreadPoolExecutor(AT_ONCE, thread_name_prefix="bench")
    runs: dict[str, Future] = {script.name: pool.submit(run_quick, script) for script in selected}
    yield runs
    pool.shutdown(wait=True)


def test_benchmarks_are_found_and_helpers_are_not_run():
    names = [p.name for p in benchmarks()]
    assert {"ack_latency.py", "charts.py", "controller_tick.py", "judgement.py", "pricing.py",
            "status_scale.py"} <= set(names)
    assert (BENCH / "_bare_bolt_app.py").exists() and "_bare_bolt_app.py" not in names


@pytest.mark.parametrize("script", benchmarks(), ids=lambda p: p.name)
def test_each_benchmark_runs_in_quick_mode(script: Path, quick_runs):
    run = quick_runs[script.name].result()
    where = f"bench/{script.name} --quick"
    if run.returncode == 2 and "unrecognized arguments: --quick" in run.output:
        pytest.fail(f"{where}: the benchmark has no --quick mode; every benchmark in bench/ needs one "
                    "(a few seconds, small sizes, no figure assertions beyond sanity):\n" + run.output[-2000:])
    if run.returncode != 0:
        pytest.fail(f"{where} failed (exit {run.returncode}) after {run.seconds:.0f} s; its output:\n"
                    f"{run.output[-6000:]}", pytrace=False)
    assert run.output.strip(), f"{where} printed nothing: a benchmark prints its figures"
