"""The real part of the simulated traffic: a few requests a second to each variant that takes traffic, sent
with boto3's `sagemaker-runtime` InvokeEndpoint to the sandbox's hosting (sandbox/runtime.py), where each
variant's modelbot-serve answers them.

What they answer is what the simulated volume's error counts are scaled from: each variant keeps its last
WINDOW outcomes, and its served 5XX and 4XX rates (a 4XX/5XX of the model comes back as a ModelError with
the model's status) are added to the panel's injected rates when the traffic writes CloudWatch's counts. A
variant whose container is still starting is not sampled (SageMaker would not route to it yet).

Requests look like production's: churn's are customers (four per request, as a CRM job scores them), fraud's
single payments, drawn by each model's module (sandbox/models/); every request carries an InferenceId, which
data capture keeps and churn's labels name.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

SAMPLE_PER_SECOND = 3.0  # requests per second to each variant with a weight above 0
WINDOW = 300  # outcomes per variant the served rates are taken over (about 100 s)
REPLAY_INSTANCES = 25  # customers per request while calm days are replayed at start


def _draw(kind: str) -> Callable[[np.random.Generator, int], "object"]:
    if kind == "churn":
        from sandbox.models.churn_model import draw_customers

        return draw_customers
    if kind == "fraud":
        from sandbox.models.fraud_model import draw_payments

        return draw_payments
    raise ValueError(f"no request generator {kind!r} (churn or fraud)")


@dataclass
class Outcomes:
    """What one variant answered the sample lately."""

    recent: deque = field(default_factory=lambda: deque(maxlen=WINDOW))  # "2xx" | "4xx" | "5xx"
    minute: deque = field(default_factory=deque)  # (time, outcome) of the last 60 s
    sent: int = 0
    starting: bool = False
    last_error: dict | None = None

    def add(self, outcome: str, now: float) -> None:
        self.recent.append(outcome)
        self.minute.append((now, outcome))
        while self.minute and self.minute[0][0] < now - 60:
            self.minute.popleft()
        self.sent += 1

    def rates(self) -> tuple[float, float]:
        n = len(self.recent)
        if not n:
            return 0.0, 0.0
        return self.recent.count("5xx") / n, self.recent.count("4xx") / n

    def describe(self) -> dict:
        r5, r4 = self.rates()
        last = [o for _, o in self.minute]
        return {"window": len(self.recent), "rate_5xx": r5, "rate_4xx": r4, "sent": self.sent,
                "last_minute": {"requests": len(last), "errors_5xx": last.count("5xx"),
                                "errors_4xx": last.count("4xx")},
                "starting": self.starting, "last_error": self.last_error}


class Sampler:
    def __init__(self, runtime, endpoints: dict[str, dict], *, world=None, rng: np.random.Generator | None = None,
                 per_second: float = SAMPLE_PER_SECOND):
        """`runtime`: a boto3 sagemaker-runtime client; `endpoints`: name -> {"requests": "churn"|"fraud",
        "instances": n}; `world`: churn's world (sandbox/churn_world.py), told of churn's predictions."""
        self.runtime, self.world, self.per_second = runtime, world, per_second
        self.rng = rng or np.random.default_rng()
        self.specs = {name: {"draw": _draw(spec.get("requests", "churn")), "kind": spec.get("requests", "churn"),
                             "instances": int(spec.get("instances", 1))} for name, spec in endpoints.items()}
        self.lock = threading.Lock()
        self.outcomes: dict[tuple[str, str], Outcomes] = {}
        self.errors: list[str] = []

    def example(self, endpoint: str) -> dict:
        """One instance as this endpoint's callers send it (the page's Try-a-request box starts from it)."""
        frame = self.specs[endpoint]["draw"](self.rng, 1)
        return json.loads(frame.to_json(orient="records"))[0]

    def _outcomes(self, endpoint: str, variant: str) -> Outcomes:
        with self.lock:
            return self.outcomes.setdefault((endpoint, variant), Outcomes())

    def send(self, endpoint: str, variant: str, instances: int | None = None) -> str | None:
        """One request to the variant. Its outcome ("2xx", "4xx", "5xx"), or None when it says nothing about the
        model (the container is starting, the variant just left, the runtime did not answer)."""
        spec = self.specs[endpoint]
        frame = spec["draw"](self.rng, instances or spec["instances"])
        body = json.dumps({"instances": json.loads(frame.to_json(orient="records"))})
        inference_id = str(uuid.uuid4())
        track = self._outcomes(endpoint, variant)
        try:
            self.runtime.invoke_endpoint(EndpointName=endpoint, TargetVariant=variant, Body=body,
                                         ContentType="application/json", Accept="application/json",
                                         InferenceId=inference_id)
            outcome = "2xx"
            if spec["kind"] == "churn" and self.world is not None:
                self.world.observe(inference_id, frame)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code != "ModelError":
                track.starting = "is starting" in str(exc)
                if not track.starting:
                    self._error(f"InvokeEndpoint {endpoint} {variant}: {exc}")
                return None
            status = int(exc.response.get("OriginalStatusCode") or 500)
            outcome = "4xx" if 400 <= status < 500 else "5xx"
            track.last_error = {"status": status, "message": _model_message(exc.response.get("OriginalMessage")),
                                "at": time.time()}
        except BotoCoreError as exc:
            self._error(f"InvokeEndpoint {endpoint} {variant}: the sandbox's SageMaker runtime did not answer: {exc}")
            return None
        with self.lock:
            track.starting = False
            track.add(outcome, time.time())
        return outcome

    def sample(self, endpoint: str, weights: dict[str, float], seconds: float) -> None:
        """The requests of `seconds` to each variant that takes traffic."""
        n = max(1, round(self.per_second * seconds))
        for variant, weight in sorted(weights.items()):
            if weight > 0:
                for _ in range(n):
                    if self.send(endpoint, variant) is None:
                        break

    def served_rates(self, endpoint: str, variant: str) -> tuple[float, float]:
        with self.lock:
            found = self.outcomes.get((endpoint, variant))
            return found.rates() if found else (0.0, 0.0)

    def describe(self, endpoint: str, variant: str) -> dict:
        with self.lock:
            found = self.outcomes.get((endpoint, variant))
            return found.describe() if found else Outcomes().describe()

    def forget(self, endpoint: str, keep: set[str]) -> None:
        with self.lock:
            for key in [k for k in self.outcomes if k[0] == endpoint and k[1] not in keep]:
                del self.outcomes[key]

    def replay(self, endpoint: str, variants: Callable[[], dict[str, float]], *, begin: Callable[[], None],
               running: Callable[[], bool], stopping: threading.Event, timeout: float = 120.0) -> int:
        """Batches of REPLAY_INSTANCES to each variant with traffic while `running()` (the clock replays calm
        days). Waits (up to `timeout`) for the endpoint to answer first; `begin()` is called at its first answer
        (the replay's clock starts then). Returns the requests answered."""
        answered, deadline = 0, time.monotonic() + timeout
        while not stopping.is_set():
            weights = {v: w for v, w in variants().items() if w > 0}
            got = sum(self.send(endpoint, v, REPLAY_INSTANCES) is not None for v in sorted(weights))
            if got and not answered:
                begin()
            answered += got
            if answered and not running():
                return answered
            if not answered and time.monotonic() > deadline:
                self._error(f"{endpoint} did not answer within {timeout:.0f}s: no calm days were replayed")
                return 0
            stopping.wait(0.1 if answered else 0.5)
        return answered

    def _error(self, message: str) -> None:
        with self.lock:
            self.errors = (self.errors + [f"{time.strftime('%H:%M:%S')} {message}"])[-20:]


def _model_message(original: str | None) -> str:
    """modelbot-serve's error body in one line: what went wrong and the first fields."""
    try:
        body = json.loads(original or "")
        fields = "".join(f"; {e.get('field')}: {e.get('message')}" for e in (body.get("errors") or [])[:2])
        return (body.get("error", "") + fields)[:400]
    except (ValueError, AttributeError):
        return (original or "")[:400]
