"""The sandbox stops everything it started on Ctrl-C, when its terminal closes (SIGHUP) or when it is killed
(SIGTERM), also while it is still starting (Airflow included), and also when a script started it with SIGINT
ignored. Its children run in their own sessions, so a sandbox that simply died would leave moto, the app and
Airflow running with nobody to stop them.

Needs no browser: it stops the world before it is ready.
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
from tests.sandbox.conftest import started_by


def _moto_servers() -> set[int]:
    return {pid for pid, cmdline, _ in _processes() if b"moto.server" in cmdline}


def _processes():
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                yield int(entry.name), cmdline, (entry / "environ").read_bytes()
            except OSError:
                continue


def _as_a_background_job() -> None:
    # What a shell script does to a command it starts with `&`: SIGINT ignored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


EMULATOR = "Starting the Slack emulator"  # moto is up
AIRFLOW = "Starting Airflow"  # `airflow standalone` is being started, from its own thread
SERVING = "Starting the simulated traffic"  # churn and fraud are on their endpoints: the hosting starts their servers


def _serving(workdir: Path) -> list[str]:
    return [line for line in started_by(workdir) if " -m serving " in line]


@pytest.mark.parametrize("signum, background, after", [
    (signal.SIGHUP, False, EMULATOR), (signal.SIGTERM, False, SERVING), (signal.SIGINT, False, EMULATOR),
    (signal.SIGINT, True, EMULATOR), (signal.SIGINT, False, AIRFLOW)],
    ids=["SIGHUP", "SIGTERM with the variants' modelbot-serve running", "Ctrl-C",
         "Ctrl-C, started in the background by a script", "Ctrl-C as Airflow starts"])
def test_a_signal_while_starting_stops_every_child(tmp_path, signum, background, after):
    before = _moto_servers()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AIRFLOW_", "AWS_", "PAGERDUTY_"))}
    env.update(PORT=str(free_port()), MODELBOT_SANDBOX_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "sandbox"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=_as_a_background_job if background else None)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.rstrip())
            if after in line:
                break
        started = _moto_servers() - before
        assert started, "the sandbox did not start moto:\n" + "\n".join(lines)
        if after == SERVING:  # stop it once a variant's modelbot-serve (the hosting's child) is up
            deadline = time.monotonic() + 60
            while not _serving(tmp_path) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _serving(tmp_path), "no modelbot-serve started:\n" + "\n".join(lines)
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=150)  # generous: a busy machine; Airflow is given 60 s to stop
        lines += out.splitlines()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert "Stopped." in lines, "\n".join(lines)
    assert not [line for line in lines if "Ready:" in line], "the sandbox finished starting before it stopped"
    deadline = time.monotonic() + 30
    while started_by(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not started_by(tmp_path), "these outlived the sandbox:\n" + "\n".join(started_by(tmp_path))
