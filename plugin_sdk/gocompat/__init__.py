"""Go's value formats and behaviours that Dkron's wire and configs depend on.

Below both the kernel (``core``) and the SDK (plugins): either may import it, and it
imports neither. Each module is one Go package's worth of behaviour, with Go's error
texts, so what dkron-py accepts and rejects is exactly what Dkron does.
"""

from plugin_sdk.gocompat.goformats import (
    format_go_duration,
    go_quote,
    parse_go_bool,
    parse_go_duration,
    parse_mem_limit,
)

__all__ = [
    "format_go_duration",
    "go_quote",
    "parse_go_bool",
    "parse_go_duration",
    "parse_mem_limit",
]
