"""The sandbox's clock for what is dated in S3: captured predictions (inferenceTime and the yyyy/mm/dd/hh/
folders) and labels (the hour folder they arrive in). CloudWatch, Slack and the rollouts keep real time.

modelbot measures quality per calendar day and judges the last `window_days` days up to *today*, by the
worker's real clock, so the sandbox cannot date anything in the future. Instead its clock runs *behind* real
time and catches up when days must pass quickly:

    world time = real time - lag,   lag falling at (rate - 1) seconds per second until it reaches lag_target

- At start: lag 11 days falling to 4 at one day per second: seven calm days of churn's traffic are replayed in
  seven seconds, so churn's realized AUC has a reference before anything moves.
- Then the clock runs at real speed, four days behind, so nothing falls into the quality job's window yet.
- The drift control sets the rate to one day per DAY_SECONDS with a target of 0: the last four days pass in
  about a minute and a half, while churn's world moves, and the clock runs at real speed from then on.

The traffic process owns the clock (and the world); the hosting process reads it from the same JSON file to
date what it captures. Times are seconds since the epoch (UTC).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

DAY = 86_400.0


@dataclass(frozen=True)
class Schedule:
    anchor: float  # real time the schedule took effect
    lag: float  # seconds behind real time at `anchor`
    rate: float  # world seconds per real second while catching up (1: real speed)
    lag_target: float  # the lag it stops catching up at

    def lag_at(self, real: float) -> float:
        if self.rate <= 1 or self.lag <= self.lag_target:
            return self.lag
        return max(self.lag_target, self.lag - (real - self.anchor) * (self.rate - 1))

    def world(self, real: float) -> float:
        return real - self.lag_at(real)

    def catching_up(self, real: float) -> bool:
        return self.rate > 1 and self.lag_at(real) > self.lag_target


def calm_schedule(real: float, *, lag_days: float = 11, replay_to_days: float = 4,
                  replay_seconds_per_day: float = 1.0) -> Schedule:
    return Schedule(anchor=real, lag=lag_days * DAY, rate=DAY / replay_seconds_per_day, lag_target=replay_to_days * DAY)


class WorldClock:
    """The schedule, kept in `path` (written atomically), re-read when the file changes."""

    def __init__(self, path: str | os.PathLike | None, schedule: Schedule | None = None):
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._schedule = schedule or Schedule(time.time(), 0.0, 1.0, 0.0)
        self._seen: float | None = None
        if schedule is not None:
            self.set(schedule)

    def set(self, schedule: Schedule) -> None:
        with self._lock:
            self._schedule = schedule
            if self.path is not None:
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(asdict(schedule)))
                os.replace(tmp, self.path)
                self._seen = self.path.stat().st_mtime

    def schedule(self) -> Schedule:
        if self.path is None:
            return self._schedule
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return self._schedule
        with self._lock:
            if mtime != self._seen:
                try:
                    self._schedule = Schedule(**json.loads(self.path.read_text()))
                    self._seen = mtime
                except (OSError, ValueError, TypeError):  # being replaced right now: the last one read stands
                    pass
            return self._schedule

    def now(self, real: float | None = None) -> float:
        return self.schedule().world(time.time() if real is None else real)

    def now_utc(self, real: float | None = None) -> datetime:
        return datetime.fromtimestamp(self.now(real), timezone.utc)

    def fast_forward(self, seconds_per_day: float, real: float | None = None) -> None:
        """From now on, one day passes every `seconds_per_day` until the clock reaches real time."""
        real = time.time() if real is None else real
        lag = self.schedule().lag_at(real)
        self.set(Schedule(anchor=real, lag=lag, rate=DAY / seconds_per_day, lag_target=0.0))

    def real_speed(self, real: float | None = None) -> None:
        """From now on, the clock keeps its lag and runs at real speed."""
        real = time.time() if real is None else real
        lag = self.schedule().lag_at(real)
        self.set(Schedule(anchor=real, lag=lag, rate=1.0, lag_target=lag))
