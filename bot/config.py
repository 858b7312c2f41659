"""Settings from the environment (and a .env file), as docs/reference/environment.md describes them (generated from
this class)."""

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
    SLACK_BOT_TOKEN: SecretStr | None = Field(default=None, description=(
        "the bot token (xoxb-...), from OAuth & Permissions; without it `make run` starts the sandbox"))
    SLACK_SIGNING_SECRET: SecretStr | None = Field(default=None, description=(
        "Basic Information > Signing Secret: verifies Slack's requests; required in HTTP mode"))
    SLACK_APP_TOKEN: SecretStr | None = Field(default=None, description=(
        "app-level token (xapp-..., scope connections:write): when set, Socket Mode instead of HTTP"))
    SLACK_API_URL: str = Field(default="https://slack.com/api/", description="Slack Web API base URL")
    PORT: int = Field(default=3000, ge=1, le=65535, description=(
        "the web process's HTTP port: POST /slack/events, GET /healthz, GET /metrics"))
    DATABASE_URL: str = Field(default="sqlite:///modelbot.db", description=(
        "SQLAlchemy URL; postgresql://... uses psycopg 3; PostgreSQL for more than one host"))
    MODELS_FILE: str = Field(default="models.toml", description="the models file (the model registry)")
    AIRFLOW_URL: str | None = Field(default=None, description=(
        "Airflow base URL without /api/v2 (user:password@ in it is the login); unset: Airflow features answer "
        "\"not configured\""))
    AIRFLOW_USERNAME: str | None = Field(default=None, description=(
        "Airflow user: modelbot gets a token with POST /auth/token and logs in again on a 401"))
    AIRFLOW_PASSWORD: SecretStr | None = Field(default=None, description="the Airflow user's password")
    AIRFLOW_TOKEN: SecretStr | None = Field(default=None, description=(
        "a fixed Airflow token instead of a user and password"))
    AWS_REGION: str | None = Field(default=None, description=(
        "boto3's region (models use [defaults] region or their own); other AWS_* settings are boto3's own"))
    AWS_ENDPOINT_URL: str | None = Field(default=None, description=(
        "boto3's endpoint for every AWS service (tests point it at moto)"))
    PAGERDUTY_ROUTING_KEY: SecretStr | None = Field(default=None, description=(
        "Events API v2 integration key: rollbacks also open PagerDuty incidents; unset: Slack only"))
    PAGERDUTY_EVENTS_URL: str = Field(default="https://events.pagerduty.com/v2/enqueue", description=(
        "PagerDuty Events API v2 endpoint"))
    MODELBOT_JOB_INTERVAL_SECONDS: float = Field(default=30, gt=0, description="the worker's period for every job")
    # Extensions (not in the contract table, all optional).
    # One worker by default: /metrics counts per process, and post-ack work already runs in other processes.
    MODELBOT_WEB_WORKERS: int = Field(default=1, ge=1, description=(
        "gunicorn worker processes of the web process (with more than one, /metrics shows the answering one's counts)"))
    MODELBOT_WEB_THREADS: int = Field(default=16, ge=1, description="threads in each web worker process")
    MODELBOT_COMMAND_PROCESSES: int = Field(default=2, ge=0, description=(
        "processes that run a command's work after the ack (0: threads in the web process)"))
    MODELBOT_PAGE_ESCALATION_MINUTES: float = Field(default=15, gt=0, description=(
        "an unacknowledged page escalates after this long"))
    # The interface the HTTP port listens on (127.0.0.1 keeps /healthz and /metrics off the network).
    MODELBOT_BIND: str = Field(default="0.0.0.0", description=(
        "the interface the web port and the worker's metrics port listen on"))
    MODELBOT_LISTENER_THREADS: int = Field(default=4, ge=1, description=(
        "threads that run button clicks' and mentions' work after the ack"))
    MODELBOT_LISTENER_QUEUE: int = Field(default=32, ge=0, description=(
        "clicks and mentions that may wait for a thread; more: \"busy, try again in a minute\""))
    AIRFLOW_UI_URL: str | None = Field(default=None, description=(
        "base of the run links in threads, when people reach Airflow at another address; unset: AIRFLOW_URL"))
    # A request body larger than this is refused with 413 before it is read (Bolt reads a body whole, before it
    # checks the signature).
    MODELBOT_MAX_BODY_BYTES: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024, description=(
        "a larger request body is refused with 413, unread"))
    MODELBOT_RETENTION_DAYS: float = Field(default=90, ge=0, description=(
        "handled Slack deliveries, delivered outbox rows and finished rollouts' events are kept this long; 0: for "
        "ever"))

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
