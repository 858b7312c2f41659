"""Credentials written into a URL (`http://user:password@airflow:8080`) go no further than the settings.

The one place that takes them apart: settings keep the URL without them (so error texts, run links, /healthz and
logs, which all show the URL, cannot carry them), and the user and password become the login they were meant as.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit


@dataclass(frozen=True)
class SplitUrl:
    url: str  # without user:password@
    username: str | None
    password: str | None

    @property
    def had_credentials(self) -> bool:
        return self.username is not None or self.password is not None


def _host_port(parts) -> str:
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    return host + (f":{parts.port}" if parts.port else "")


def split_credentials(url: str) -> SplitUrl:
    """The URL without its user:password@ part, and the (percent-decoded) user and password it carried."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        return SplitUrl(url, None, None)
    if parts.username is None and parts.password is None:
        return SplitUrl(url, None, None)
    clean = urlunsplit((parts.scheme, _host_port(parts), parts.path, parts.query, parts.fragment))
    return SplitUrl(clean, unquote(parts.username) if parts.username is not None else None,
                    unquote(parts.password) if parts.password is not None else None)


def without_credentials(url: str) -> str:
    return split_credentials(url).url


def redact_url(url: str | None) -> str | None:
    """The URL as it may be shown (/healthz): no user:password@ (marked ***@) and no query string (a token may
    ride there too)."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        host = _host_port(parts)
    except ValueError:
        return "(unparsable URL)"
    if parts.username is not None or parts.password is not None:
        host = "***@" + host
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
