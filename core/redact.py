"""Keeping secrets out of logs, messages and output files.

An OpenAI-compatible endpoint may carry a password in its URL (`http://user:pass@host/v1`)
and every request carries the API key; neither may reach a log line, an error message or a
summary file.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

MAX_MESSAGE_CHARS = 300


def url_without_credentials(url: str) -> str:
    """The URL without any user:password part (unchanged when it has none)."""
    parts = urlsplit(url)
    if not parts.username and not parts.password:
        return url
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def endpoint_for_messages(url: str) -> str:
    """An endpoint as messages name it: scheme, host, port and path; no credentials, query or
    trailing slash."""
    parts = urlsplit(url)
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def scrub(text: str, secret: str | None, limit: int = MAX_MESSAGE_CHARS) -> str:
    """One line without `secret`, at most `limit` characters."""
    if secret:
        text = text.replace(secret, "***")
    return " ".join(text.split())[:limit]
