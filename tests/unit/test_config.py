import os

import pytest

from bot.config import ConfigError, load_settings, missing_for_start, secret


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    for k in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "PORT", "AIRFLOW_URL", "AIRFLOW_UI_URL",
              "AIRFLOW_USERNAME", "AIRFLOW_PASSWORD", "AIRFLOW_TOKEN", "MODELBOT_MAX_BODY_BYTES", "MODELBOT_RETENTION_DAYS"):
        monkeypatch.delenv(k, raising=False)


def test_defaults_follow_the_contract():
    s = load_settings()
    assert s.PORT == 3000 and s.DATABASE_URL == "sqlite:///modelbot.db" and s.MODELS_FILE == "models.toml"
    assert s.SLACK_API_URL == "https://slack.com/api/" and s.MODELBOT_JOB_INTERVAL_SECONDS == 30
    assert not s.airflow_configured


def test_missing_credentials_are_named():
    missing = missing_for_start(load_settings())
    assert any(m.startswith("SLACK_BOT_TOKEN") for m in missing)
    assert any(m.startswith("SLACK_SIGNING_SECRET") for m in missing)


def test_socket_mode_needs_no_signing_secret(monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1")
    assert missing_for_start(load_settings()) == []


def test_bad_port_names_the_variable(monkeypatch):
    monkeypatch.setenv("PORT", "http")
    with pytest.raises(ConfigError, match="PORT"):
        load_settings()


def test_airflow_url_with_api_suffix_is_refused(monkeypatch):
    monkeypatch.setenv("AIRFLOW_URL", "http://airflow:8080/api/v2")
    with pytest.raises(ConfigError, match="AIRFLOW_URL.*without /api/v2"):
        load_settings()


def test_postgres_urls_use_psycopg3(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://u@h/db")
    assert load_settings().sqlalchemy_url == "postgresql+psycopg://u@h/db"


# `make run` decides between the app and the sandbox from SLACK_BOT_TOKEN, in the environment or in .env. It must
# read .env the way the app does (python-dotenv): a token the app would use means the app, never the sandbox.
DOTENV_CASES = {
    "plain": "SLACK_BOT_TOKEN=xoxb-1\n",
    "export": "export SLACK_BOT_TOKEN=xoxb-1\n",
    "export, indented and spaced": "  export   SLACK_BOT_TOKEN = xoxb-1\n",
    "double quotes": 'SLACK_BOT_TOKEN="xoxb-1"\n',
    "export, single quotes, comment": "export SLACK_BOT_TOKEN='xoxb-1'  # the bot\n",
    "empty": "SLACK_BOT_TOKEN=\n",
    "empty quotes": 'export SLACK_BOT_TOKEN=""\n',
    "commented out": "# SLACK_BOT_TOKEN=xoxb-1\n",
    "another variable": "MY_SLACK_BOT_TOKEN=xoxb-1\n",
    "emptied by a later line": "SLACK_BOT_TOKEN=xoxb-1\nexport SLACK_BOT_TOKEN=\n",
}


def make_runs_the_app(directory) -> bool:
    """What `make -n run` would start, in a copy of the Makefile next to this .env (nothing is executed)."""
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    shutil.copy(root / "Makefile", directory / "Makefile")
    for needed in ("pyproject.toml", "constraints.txt"):  # what the install steps depend on
        (directory / needed).touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MAKE"))}
    result = subprocess.run(["make", "-n", "run"], cwd=directory, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    starts = [line for line in result.stdout.splitlines() if " -m bot" in line or " -m sandbox" in line]
    assert len(starts) == 1, result.stdout
    return " -m bot" in starts[0]


@pytest.mark.parametrize("dotenv", DOTENV_CASES.values(), ids=DOTENV_CASES.keys())
def test_make_run_reads_the_token_from_dotenv_as_the_app_does(tmp_path, dotenv):
    (tmp_path / ".env").write_text(dotenv)
    app_has_token = load_settings().SLACK_BOT_TOKEN is not None  # clean_env: we are in tmp_path, no env token
    assert make_runs_the_app(tmp_path) == app_has_token


# user:password@ in AIRFLOW_URL: the login it was meant as, and nowhere else (issue 21, item 14).

def test_credentials_in_airflow_url_become_the_login_and_leave_the_url(monkeypatch):
    monkeypatch.setenv("AIRFLOW_URL", "http://modelbot:s%40cret-pw@airflow:8080/")
    monkeypatch.setenv("AIRFLOW_UI_URL", "https://viewer:ui-pw@airflow.example.com")
    s = load_settings()
    assert s.AIRFLOW_URL == "http://airflow:8080" and s.AIRFLOW_UI_URL == "https://airflow.example.com"
    assert s.AIRFLOW_USERNAME == "modelbot" and secret(s.AIRFLOW_PASSWORD) == "s@cret-pw"
    assert "cret-pw" not in repr(s) and "ui-pw" not in repr(s)
    assert load_settings(AIRFLOW_TOKEN="tok").AIRFLOW_USERNAME is None  # a token says how to log in
    assert secret(load_settings(AIRFLOW_USERNAME="modelbot", AIRFLOW_PASSWORD="other").AIRFLOW_PASSWORD) == "other"


def test_two_airflow_users_are_refused_without_showing_the_password(monkeypatch):
    monkeypatch.setenv("AIRFLOW_URL", "http://modelbot:s3cret-pw@airflow:8080")
    with pytest.raises(ConfigError, match="AIRFLOW_URL logs in as `modelbot` but AIRFLOW_USERNAME says `ops`") as err:
        load_settings(AIRFLOW_USERNAME="ops")
    assert "s3cret-pw" not in str(err.value)


def test_the_airflow_adapter_keeps_credentials_out_of_its_texts_and_links():
    from bot.integrations.airflow import AirflowAdapter

    adapter = AirflowAdapter("http://modelbot:s3cret-pw@[::1]:8080", ui_url="http://u:ui-pw@airflow.example.com/")
    assert adapter.url == "http://[::1]:8080" and adapter.auth_mode == "password"
    assert adapter.run_url("d", "r") == "http://airflow.example.com/dags/d/runs/r"
    assert AirflowAdapter("http://a:b@airflow:8080", token="tok").auth_mode == "token"


@pytest.mark.parametrize("url, shown", [
    ("http://u:p@airflow:8080/base?token=t", "http://***@airflow:8080/base"),
    ("http://airflow:8080", "http://airflow:8080"),
    ("http://u:p@[::1]:8080", "http://***@[::1]:8080"),
    ("http://airflow:http", "(unparsable URL)"),
])
def test_urls_shown_in_healthz_are_redacted(url, shown):
    from bot.redaction import redact_url

    assert redact_url(url) == shown


def test_edges_have_safe_defaults():
    s = load_settings()
    assert s.MODELBOT_MAX_BODY_BYTES == 4 * 1024 * 1024 and s.MODELBOT_RETENTION_DAYS == 90
