"""The sandbox stops everything it started on Ctrl-C, when its terminal closes (SIGHUP) or when it is killed
(SIGTERM), also while it is still starting, and also when a script started it with SIGINT ignored. Its children run in their own sessions, so a sandbox that simply died would leave
moto (and later Airflow) running with nobody to stop them.

Needs no browser: it stops the world before Airflow is started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import ROOT, free_port


def _moto_servers() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"moto.server" in cmdline:
                pids.add(int(entry.name))
    return pids


def _as_a_background_job() -> None:
    # What a shell script does to a command it starts with `&`: SIGINT ignored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("signum, background", [(signal.SIGHUP, False), (signal.SIGTERM, False),
                                                (signal.SIGINT, False), (signal.SIGINT, True)],
                         ids=["SIGHUP", "SIGTERM", "Ctrl-C", "Ctrl-C, started in the background by a script"])
def test_a_signal_while_starting_stops_every_child(tmp_path, signum, background):
    before = _moto_servers()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AIRFLOW_", "AWS_", "PAGERDUTY_"))}
    env.update(PORT=str(free_port()), MODELBOT_SANDBOX_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "sandbox"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=_as_a_background_job if background else None)
    lines = []
    try:
        for line in proc.stdout:  # moto is up once the next step is announced
            lines.append(line.rstrip())
            if "Starting the Slack emulator" in line:
                break
        started = _moto_servers() - before
        assert started, "the sandbox did not start moto:\n" + "\n".join(lines)
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=60)
        lines += out.splitlines()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert "Stopped." in lines, "\n".join(lines)
    assert not [line for line in lines if "Ready:" in line], "the sandbox finished starting before it stopped"
    deadline = time.monotonic() + 10
    while started & _moto_servers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not started & _moto_servers(), "moto outlived the sandbox"
