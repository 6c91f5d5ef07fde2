"""Go compatibility: Go's formats as Dkron reads and writes them, with Go's error texts.

Below both the kernel and the SDK (it imports neither). ``gojson`` is ``encoding/json``
(scanner, struct-field decoding, gin's output); ``gotime`` is ``time.Parse`` and
``time.Time``'s JSON text.
"""

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
    "format_go_time",
    "go_json_dumps",
    "parse_go_time",
    "unix_nano",
]
