"""The value parsers of the settings: raw value from any source -> typed value.

A parser takes what a flag (a string or list of strings), a ``DKRON_*`` variable (a
string) or a config file (any YAML/JSON/TOML value) gave and returns the typed value,
or raises ``ValueError(reason)``; ``core.settings`` turns the reason into a one-line
error naming the source. Notification parsers live with their settings in
``core.notify.settings``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

from core.settings import LOG_LEVELS, ConfigError

__all__ = [
    "address",
    "boolean",
    "cluster_key",
    "duration",
    "integer",
    "log_level",
    "non_empty",
    "non_negative",
    "optional_path",
    "optional_port",
    "parse_tags",
    "path",
    "port",
    "positive",
    "split_host_port",
    "strings",
    "stripped",
    "text",
]


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "t", "true", "yes", "on"):
        return True
    if text in ("0", "f", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def integer(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError("expected an integer")
    return int(text)


def non_negative(value: object) -> int:
    number = integer(value)
    if number < 0:
        raise ValueError("must not be negative")
    return number


def positive(value: object) -> int:
    number = integer(value)
    if number <= 0:
        raise ValueError("must be greater than 0")
    return number


def port(value: object) -> int:
    number = integer(value)
    if not 0 <= number <= 65535:
        raise ValueError("expected a port number (0-65535)")
    return number


def optional_port(value: object) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number = port(value)
    if number == 0:
        raise ValueError("expected a port number (1-65535); Raft needs a fixed port")
    return number


def text(value: object) -> str:
    if isinstance(value, dict | list):
        raise ValueError("expected a string")
    return "" if value is None else str(value)


def stripped(value: object) -> str:
    return text(value).strip()


def non_empty(value: object) -> str:
    result = text(value).strip()
    if not result:
        raise ValueError("must not be empty")
    return result


def path(value: object) -> Path:
    result = text(value)
    if not result:
        raise ValueError("must not be empty")
    return Path(result).expanduser()


def optional_path(value: object) -> Path | None:
    result = text(value).strip()
    return Path(result).expanduser() if result else None


def strings(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        return tuple(text(item) for item in value)
    # Env vars and single file values: Viper splits string slices on whitespace.
    return tuple(part for part in re.split(r"[\s,]+", text(value)) if part)


def duration(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s")
    if isinstance(value, int | float):
        seconds = float(value)
    elif re.fullmatch(r"\s*[0-9]+(\.[0-9]*)?\s*", str(value)):
        # Viper would read a bare number as nanoseconds; seconds is what people mean.
        seconds = float(str(value))
    else:
        from plugin_sdk.gocompat import parse_go_duration

        try:
            seconds = parse_go_duration(str(value).strip()) / 1e9
        except ValueError:
            raise ValueError("expected a duration such as 30s or 1m30s") from None
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


def log_level(value: object) -> str:
    level = text(value).strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError("expected one of debug, info, warn, error, fatal, panic")
    return "warn" if level == "warning" else level


def address(name: str) -> Callable[[object], str]:
    """A ``host:port`` (or host) setting; ``name`` is the flag its port errors name."""

    def parse(value: object) -> str:
        result = text(value).strip()
        if "{{" in result:
            raise ValueError("go-sockaddr templates are not supported; give an IP address")
        if result:
            split_host_port(result, name)
        return result

    return parse


def cluster_key(value: object) -> str:
    from core.security.keys import parse_cluster_key

    result = text(value).strip()
    if result:
        parse_cluster_key(result)  # InvalidKey is a ValueError with the reason
    return result


def parse_tags(value: object) -> dict[str, str]:
    """``k=v`` items (list, or one string of them) or a mapping; bad items: ``invalid tag``."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        tags: dict[str, str] = {}
        for key, item in value.items():
            if isinstance(item, dict | list):
                raise ValueError(f"tag {key!r} must be a string")
            tags[str(key)] = _bool_text(item)
        return tags
    items = value if isinstance(value, list | tuple) else re.split(r"[\s,]+", text(value).strip())
    tags = {}
    for item in items:
        entry = text(item)
        if not entry:
            continue
        key, sep, tag_value = entry.partition("=")
        if not sep or not key:
            raise ConfigError(f"invalid tag: '{entry}'")
        tags[key] = tag_value
    return tags


def _bool_text(value: object) -> str:
    # YAML reads `server: true` as a bool; Go's map[string]string would hold "true".
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def split_host_port(value: str, name: str) -> tuple[str, int | None]:
    """``host:port``, ``[v6]:port``, a bare host or a bare IPv6 address."""
    if value.startswith("["):  # [::1]:8080
        host, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    elif ":" in value:  # bare IPv6
        return value, None
    else:
        host, port_text = value, ""
    if not port_text:
        return host, None
    try:
        return host, port(port_text)
    except ValueError:
        raise ConfigError(f"invalid value for {name}: {value!r} has a bad port") from None
