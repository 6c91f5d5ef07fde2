"""hclog, go-plugin's stderr log format: writing it (plugin side) and reading it (host side)."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = ["HclogFormatter", "LogLine", "parse_log_line"]

_LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.ERROR: "error",
    logging.CRITICAL: "error",
}
_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
_BRACKET = re.compile(r"^\[(TRACE|DEBUG|INFO|WARN|ERROR)\]\s?(.*)$")
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


class HclogFormatter(logging.Formatter):
    """One JSON object per line with string @level/@message/@timestamp, as go-plugin expects.

    A Go host type-asserts those three keys as strings and panics otherwise, so they
    are always strings; the timestamp uses Go's layout with exactly six fraction digits.
    """

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, tz=UTC)
        entry: dict[str, object] = {
            "@level": _LEVEL_NAMES.get(record.levelno, "info"),
            "@message": str(record.getMessage()),
            "@module": record.name,
            "@timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z",
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value if isinstance(value, (int, float, bool)) else str(value)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


@dataclass(frozen=True)
class LogLine:
    level: int
    message: str
    fields: dict[str, object] = field(default_factory=dict)


def parse_log_line(line: str) -> LogLine:
    """Read one plugin stderr line the way go-plugin does, without its crash on bad types."""
    text = line.rstrip("\r\n")
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            level_name = data.pop("@level", "info")
            message = data.pop("@message", "")
            data.pop("@timestamp", None)
            level = _LEVELS.get(str(level_name).lower(), logging.INFO)
            return LogLine(level, str(message), {str(k).lstrip("@"): v for k, v in data.items()})
    match = _BRACKET.match(text)
    if match:
        return LogLine(_LEVELS[match.group(1).lower()], match.group(2))
    return LogLine(logging.DEBUG, text)
