"""Notification settings and their parsers (no network code: the CLI loads this cheaply)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = [
    "WEBHOOK_ON",
    "NotifyConfig",
    "parse_endpoint",
    "parse_headers",
    "parse_webhook_on",
    "split_header",
]

WEBHOOK_ON = ("always", "failure", "success")

# A header entry is "Key: Value". Dkron's flags are string slices, so one value may hold
# several entries separated by commas; a comma starts a new entry only when a "Key:"
# follows, which keeps values such as "Accept: a, b" whole.
_ENTRY_BREAK = re.compile(r"\s*(?:\n|,(?=\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+\s*:))\s*")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True)
class NotifyConfig:
    """Dkron's notification flags (``--webhook-endpoint`` is ``webhook_endpoint``).

    ``webhook_on`` and ``timeout`` are dkron-py extensions.
    """

    pre_webhook_endpoint: str = ""
    pre_webhook_payload: str = ""
    pre_webhook_headers: tuple[str, ...] = ()
    webhook_endpoint: str = ""
    webhook_payload: str = ""
    webhook_headers: tuple[str, ...] = ()
    webhook_on: str = "always"
    mail_host: str = ""
    mail_port: int = 0
    mail_username: str = ""
    mail_password: str = field(default="", repr=False)
    mail_from: str = ""
    mail_payload: str = ""
    mail_subject_prefix: str = "[Dkron]"
    cronitor_endpoint: str = ""
    # Dkron's HTTP and SMTP clients have no deadline, so one hung receiver holds the run.
    timeout: float = 10.0

    def __post_init__(self) -> None:
        # Frozen: the normalised spelling is stored through object.__setattr__.
        object.__setattr__(self, "webhook_on", parse_webhook_on(self.webhook_on))
        for header in (*self.pre_webhook_headers, *self.webhook_headers):
            split_header(header)

    @property
    def pre_webhook(self) -> bool:
        return bool(self.pre_webhook_endpoint and self.pre_webhook_payload)

    @property
    def webhook(self) -> bool:
        return bool(self.webhook_endpoint and self.webhook_payload)

    @property
    def mail(self) -> bool:
        return bool(self.mail_host and self.mail_port)


def split_header(entry: str) -> tuple[str, str]:
    """``"Key: Value"`` -> ``("Key", "Value")``; the value keeps any further colons.

    Raises ``ValueError`` for an entry without a colon or with an invalid name (Dkron
    indexes past the end of the split and panics on the first notification).
    """
    key, sep, value = entry.partition(":")
    key = key.strip()
    if not sep:
        raise ValueError(f"invalid header {entry!r}: expected 'Key: Value'")
    if not _TOKEN.fullmatch(key):
        raise ValueError(f"invalid header {entry!r}: {key!r} is not a valid header name")
    return key, value.strip()


def parse_headers(value: object) -> tuple[str, ...]:
    """Header entries from a flag list, a file list or one string; each one is checked."""
    if value is None:
        return ()
    if isinstance(value, dict):
        items: Sequence[object] = [f"{k}: {v}" for k, v in value.items()]
    elif isinstance(value, list | tuple):
        items = value
    else:
        items = [value]
    entries: list[str] = []
    for item in items:
        if isinstance(item, dict | list):
            raise ValueError("expected 'Key: Value' strings")
        for entry in _ENTRY_BREAK.split("" if item is None else str(item)):
            if entry.strip():
                split_header(entry)
                entries.append(entry.strip())
    return tuple(entries)


def parse_endpoint(value: object) -> str:
    """An ``http://`` or ``https://`` URL, or "" for none."""
    if isinstance(value, dict | list):
        raise ValueError("expected a URL")
    text = "" if value is None else str(value).strip()
    if not text:
        return ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL")
    return text


def parse_webhook_on(value: object) -> str:
    text = "" if value is None else str(value).strip().lower()
    if text not in WEBHOOK_ON:
        raise ValueError("expected one of always, failure, success")
    return text
