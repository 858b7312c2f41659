"""The services a handler or job needs, built once per process from the settings."""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from slack_sdk import WebClient

from bot.config import Settings, secret
from bot.integrations.airflow import AirflowAdapter
from bot.integrations.autoscaling import AutoScaling
from bot.integrations.aws import AwsClients
from bot.integrations.cloudwatch import CloudWatch
from bot.integrations.model_registry import ModelRegistry
from bot.integrations.price_list import PriceList
from bot.integrations.s3 import S3
from bot.integrations.sagemaker import SageMaker
from bot.redaction import redact_url
from bot.registry import Registry, load_registry
from bot.slack.client import make_web_client
from bot.store import Store


log = logging.getLogger(__name__)

FAIL_FAST_SLACK_TIMEOUT_SECONDS = 5
# (read timeout, tries) of the controller's AWS calls: one call ends within 2 x (3 s connect + 5 s read) = 16 s,
# well within the default 30 s tick.
CONTROLLER_AWS_DEADLINE = (5.0, 2)


class BoundedPool:
    """Threads for work that follows an ack, with a bound on what may wait: when `threads + queue` jobs are in,
    submit() says no at once, so the caller can answer "busy" instead of queueing work for minutes."""

    def __init__(self, threads: int, queue: int, name: str):
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        self._slots = threading.BoundedSemaphore(threads + queue)
        self.name = name

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        if not self._slots.acquire(blocking=False):
            return False

        def run() -> None:
            try:
                fn(*args, **kwargs)
            except Exception:  # a listener's failure is logged like Bolt's own; the pool keeps serving
                log.exception("%s: work after the ack failed", self.name)
            finally:
                self._slots.release()

        self._executor.submit(run)
        return True


@dataclass
class Services:
    settings: Settings
    registry: Registry
    store: Store
    slack: WebClient
    # Set by the web process: where post-ack command work runs (handlers/commands/deferred.py).
    command_deferral: Any = None
    # The outside systems on AWS, built once here and handed to whatever calls them. Building them is cheap:
    # a boto3 client is made on its first call and then shared (AwsClients).
    aws_clients: AwsClients = field(default_factory=AwsClients)
    sagemaker: SageMaker = field(init=False)
    cloudwatch: CloudWatch = field(init=False)
    s3: S3 = field(init=False)
    model_registry: ModelRegistry = field(init=False)
    price_list: PriceList = field(init=False)
    autoscaling: AutoScaling = field(init=False)

    def __post_init__(self) -> None:
        self.sagemaker = SageMaker(self.aws_clients)
        self.cloudwatch = CloudWatch(self.aws_clients)
        self.s3 = S3(self.aws_clients)
        self.model_registry = ModelRegistry(self.aws_clients)
        self.price_list = PriceList(self.aws_clients)
        self.autoscaling = AutoScaling(self.aws_clients)

    @classmethod
    def from_settings(cls, settings: Settings, *, migrate: bool = True) -> "Services":
        registry = load_registry(settings.MODELS_FILE)
        store = Store(settings.sqlalchemy_url)
        if migrate:
            store.migrate()
        return cls(
            settings=settings,
            registry=registry,
            store=store,
            slack=make_web_client(secret(settings.SLACK_BOT_TOKEN), settings.SLACK_API_URL),
        )

    @functools.cached_property
    def for_controller(self) -> "Services":
        """The same services on the rollout controller's clock: a Slack client that tries once, with a short
        timeout and no Retry-After sleep (what fails waits in the outbox, whose delivery job retries with
        back-off), and AWS clients whose every call ends within CONTROLLER_AWS_DEADLINE (an intent whose call
        timed out is carried out on the next tick, idempotently)."""
        fast = make_web_client(self.slack.token, self.slack.base_url, retries=False,
                               timeout=FAIL_FAST_SLACK_TIMEOUT_SECONDS)
        return dataclasses.replace(self, slack=fast, aws_clients=AwsClients(deadline=CONTROLLER_AWS_DEADLINE))

    @functools.cached_property
    def background(self) -> ThreadPoolExecutor:
        """Work that follows an ack. Few threads: each competes for the GIL with request threads that must
        ack within Slack's 3 s, so extra commands wait their turn here instead of slowing every ack down."""
        return ThreadPoolExecutor(max_workers=4, thread_name_prefix="after-ack")

    @functools.cached_property
    def listener_pool(self) -> BoundedPool:
        """Button clicks' and mentions' work: Bolt's own pool only acks, so slash-command acks never wait
        behind a transition; when this pool is full the click is answered "busy, try again in a minute"."""
        return BoundedPool(self.settings.MODELBOT_LISTENER_THREADS, self.settings.MODELBOT_LISTENER_QUEUE,
                           "listener-work")

    @functools.cached_property
    def airflow(self):
        """The Airflow adapter, or None when AIRFLOW_URL is unset (features answer "not configured")."""
        if not self.settings.airflow_configured:
            return None
        return AirflowAdapter.from_settings(self.settings)

    def integrations(self) -> dict[str, str]:
        s = self.settings
        return {
            "slack": "socket mode" if s.socket_mode else "http",
            "airflow": redact_url(s.AIRFLOW_URL) or "not configured",
            "aws": redact_url(s.AWS_ENDPOINT_URL) or f"region {s.AWS_REGION or self.registry.defaults.region}",
            "pagerduty": "configured" if s.PAGERDUTY_ROUTING_KEY else "not configured",
            "database": self.store.dialect,
            "models": str(len(self.registry.models)),
        }
