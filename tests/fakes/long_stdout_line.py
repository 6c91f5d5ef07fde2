"""Fault: a first stdout line longer than go-plugin's 64 KiB line buffer."""

import _raw

_raw.hang_after("1|1|unix|/tmp/" + "x" * (70 * 1024) + "|grpc|")
