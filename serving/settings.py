"""What the container is told through its environment: SageMaker's variables first, then modelbot's own."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from serving.errors import StartupError

# SageMaker refuses real-time payloads over 6 MB before they reach the container; the same limit here keeps a
# local or in-VPC caller from filling a worker's memory.
DEFAULT_MAX_REQUEST_BYTES = 6 * 1024 * 1024
DEFAULT_TIMEOUT_SECONDS = 60  # SageMaker's own invocation timeout for real-time endpoints
DEFAULT_THREADS = 4


def failure_file(environ: Mapping[str, str] | None = None) -> str:
    """Where the one-line start-up failure goes besides stderr (SageMaker's convention), read before anything
    else can fail."""
    env = os.environ if environ is None else environ
    return env.get("MODELBOT_SERVE_FAILURE_FILE") or "/opt/ml/output/failure"


@dataclass(frozen=True)
class Settings:
    module: str
    model_dir: str
    host: str
    port: int
    workers: int
    threads: int
    timeout: int
    max_request_bytes: int

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, *, port: int | None = None,
                     host: str | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        module = (env.get("MODELBOT_MODEL_MODULE") or "").strip()
        if not module:
            raise StartupError("MODELBOT_MODEL_MODULE is not set: set it to the name of your model's module, "
                               "the one defining predict, REQUEST_SCHEMA and RESPONSE_SCHEMA (for churn_model.py: "
                               "MODELBOT_MODEL_MODULE=churn_model)")
        if module.endswith(".py") or "/" in module:
            name = module.rsplit("/", 1)[-1].removesuffix(".py")
            raise StartupError(f"MODELBOT_MODEL_MODULE={module} is a file; it takes the module's import name "
                               f"({name}), with its directory on PYTHONPATH or as the working directory")
        return cls(
            module=module,
            model_dir=env.get("SM_MODEL_DIR") or "/opt/ml/model",
            host=host or "0.0.0.0",
            port=port if port is not None else _int(env, "SAGEMAKER_BIND_TO_PORT", 8080, 1, 65535),
            workers=_int(env, "SAGEMAKER_MODEL_SERVER_WORKERS", _cpus(), 1, 256),
            threads=_int(env, "MODELBOT_SERVE_THREADS", DEFAULT_THREADS, 1, 256),
            timeout=_int(env, "SAGEMAKER_MODEL_SERVER_TIMEOUT", DEFAULT_TIMEOUT_SECONDS, 1, 3600),
            max_request_bytes=_int(env, "MODELBOT_SERVE_MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES, 1, 2**40),
        )


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise StartupError(f"{name}={raw} is not a whole number from {low} to {high}")
    return value


def _cpus() -> int:
    """The CPUs this process may run on (a container's cpuset), not the host's count."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1
