"""modelbot's own image (the root Dockerfile) built and run for a team with compose.yaml: web, worker, PostgreSQL.

Minutes of work, so it runs from `make image-test` (MODELBOT_IMAGE_TEST=1) and only where a Docker daemon and
Compose answer; anywhere else it is skipped with the reason. As the serving image's test does (shared helpers in
tests/docker_images.py), the build is offline (every wheel in the context's wheels/, PIP_NO_INDEX=1) and the base
image is made from Debian's packages unless MODELBOT_IMAGE_BASE names one. PostgreSQL too: no registry is
reachable here, so unless MODELBOT_IMAGE_BASE is set (then postgres:16), the test makes a PostgreSQL image from
Debian's packages whose entrypoint takes the official image's POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB.

What a team would do is what the test does: compose.yaml copied into a folder of its own beside a .env and a
models.toml, `compose up`, then a signed `/model help` through the published port.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
import requests

from sandbox.slack_emulator import SlackEmulator
from tests.docker_images import ROOT, base_image, debian_image, download_wheels, image_test_skip, sh
from tests.harness import free_port, sign

IMAGE = "modelbot-test:compose"
POSTGRES = "modelbot-test-postgres:bookworm"
SECRET = "compose-test-signing-secret"


def _compose() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


if (_skip := image_test_skip()) is not None:
    pytestmark = _skip
elif _compose() is None:
    pytestmark = pytest.mark.skip(reason="neither `docker compose` nor `docker-compose` is installed "
                                         "(apt-get install docker-compose)")

# The official image's interface, on Debian's PostgreSQL 15: a first start creates the user and the database.
POSTGRES_ENTRYPOINT = r"""#!/bin/sh
set -eu
bin=/usr/lib/postgresql/15/bin
data=/var/lib/postgresql/data
mkdir -p "$data" /run/postgresql
chown -R postgres:postgres "$data" /run/postgresql
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ ! -s "$data/PG_VERSION" ]; then
    printf '%s\n' "$POSTGRES_PASSWORD" > /tmp/pw && chown postgres /tmp/pw
    as_postgres "$bin/initdb" -D "$data" --username="$POSTGRES_USER" --pwfile=/tmp/pw --auth=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm /tmp/pw
    echo "host all all 0.0.0.0/0 scram-sha-256" >> "$data/pg_hba.conf"
    echo "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\";" \
        | as_postgres "$bin/postgres" --single -D "$data" -j postgres >/dev/null
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$bin/postgres" -D "$data" -c listen_addresses='*'
"""


def _context(tmp: Path) -> Path:
    """The checkout as `docker build .` sees it (tracked and new files, not ignored ones), plus wheels/."""
    ctx = tmp / "ctx"
    files = sh("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT).stdout.split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (ctx / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, ctx / name)
    download_wheels(ctx / "wheels", f"{ROOT}[app]", "setuptools>=68", "wheel")
    return ctx


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("images")
    base = base_image(tmp)
    began = time.monotonic()
    sh("docker", "build", "--force-rm", "--tag", IMAGE, "--build-arg", f"BASE_IMAGE={base}",
       "--build-arg", "PIP_NO_INDEX=1", str(_context(tmp)), timeout=1800, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    built_in = time.monotonic() - began  # the wheels' download included
    if os.environ.get("MODELBOT_IMAGE_BASE"):
        postgres = "postgres:16"
    else:
        pg_base = debian_image(tmp, "modelbot-test-postgres-base:bookworm", "postgresql,ca-certificates")
        pg_ctx = tmp / "postgres"
        pg_ctx.mkdir()
        (pg_ctx / "entrypoint.sh").write_text(POSTGRES_ENTRYPOINT)
        (pg_ctx / "Dockerfile").write_text(f"FROM {pg_base}\nCOPY entrypoint.sh /entrypoint.sh\n"
                                           "RUN chmod 755 /entrypoint.sh\nENV PATH=/usr/lib/postgresql/15/bin:$PATH\n"
                                           'CMD ["/entrypoint.sh"]\n')
        sh("docker", "build", "--force-rm", "--tag", POSTGRES, str(pg_ctx), env={**os.environ, "DOCKER_BUILDKIT": "0"})
        postgres = POSTGRES
    yield {"modelbot": IMAGE, "postgres": postgres, "built_in": built_in}
    sh("docker", "image", "rm", "--force", IMAGE, check=False)


@pytest.fixture(scope="module")
def slack():
    # The web process checks its token with Slack (auth.test) as it starts: the emulator answers, on an address the
    # containers reach through the Docker host (host.docker.internal).
    emulator = SlackEmulator(host="0.0.0.0").start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def team(images, slack, tmp_path_factory):
    """compose.yaml in a folder of its own with a .env and a models.toml, up; torn down with its volume."""
    project = tmp_path_factory.mktemp("team")
    shutil.copy(ROOT / "compose.yaml", project / "compose.yaml")
    (project / "models.toml").write_text('[defaults]\nadmins = ["U0ADMIN"]\n\n[models.churn]\nchannel = "C0CHURN"\n'
                                         'owners = ["U0ALICE"]\n')
    (project / ".env").write_text("\n".join([
        "SLACK_BOT_TOKEN=xoxb-compose-test", f"SLACK_SIGNING_SECRET={SECRET}",
        f"SLACK_API_URL=http://host.docker.internal:{slack.port}/api/",
        "MODELBOT_JOB_INTERVAL_SECONDS=2", "MODELBOT_PRICE_REFRESH_HOURS=0", "MODELBOT_COMMAND_PROCESSES=1", ""]))
    # Only what a test needs on top: the emulator's address inside the containers.
    (project / "compose.test.yaml").write_text(
        "services:\n" + "".join(f"  {s}:\n    extra_hosts:\n      - \"host.docker.internal:host-gateway\"\n"
                                for s in ("web", "worker")))
    port = free_port()
    env = {**os.environ, "MODELBOT_IMAGE": images["modelbot"], "POSTGRES_IMAGE": images["postgres"],
           "MODELBOT_PORT": f"127.0.0.1:{port}", "COMPOSE_PROJECT_NAME": f"modelbottest{os.getpid()}"}
    compose = [*_compose(), "-f", str(project / "compose.yaml"), "-f", str(project / "compose.test.yaml")]

    def run(*args: str, **kw) -> subprocess.CompletedProcess:
        return sh(*compose, *args, cwd=project, env=env, **kw)

    started = time.monotonic()
    run("up", "--detach", "--no-build", timeout=300)
    try:
        yield {"url": f"http://127.0.0.1:{port}", "run": run, "started": started}
    finally:
        run("down", "--volumes", "--timeout", "10", check=False, timeout=300)


def _ready(url: str, run, seconds: float = 180) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        try:
            answer = requests.get(url + "/healthz", timeout=5)
            if answer.status_code == 200 and answer.json().get("command_processes") == "ready":
                return answer.json()
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("web did not become ready:\n" + run("logs", "--no-color", check=False).stdout[-5000:])
        time.sleep(1)


@pytest.mark.timeout(2400)  # the image is built in the fixture: minutes of pip on a busy machine
def test_web_worker_and_postgres_run_from_one_image_and_answer_a_signed_command(team, images, capsys):
    health = _ready(team["url"], team["run"])
    ready_after = time.monotonic() - team["started"]
    assert health["database"] == "ok" and health["integrations"]["database"] == "postgresql", health

    body = urllib.parse.urlencode({"command": "/model", "text": "help", "user_id": "U0ALICE", "channel_id": "C0CHURN",
                                   "team_id": "T0EMULATOR", "response_url": "http://127.0.0.1:9/unused",
                                   "trigger_id": "1.2.3"}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body, SECRET)}
    answer = requests.post(team["url"] + "/slack/events", data=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    text = json.dumps(answer.json())
    assert "/model status" in text and "/model rollback" in text, text
    forged = requests.post(team["url"] + "/slack/events", data=body, timeout=10,
                           headers={**headers, "X-Slack-Signature": "v0=" + "0" * 64})
    assert forged.status_code == 401

    # The worker runs its jobs against the same database: the web process's /metrics reads their times from it.
    deadline = time.monotonic() + 120
    while "modelbot_job_last_completed_timestamp_seconds{job=\"retention\"}" not in requests.get(
            team["url"] + "/metrics", timeout=5).text:
        assert time.monotonic() < deadline, team["run"]("logs", "--no-color", "worker", check=False).stdout[-5000:]
        time.sleep(2)

    # Migrations were applied once: web and worker both migrate at start under PostgreSQL's advisory lock, and
    # only the first to take it found work to do.
    logs = {s: team["run"]("logs", "--no-color", s).stdout for s in ("web", "worker")}
    applied = {s: log.count("Running upgrade  -> 0001") for s, log in logs.items()}
    assert sorted(applied.values()) == [0, 1], applied
    ps = team["run"]("ps").stdout
    assert "web" in ps and "worker" in ps and "Exit" not in ps, ps
    size = int(sh("docker", "image", "inspect", "--format", "{{.Size}}", images["modelbot"]).stdout)
    with capsys.disabled():
        print(f"\nmodelbot's image: {size / 1e6:.0f} MB, built in {images['built_in']:.0f} s; compose up to a "
              f"ready web process: {ready_after:.0f} s; "
              f"migrations applied by {[s for s, n in applied.items() if n]}")
