"""The ``syslog`` processor: sends the output to syslog (facility CRON, LOG_INFO, tag dkron)."""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import NoReturn

from builtin_plugins._forward import apply_forward, wants_forward
from plugin_sdk import Execution, ProcessorPlugin, serve_processor

__all__ = [
    "DEFAULT_ADDRESS",
    "MAX_MESSAGE_BYTES",
    "PLACEHOLDER",
    "SyslogProcessor",
    "main",
    "parse_address",
    "plugin",
    "processor",
]

PLACEHOLDER = b"Output in syslog"
DEFAULT_ADDRESS = "/dev/log"
TAG = "dkron"
# Common syslog daemons cut messages at 8 KiB (rsyslog's default); longer output is
# sent as several messages rather than truncated by the receiver.
MAX_MESSAGE_BYTES = 7936
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

Address = str | tuple[str, int]


def parse_address(raw: str) -> Address:
    """``/path`` is a local unix socket; ``host:port`` (``[v6]:port`` too) is UDP."""
    if raw.startswith("/"):
        return raw
    host, sep, port_text = raw.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(
            f"invalid value {raw!r} for 'address': expected an absolute unix socket path "
            "(e.g. /dev/log) or host:port for UDP (e.g. 127.0.0.1:514)"
        )
    return host, int(port_text)


class _Handler(logging.handlers.SysLogHandler):
    """A SysLogHandler that keeps its send error for us instead of printing it."""

    failure: BaseException | None = None

    def handleError(self, record: logging.LogRecord) -> None:
        self.failure = sys.exc_info()[1]


def _header(address: Address) -> str:
    # Go's log/syslog framing, so receivers see what Dkron's processor sends.
    now = datetime.now().astimezone()
    if isinstance(address, str):
        stamp = f"{_MONTHS[now.month - 1]} {now.day:>2} {now:%H:%M:%S}"
        return f"{stamp} {TAG}[{os.getpid()}]: "
    stamp = now.isoformat(timespec="seconds").replace("+00:00", "Z")
    return f"{stamp} {socket.gethostname()} {TAG}[{os.getpid()}]: "


def _split(data: bytes, limit: int) -> list[bytes]:
    """``data`` in pieces of at most ``limit`` bytes, cut after newlines where possible."""
    parts: list[bytes] = []
    while len(data) > limit:
        cut = data.rfind(b"\n", 0, limit) + 1
        if cut == 0:
            cut = limit
            while cut > 0 and data[cut] & 0xC0 == 0x80:  # never inside a UTF-8 sequence
                cut -= 1
        parts.append(data[:cut])
        data = data[cut:]
    if data or not parts:
        parts.append(data)
    return parts


def _unreachable(address: str, exc: BaseException) -> RuntimeError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return RuntimeError(
        f"syslog processor: cannot reach syslog at {address!r}: {reason} (is a syslog "
        "daemon listening there? set 'address' to host:port for a remote collector)"
    )


class SyslogProcessor:
    """Config: ``address`` (default ``/dev/log``; ``host:port`` is UDP), ``forward``."""

    def process(self, execution: Execution, config: Mapping[str, str]) -> Execution:
        forward = wants_forward(config)
        raw_address = config.get("address") or DEFAULT_ADDRESS
        address = parse_address(raw_address)
        try:
            handler = _Handler(
                address=address,
                facility=logging.handlers.SysLogHandler.LOG_CRON,
                socktype=None if isinstance(address, str) else socket.SOCK_DGRAM,
            )
        except OSError as exc:  # UDP: the host name does not resolve
            raise _unreachable(raw_address, exc) from exc
        handler.append_nul = False  # Go's writer ends messages with a newline, not NUL
        try:
            text = execution.output.decode("utf-8", "replace").encode("utf-8")
            for part in _split(text, MAX_MESSAGE_BYTES):
                body = part.decode("utf-8")
                message = _header(address) + body + ("" if body.endswith("\n") else "\n")
                record = logging.makeLogRecord(
                    {"msg": message, "levelno": logging.INFO, "levelname": "INFO"}
                )
                handler.emit(record)
                # A local socket is connected lazily, so a missing /dev/log shows up here.
                if handler.failure is not None:
                    raise _unreachable(raw_address, handler.failure) from handler.failure
        finally:
            handler.close()
        return apply_forward(execution, forward, PLACEHOLDER)


processor = SyslogProcessor()
plugin = ProcessorPlugin("syslog", processor)


def main() -> NoReturn:
    serve_processor(processor)
