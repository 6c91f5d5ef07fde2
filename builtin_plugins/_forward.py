"""Config handling shared by the builtin processors: Go's ParseBool and ``forward``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from plugin_sdk import Execution

__all__ = ["apply_forward", "parse_bool", "wants_forward"]

# Exactly the spellings Go's strconv.ParseBool accepts, so job definitions port unchanged.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_bool(config: Mapping[str, str], key: str, default: bool = False) -> bool:
    """``config[key]`` as a Go ParseBool boolean; absent or empty means ``default``."""
    raw = config.get(key)
    if raw is None or raw == "":
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(
        f"invalid value {raw!r} for {key!r}: expected a boolean "
        "(1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False)"
    )


def wants_forward(config: Mapping[str, str]) -> bool:
    """The ``forward`` switch every processor reads (default false)."""
    return parse_bool(config, "forward", default=False)


def apply_forward(execution: Execution, forward: bool, placeholder: bytes) -> Execution:
    """The execution to store: unchanged when forwarding, else with ``placeholder`` as output."""
    if forward:
        return execution
    return dataclasses.replace(execution, output=placeholder)
