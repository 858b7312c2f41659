"""Measures the sandbox's stories on this machine, as docs/sandbox.md reports them.

    .venv/bin/python -m sandbox.measure [--port 3999]

Starts `python -m sandbox` (time to its ready line), then through the page's own API, as the page does:
`/model retrain churn` and `/model retrain fraud` at once, and the drift control right after; it waits for
churn's "Rollout complete", fraud's automatic rollback and its page in #ml-alerts, and the decay message in
#ml-churn, and prints the time each took from its command (or click), with the machine's load. Ctrl-C stops it
(and the sandbox).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READY = re.compile(r"modelbot sandbox is ready: (http://\S+)")
GOALS = {  # what marks each end, in which channel, and whether it is in a thread
    "churn promoted (Rollout complete)": ("C0CHURN", "Rollout complete", True),
    "fraud rolled back": ("C0FRAUD", "rolled back automatically", True),
    "fraud paged in #ml-alerts": ("C0ALERTS", "fraud", False),
    "churn decay message": ("C0CHURN", "has decayed", False),
}


def _call(base: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(base + path, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"},
                                     method="POST" if body is not None else "GET")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def _texts(base: str, channel: str, threads: bool) -> list[str]:
    state = _call(base, f"/api/state?channel={channel}")
    texts = [m.get("text") or "" for m in state["messages"]]
    if threads:
        for m in state["messages"]:
            if m.get("reply_count"):
                texts += [r.get("text") or "" for r in _call(base, f"/api/state?channel={channel}&thread={m['ts']}")
                          .get("thread", [])]
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.measure", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3999)
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for every story")
    options = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="modelbot-sandbox-measure-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AIRFLOW_", "AWS_", "PAGERDUTY_"))}
    env.update(PORT=str(options.port), MODELBOT_SANDBOX_DIR=workdir, PYTHONUNBUFFERED="1")
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "sandbox"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    rows: list[tuple[str, float | None]] = []
    try:
        base = None
        for line in proc.stdout:
            found = READY.search(line)
            if found:
                base = found.group(1).rstrip("/")
                break
        if base is None:
            print("the sandbox did not start; its output is in", workdir, file=sys.stderr)
            return 1
        rows.append(("time to ready", time.monotonic() - started))
        print(f"ready after {rows[0][1]:.0f}s (load {os.getloadavg()[0]:.1f}); running the stories", flush=True)
        t0 = time.monotonic()
        _call(base, "/api/command", {"channel": "C0CHURN", "text": "/model retrain churn"})
        _call(base, "/api/command", {"channel": "C0FRAUD", "text": "/model retrain fraud"})
        drift_at = time.monotonic()
        _call(base, "/api/world", {"drift": True})
        done: dict[str, float] = {}
        while len(done) < len(GOALS) and time.monotonic() - t0 < options.timeout:
            for goal, (channel, text, threads) in GOALS.items():
                if goal not in done and any(text in t for t in _texts(base, channel, threads)):
                    done[goal] = time.monotonic() - (drift_at if "decay" in goal else t0)
                    print(f"  {goal}: {done[goal]:.0f}s", flush=True)
            time.sleep(2)
        rows += [(goal, done.get(goal)) for goal in GOALS]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # the sandbox's own stop: every process it started
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    print("\n| what | seconds |\n|---|---|")
    for what, seconds in rows:
        print(f"| {what} | {'not reached' if seconds is None else f'{seconds:.0f}'} |")
    print(f"\nload average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0 if all(seconds is not None for _, seconds in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
