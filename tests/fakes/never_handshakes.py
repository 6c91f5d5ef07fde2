"""Fault: starts, never prints a handshake, never exits."""

import _raw

_raw.record_pid()
_raw.block_forever()
