"""One sandbox world (`python -m sandbox`, as `make run` starts it without credentials) for the whole session,
driven through Debian's Chromium with Playwright.

Skipped, saying why, only where Chromium or Playwright cannot be had (`make test` installs both when it can),
or with MODELBOT_SKIP_AIRFLOW=1 (the sandbox runs a real Airflow). MODELBOT_SANDBOX_SCREENSHOTS=<dir> saves a
screenshot of each story there (docs/ holds the ones in the README).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.harness import ROOT, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
READY = re.compile(r"modelbot sandbox is ready: (http://\S+)")
HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.airflow)


def _why_not() -> str | None:
    if not os.path.exists(CHROMIUM):
        return (f"{CHROMIUM} is missing and could not be installed here (`make test` installs Debian's chromium "
                "with apt-get when run as root)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if os.environ.get("MODELBOT_SKIP_AIRFLOW") == "1":
        return "MODELBOT_SKIP_AIRFLOW=1: the sandbox runs a real Airflow"
    return None


class SandboxProcess:
    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.lines: list[str] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AIRFLOW_", "AWS_", "PAGERDUTY_"))}
        env.update(PORT=str(self.port), MODELBOT_SANDBOX_DIR=str(workdir), PYTHONUNBUFFERED="1")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "sandbox"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.ready = threading.Event()
        self.url: str | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            found = READY.search(line)
            if found:
                self.url = found.group(1)
                self.ready.set()
        self.ready.set()

    def wait_ready(self, timeout: float) -> str:
        self.ready.wait(timeout)
        if self.url is None:
            self.stop()
            raise RuntimeError("the sandbox did not become ready:\n" + "\n".join(self.lines[-40:]))
        return self.url

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # what Ctrl-C does: the sandbox stops every process it started
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    why = _why_not()
    if why:
        pytest.skip(why)
    process = SandboxProcess(tmp_path_factory.mktemp("sandbox"))
    served: set[str] = set()
    try:
        url = process.wait_ready(timeout=900)  # the first run on a machine installs Airflow
        process.ready_seconds = time.monotonic() - process.started
        print(f"\nsandbox ready in {process.ready_seconds:.0f}s at {url}", file=sys.stderr)
        yield process
        served = {line for line in started_by(process.workdir) if " -m serving " in line}
    finally:
        process.stop()
    stopped = [line for line in process.lines if "Stopped." in line]
    assert stopped, "the sandbox did not report that it stopped:\n" + "\n".join(process.lines[-20:])
    assert served, "no variant's modelbot-serve was running when the session ended"
    deadline = time.monotonic() + 30
    while started_by(process.workdir) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = started_by(process.workdir)
    assert not left, "these outlived the sandbox (modelbot-serve included):\n" + "\n".join(left)


def started_by(workdir: Path) -> list[str]:
    """Every live process that inherited a sandbox's environment: whatever it started, Airflow's and the
    variants' modelbot-serve too."""
    mark = f"MODELBOT_SANDBOX_DIR={workdir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if mark in environ.split(b"\0"):
            found.append(f"{entry.name} {cmdline[:160]}")
    return found


@pytest.fixture(scope="session")
def browser(sandbox):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, sandbox):
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, device_scale_factor=1)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(sandbox.url)
    yield page
    context.close()
    assert not errors, f"the page raised JavaScript errors: {errors}"


@pytest.fixture(scope="session")
def retrains(browser, sandbox):
    """Both stories started at once, from the composer, so they run side by side (the suite stays short)."""
    from tests.sandbox.driver import Slack

    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    slack = Slack(context.new_page(), sandbox.url)
    slack.open_channel("#ml-churn")
    slack.retrain("churn")
    slack.open_channel("#ml-fraud")
    slack.retrain("fraud")
    started = time.monotonic()
    yield started
    context.close()


def screenshot(page, name: str) -> None:
    target = os.environ.get("MODELBOT_SANDBOX_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / f"sandbox-{name}.png"))
