"""What must stay on this machine does: the sandbox page drives modelbot only for its own page, and the worker's
/metrics listens where MODELBOT_BIND says."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import requests

from sandbox.page_server import PageServer, World
from tests.conftest import MODELS_TOML
from tests.e2e.listening import listening_addresses
from tests.harness import ROOT, app_env, free_port, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def page(slack):
    # Nothing listens at bot_url: a command that gets through is recorded by the page and fails to reach modelbot.
    world = World(emulator=slack, bot_url=f"http://127.0.0.1:{free_port()}/slack/events", signing_secret="s",
                  me="U0YOU", channels={"C0CHURN": "ml-churn"})
    server = PageServer(world, free_port()).start()
    yield server
    server.stop()


def _command(page, **headers) -> requests.Response:
    return requests.post(page.url + "/api/command", json={"channel": "C0CHURN", "text": "/model rollback churn"},
                         headers=headers, timeout=10)


def test_the_sandbox_page_answers_its_own_page_by_either_local_name(page):
    port = page.url.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert requests.get(page.url + "/", headers={"Host": host}, timeout=5).status_code == 200
        assert _command(page, Host=host, Origin=f"http://{host}").status_code == 200
    assert len(page.state.history) == 2


def test_a_dns_rebinding_name_is_refused_and_told_why(page):
    port = page.url.rsplit(":", 1)[1]
    state = requests.get(page.url + "/api/state", headers={"Host": f"attacker.example:{port}"}, timeout=5)
    assert state.status_code == 403
    assert "attacker.example" in state.json()["error"] and "DNS-rebinding" in state.json()["error"]
    index = requests.get(page.url + "/", headers={"Host": f"attacker.example:{port}"}, timeout=5)
    assert index.status_code == 403 and f"http://127.0.0.1:{port}/" in index.text
    assert _command(page, Host=f"attacker.example:{port}").status_code == 403
    # The right name on another port is not this server either.
    assert _command(page, Host=f"127.0.0.1:{int(port) + 1}").status_code == 403
    assert page.state.history == []


def test_a_page_of_another_site_cannot_drive_the_sandbox(page):
    port = page.url.rsplit(":", 1)[1]
    for origin in ("http://attacker.example", f"http://127.0.0.1:{int(port) + 1}", "null"):
        refused = _command(page, Origin=origin)
        assert refused.status_code == 403, origin
        assert "only from its own page" in refused.json()["error"]
    assert page.state.history == []


def test_the_workers_metrics_listen_where_modelbot_bind_says(tmp_path, moto_url, slack):
    models = tmp_path / "models.toml"
    models.write_text(MODELS_TOML)
    port = free_port()
    env = app_env(slack=slack, moto_url=moto_url, database_url=f"sqlite:///{tmp_path / 'm.db'}", models_file=models,
                  MODELBOT_BIND="127.0.0.1", MODELBOT_WORKER_METRICS_PORT=str(port),
                  MODELBOT_JOB_INTERVAL_SECONDS="600")
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "jobs"], cwd=ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def answers() -> bool:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            try:
                return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(answers, timeout=60, interval=0.2, message="the worker's /metrics")
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
