"""The two ways serving fails: before it starts (one line, then exit) and per request (an HTTP status with a body)."""

from __future__ import annotations

import json
from dataclasses import dataclass

# A bad request with thousands of rows could name thousands of fields: the first ones are enough to fix it.
MAX_LISTED_ERRORS = 50
MAX_MESSAGE_CHARS = 300


class StartupError(Exception):
    """What stops the server from starting, in one line a data scientist can act on."""


@dataclass(frozen=True)
class FieldError:
    field: str  # where, as a data scientist would index it: instances[0].tenure_months
    message: str  # why

    def as_dict(self) -> dict:
        return {"field": self.field, "message": self.message}


class RequestError(Exception):
    """Answered to the caller: an HTTP status, a summary and the failing fields, as JSON."""

    def __init__(self, status: str, error: str, fields: list[FieldError] | None = None):
        super().__init__(error)
        self.status = status
        self.error = error
        self.fields = fields or []

    def body(self) -> bytes:
        payload: dict = {"error": self.error}
        if self.fields:
            payload["errors"] = [f.as_dict() for f in self.fields[:MAX_LISTED_ERRORS]]
            if len(self.fields) > MAX_LISTED_ERRORS:
                payload["more_errors"] = len(self.fields) - MAX_LISTED_ERRORS
        return json.dumps(payload).encode()

    def summary(self, limit: int = 3) -> str:
        """For the log line: the error and its first fields."""
        listed = "; ".join(f"{f.field}: {f.message}" for f in self.fields[:limit])
        more = f" (+{len(self.fields) - limit} more)" if len(self.fields) > limit else ""
        return f"{self.error}: {listed}{more}" if listed else self.error


def bad_request(error: str, fields: list[FieldError] | None = None) -> RequestError:
    return RequestError("400 Bad Request", error, fields)


def server_error(error: str, fields: list[FieldError] | None = None) -> RequestError:
    return RequestError("500 Internal Server Error", error, fields)


def shorten(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
