"""churn's world in the sandbox: the truth behind churn's labels, the drift that moves it, and the labels
themselves, which arrive after the predictions in SageMaker Model Monitor's ground-truth format.

- **Truth.** A customer churns with probability sigmoid(intercept + a * tenure_z + b * complaints_z)
  (sandbox/models/churn_model.py draws customers and computes it). Calm: a = 1.5, b = 1.0.
- **Drift.** While the page's drift control is on, each day of churn's world (sandbox/world_clock.py) moves it:
  tenure weighs DRIFT_PER_DAY less (down to -1: long-standing customers start leaving) and complaints 0.2 more
  (up to 2), and the clock fast-forwards one day per DAY_SECONDS until it reaches today. A model trained on
  the calm world ranks customers worse and worse; one retrained on the moved world ranks them well again.
  The world is published as JSON in S3 (WORLD_URI) for the model's `preprocess` (the sandbox's warehouse).
- **Labels.** Each churn prediction the traffic gets back is labelled from the truth at the moment it was made,
  and the label is uploaded LABEL_DELAY_SECONDS later to the `[models.churn.quality] labels` prefix, in the hour
  folder of the clock at upload (the hour it was collected), one ground-truth record per request with one value
  per instance ("1,0,0,1", modelbot's convention for a request with several instances), joined on the
  request's InferenceId.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from sandbox.world_clock import DAY, WorldClock

LABEL_DELAY_SECONDS = 15.0
DAY_SECONDS = 20.0  # real seconds per day of churn's world while the drift control is on
DRIFT_PER_DAY = 0.5
CALM = {"intercept": -0.3, "tenure_z": 1.5, "complaints_z": 1.0}
WORLD_URI = "s3://modelbot-sandbox/world/churn.json"


def coefficients(drift_days: float) -> dict[str, float]:
    """churn's world after `drift_days` days of drift."""
    return {"intercept": CALM["intercept"],
            "tenure_z": max(-1.0, CALM["tenure_z"] - DRIFT_PER_DAY * drift_days),
            "complaints_z": min(2.0, CALM["complaints_z"] + 0.2 * drift_days)}


def ground_truth(inference_id: str, labels: list[int]) -> dict:
    """One Model Monitor ground-truth record for a request: its labels, one per instance, as CSV."""
    return {"groundTruthData": {"data": ",".join(str(y) for y in labels), "encoding": "CSV"},
            "eventMetadata": {"eventId": inference_id}, "eventVersion": "0"}


@dataclass
class _Pending:
    due: float  # real time the label is uploaded
    record: dict


class ChurnWorld:
    def __init__(self, s3, clock: WorldClock, labels_uri: str, *, world_uri: str = WORLD_URI,
                 label_delay: float = LABEL_DELAY_SECONDS, day_seconds: float = DAY_SECONDS,
                 rng: np.random.Generator | None = None):
        self.s3, self.clock = s3, clock
        self.labels_bucket, _, prefix = labels_uri.removeprefix("s3://").partition("/")
        self.labels_prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        self.world_bucket, _, self.world_key = world_uri.removeprefix("s3://").partition("/")
        self.label_delay, self.day_seconds = label_delay, day_seconds
        self.rng = rng or np.random.default_rng()
        self.lock = threading.Lock()
        self.drifting = False
        self._drift_before = 0.0  # drift days accumulated before the current drifting stretch
        self._drift_since: float | None = None  # world time the current drifting stretch began
        self._pending: deque[_Pending] = deque()
        self._published: dict | None = None
        self.labels_written = 0
        self.predictions_seen = 0
        self.errors: list[str] = []

    # ---- the world ----
    def drift_days(self, world_time: float | None = None) -> float:
        with self.lock:
            if not self.drifting or self._drift_since is None:
                return self._drift_before
            now = self.clock.now() if world_time is None else world_time
            return self._drift_before + max(0.0, now - self._drift_since) / DAY

    def coefficients(self, world_time: float | None = None) -> dict[str, float]:
        return coefficients(self.drift_days(world_time))

    def set_drift(self, on: bool) -> None:
        """On: the world moves with each of its days, which pass quickly until the clock reaches today. Off: it
        stays as it is now, and the clock runs at real speed."""
        with self.lock:
            if on == self.drifting:
                return
            now = self.clock.now()
            if on:
                self._drift_since = now
                self.clock.fast_forward(self.day_seconds)
            else:
                self._drift_before += max(0.0, now - (self._drift_since or now)) / DAY
                self._drift_since = None
                self.clock.real_speed()
            self.drifting = on

    def publish(self) -> None:
        """The world as the model's preprocess reads it, when it moved since the last upload."""
        world = {k: round(v, 4) for k, v in self.coefficients().items()}
        if world == self._published:
            return
        body = {"coefficients": world, "drift_days": round(self.drift_days(), 3),
                "world_time": self.clock.now_utc().isoformat()}
        try:
            self.s3.put_object(Bucket=self.world_bucket, Key=self.world_key, Body=json.dumps(body).encode(),
                               ContentType="application/json")
            self._published = world
        except (BotoCoreError, ClientError) as exc:
            self._error(f"S3 PutObject s3://{self.world_bucket}/{self.world_key}: {exc}")

    # ---- labels ----
    def observe(self, inference_id: str, customers) -> None:
        """A prediction was made for these customers (a DataFrame) now: their labels follow after the delay."""
        from sandbox.models.churn_model import churn_probability

        p = churn_probability(self.coefficients(), customers)
        labels = (self.rng.random(len(p)) < p).astype(int).tolist()
        with self.lock:
            self._pending.append(_Pending(time.time() + self.label_delay, ground_truth(inference_id, labels)))
            self.predictions_seen += len(labels)

    def write_due(self, real: float | None = None) -> int:
        """Uploads the labels whose delay has passed, in one file in the clock's current hour folder."""
        real = time.time() if real is None else real
        with self.lock:
            due = []
            while self._pending and self._pending[0].due <= real:
                due.append(self._pending.popleft().record)
        if not due:
            return 0
        when = self.clock.now_utc(real)
        key = f"{self.labels_prefix}{when:%Y/%m/%d/%H}/labels-{when:%M%S}-{uuid.uuid4().hex[:8]}.jsonl"
        body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in due).encode()
        try:
            self.s3.put_object(Bucket=self.labels_bucket, Key=key, Body=body, ContentType="application/jsonl")
        except (BotoCoreError, ClientError) as exc:
            self._error(f"S3 PutObject s3://{self.labels_bucket}/{key}: {exc}; {len(due)} labels were lost")
            return 0
        with self.lock:
            self.labels_written += sum(len(r["groundTruthData"]["data"].split(",")) for r in due)
        return len(due)

    def _error(self, message: str) -> None:
        with self.lock:
            self.errors = (self.errors + [f"{time.strftime('%H:%M:%S')} {message}"])[-5:]

    def state(self) -> dict:
        real = time.time()
        schedule = self.clock.schedule()
        lag = schedule.lag_at(real)
        with self.lock:
            pending = sum(len(p.record["groundTruthData"]["data"].split(",")) for p in self._pending)
        return {"clock": self.clock.now_utc(real).isoformat(timespec="seconds"), "lag_days": round(lag / DAY, 3),
                "catching_up": schedule.catching_up(real),
                "seconds_per_day": round(DAY / schedule.rate, 3) if schedule.catching_up(real) else None,
                "drifting": self.drifting, "drift_days": round(self.drift_days(), 2),
                "coefficients": {k: round(v, 2) for k, v in self.coefficients().items()},
                "predictions": self.predictions_seen, "labels_written": self.labels_written,
                "labels_pending": pending, "label_delay_seconds": self.label_delay,
                "day_seconds": self.day_seconds, "errors": self.errors[-3:]}
