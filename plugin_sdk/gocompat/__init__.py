"""Go's value formats and behaviours that Dkron's wire and configs depend on.

Below both the kernel (``core``) and the SDK (plugins): either may import it, and it
imports neither. Each module is one Go package's worth of behaviour, with Go's error
texts, so what dkron-py accepts and rejects is exactly what Dkron does: ``goformats`` is
``time.Duration``, ``strconv`` quoting and memory limits; ``gojson`` is
``encoding/json`` (scanner, struct-field decoding, gin's output); ``gotime`` is
``time.Parse`` and ``time.Time``'s JSON text.
"""

from plugin_sdk.gocompat.goformats import (
    format_go_duration,
    go_quote,
    parse_go_bool,
    parse_go_duration,
    parse_mem_limit,
)
from plugin_sdk.gocompat.gojson import GoJSONError, decode_go_text, go_json_dumps
from plugin_sdk.gocompat.gotime import (
    ZERO_TIME,
    GoTimeError,
    format_go_time,
    parse_go_time,
    unix_nano,
)

__all__ = [
    "ZERO_TIME",
    "GoJSONError",
    "GoTimeError",
    "decode_go_text",
    "format_go_duration",
    "format_go_time",
    "go_json_dumps",
    "go_quote",
    "parse_go_bool",
    "parse_go_duration",
    "parse_go_time",
    "parse_mem_limit",
    "unix_nano",
]
