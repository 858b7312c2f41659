"""Settings from the environment (and a .env file), per the configuration contract in DESIGN.md."""

from __future__ import annotations

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.redaction import split_credentials

# Slack's largest requests are interaction payloads carrying a whole message or view: 50 (a view: 100) blocks of
# up to 3,000 characters, which JSON escaping and form encoding can triple or more. 4 MiB leaves room for the
# worst of those; 16 request threads then hold at most 64 MiB of bodies.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable and what to do."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=True)

    # Secrets are SecretStr: a repr, a log line or a traceback of the settings shows '**********'.
    SLACK_BOT_TOKEN: SecretStr | None = None
    SLACK_SIGNING_SECRET: SecretStr | None = None
    SLACK_APP_TOKEN: SecretStr | None = None
    SLACK_API_URL: str = "https://slack.com/api/"
    PORT: int = Field(default=3000, ge=1, le=65535)
    DATABASE_URL: str = "sqlite:///modelbot.db"
    MODELS_FILE: str = "models.toml"
    AIRFLOW_URL: str | None = None
    AIRFLOW_USERNAME: str | None = None
    AIRFLOW_PASSWORD: SecretStr | None = None
    AIRFLOW_TOKEN: SecretStr | None = None
    AWS_REGION: str | None = None
    AWS_ENDPOINT_URL: str | None = None
    PAGERDUTY_ROUTING_KEY: SecretStr | None = None
    PAGERDUTY_EVENTS_URL: str = "https://events.pagerduty.com/v2/enqueue"
    MODELBOT_JOB_INTERVAL_SECONDS: float = Field(default=30, gt=0)
    # Extensions (not in the contract table, all optional).
    # One worker by default: /metrics counts per process, and post-ack work already runs in other processes.
    MODELBOT_WEB_WORKERS: int = Field(default=1, ge=1)
    MODELBOT_WEB_THREADS: int = Field(default=16, ge=1)
    # Processes that run commands' post-ack work (0: threads in the web process).
    MODELBOT_COMMAND_PROCESSES: int = Field(default=2, ge=0)
    MODELBOT_PAGE_ESCALATION_MINUTES: float = Field(default=15, gt=0)
    # The interface the HTTP port listens on (127.0.0.1 keeps /healthz and /metrics off the network).
    MODELBOT_BIND: str = "0.0.0.0"
    # Threads that run button clicks' and mentions' work after the ack, and how many may wait for one.
    MODELBOT_LISTENER_THREADS: int = Field(default=4, ge=1)
    MODELBOT_LISTENER_QUEUE: int = Field(default=32, ge=0)
    AIRFLOW_UI_URL: str | None = None
    # A request body larger than this is refused with 413 before it is read (Bolt reads a body whole, before it
    # checks the signature).
    MODELBOT_MAX_BODY_BYTES: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    # Handled Slack deliveries, delivered outbox rows and finished rollouts' evidence are kept this long (jobs/
    # retention.py); 0 keeps them for ever.
    MODELBOT_RETENTION_DAYS: float = Field(default=90, ge=0)

    @field_validator("SLACK_API_URL")
    @classmethod
    def _trailing_slash(cls, v: str) -> str:
        return v if v.endswith("/") else v + "/"

    @field_validator("AIRFLOW_URL")
    @classmethod
    def _no_api_suffix(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        v = v.rstrip("/")
        if v.endswith("/api/v2"):
            raise ValueError("give the Airflow base URL without /api/v2, e.g. http://airflow:8080")
        return v

    @field_validator("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "AIRFLOW_PASSWORD", "AIRFLOW_TOKEN",
                     "PAGERDUTY_ROUTING_KEY", mode="before")
    @classmethod
    def _empty_is_unset(cls, v):
        return None if v == "" else v

    @model_validator(mode="after")
    def _airflow_credentials_out_of_the_url(self) -> "Settings":
        """`user:password@` in AIRFLOW_URL is the Airflow login (unless AIRFLOW_TOKEN or AIRFLOW_USERNAME says
        otherwise); the URL is kept without it, so no message, link or log line can show it."""
        if self.AIRFLOW_UI_URL:
            self.AIRFLOW_UI_URL = split_credentials(self.AIRFLOW_UI_URL).url
        if not self.AIRFLOW_URL:
            return self
        split = split_credentials(self.AIRFLOW_URL)
        if not split.had_credentials:
            return self
        self.AIRFLOW_URL = split.url
        if self.AIRFLOW_USERNAME and split.username and self.AIRFLOW_USERNAME != split.username:
            raise ValueError(f"AIRFLOW_URL logs in as `{split.username}` but AIRFLOW_USERNAME says "
                             f"`{self.AIRFLOW_USERNAME}`: keep one of them")
        if not self.AIRFLOW_TOKEN and not self.AIRFLOW_USERNAME and split.username:
            self.AIRFLOW_USERNAME = split.username
            if not self.AIRFLOW_PASSWORD and split.password is not None:
                self.AIRFLOW_PASSWORD = SecretStr(split.password)
        return self

    @property
    def socket_mode(self) -> bool:
        return bool(self.SLACK_APP_TOKEN)

    @property
    def airflow_configured(self) -> bool:
        return bool(self.AIRFLOW_URL)

    @property
    def sqlalchemy_url(self) -> str:
        return normalise_database_url(self.DATABASE_URL)


def secret(value: SecretStr | None) -> str | None:
    """The plain text of a secret setting, for the one call that needs it (None when unset)."""
    return value.get_secret_value() if value is not None else None


def normalise_database_url(url: str) -> str:
    """Heroku-style postgres:// URLs and bare postgresql:// both mean psycopg 3 here."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def load_settings(**overrides) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            problems.append(f"{name}: {err['msg']}")
        raise ConfigError("Invalid configuration: " + "; ".join(problems)) from None


def missing_for_start(settings: Settings) -> list[str]:
    """What must still be set before the web process can talk to Slack, as 'NAME (why)' lines."""
    missing = []
    if not settings.SLACK_BOT_TOKEN:
        missing.append("SLACK_BOT_TOKEN (the bot token, xoxb-..., from OAuth & Permissions)")
    if settings.socket_mode:
        if not secret(settings.SLACK_APP_TOKEN).startswith("xapp-"):
            missing.append("SLACK_APP_TOKEN (must be an app-level token starting with xapp-, scope connections:write)")
    elif not settings.SLACK_SIGNING_SECRET:
        missing.append(
            "SLACK_SIGNING_SECRET (Basic Information > Signing Secret; needed in HTTP mode) "
            "or SLACK_APP_TOKEN (xapp-..., for Socket Mode)"
        )
    return missing
