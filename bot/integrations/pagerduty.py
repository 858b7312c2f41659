"""PagerDuty Events API v2: trigger, acknowledge and resolve one incident per dedup_key.

Plain urllib (one POST of JSON), a timeout on every request, and a few retries with backoff for what
PagerDuty documents as retryable: 429 (rate limited) and 5xx, plus network errors. A 400 is not retried:
the same event would be rejected again.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable

from bot.errors import ExternalError

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10
ATTEMPTS = 4
BACKOFF_SECONDS = 0.5  # doubled after each failed attempt: 0.5, 1, 2
MAX_RETRY_AFTER_SECONDS = 10
SUMMARY_LIMIT = 1024  # PagerDuty rejects longer summaries
SEVERITIES = ("critical", "error", "warning", "info")

# What not having each action's event accepted means, for the error message.
_CONSEQUENCE = {
    "trigger": "no PagerDuty incident was opened",
    "acknowledge": "the PagerDuty incident was not acknowledged",
    "resolve": "the PagerDuty incident was not resolved",
}


class PagerDutyError(ExternalError):
    """An event PagerDuty did not accept; the message says which event and what was therefore not done."""

    def __init__(self, message: str, *, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


@dataclass
class PagerDuty:
    routing_key: str
    events_url: str = "https://events.pagerduty.com/v2/enqueue"
    timeout: float = TIMEOUT_SECONDS
    attempts: int = ATTEMPTS
    backoff: float = BACKOFF_SECONDS
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    @classmethod
    def from_settings(cls, settings) -> "PagerDuty | None":
        if not settings.PAGERDUTY_ROUTING_KEY:
            return None
        # Module constants read now, not at class definition, so an operator (or a test) can tune them.
        return cls(routing_key=settings.PAGERDUTY_ROUTING_KEY.get_secret_value(), events_url=settings.PAGERDUTY_EVENTS_URL,
                   timeout=TIMEOUT_SECONDS, attempts=ATTEMPTS, backoff=BACKOFF_SECONDS)

    def trigger(
        self,
        dedup_key: str,
        *,
        summary: str,
        source: str,
        severity: str = "error",
        component: str | None = None,
        group: str | None = None,
        event_class: str | None = None,
        custom_details: dict[str, Any] | None = None,
        links: list[dict[str, str]] | None = None,
        client: str | None = None,
        client_url: str | None = None,
    ) -> dict[str, Any]:
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}")
        if len(summary) > SUMMARY_LIMIT:
            summary = summary[: SUMMARY_LIMIT - 1] + "…"
        payload: dict[str, Any] = {"summary": summary, "source": source, "severity": severity}
        for key, value in (("component", component), ("group", group), ("class", event_class),
                           ("custom_details", custom_details)):
            if value:
                payload[key] = value
        event: dict[str, Any] = {"payload": payload}
        if links:
            event["links"] = links
        if client:
            event["client"] = client
        if client_url:
            event["client_url"] = client_url
        return self.send("trigger", dedup_key, event)

    def acknowledge(self, dedup_key: str) -> dict[str, Any]:
        return self.send("acknowledge", dedup_key, {})

    def resolve(self, dedup_key: str) -> dict[str, Any]:
        return self.send("resolve", dedup_key, {})

    def send(self, action: str, dedup_key: str, extra: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(
            {"routing_key": self.routing_key, "event_action": action, "dedup_key": dedup_key, **extra}
        ).encode()
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                return self._post_once(action, dedup_key, body)
            except PagerDutyError as exc:
                if not exc.retryable or attempt == self.attempts:
                    raise
                wait = getattr(exc, "retry_after", None)
                wait = min(wait, MAX_RETRY_AFTER_SECONDS) if wait is not None else delay
                log.warning("PagerDuty %s for %s: attempt %d failed (%s); retrying in %.1fs",
                            action, dedup_key, attempt, exc, wait)
                self.sleep(wait)
                delay *= 2
        raise AssertionError("unreachable")

    def _post_once(self, action: str, dedup_key: str, body: bytes) -> dict[str, Any]:
        request = urllib.request.Request(
            self.events_url, data=body, method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "modelbot"},
        )
        what = f"PagerDuty did not accept the {action} event for {dedup_key}"
        consequence = _CONSEQUENCE.get(action, "the event was not sent")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
            detail = _describe(raw)
            retryable = status == 429 or status >= 500
            error = PagerDutyError(f"{what} (HTTP {status}{': ' + detail if detail else ''}): {consequence}.",
                                   retryable=retryable)
            if retry_after and retry_after.isdigit():
                error.retry_after = float(retry_after)
            raise error from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PagerDutyError(f"{what} ({self.events_url} unreachable: {reason}): {consequence}.",
                                 retryable=True) from None
        if status != 202:
            raise PagerDutyError(f"{what} (HTTP {status}, expected 202): {consequence}.", retryable=status >= 500)
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return {}


def _describe(raw: bytes) -> str:
    """PagerDuty's error body: {"status": "invalid event", "message": ..., "errors": [...]}."""
    try:
        data = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")[:200].strip()
    if not isinstance(data, dict):
        return ""
    parts = [str(data.get("message") or data.get("status") or "")]
    parts += [str(e) for e in data.get("errors") or []]
    return "; ".join(p for p in parts if p)[:300]
