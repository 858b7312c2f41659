import pytest

from bot.config import ConfigError, load_settings, missing_for_start


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    for k in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "PORT", "AIRFLOW_URL"):
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
