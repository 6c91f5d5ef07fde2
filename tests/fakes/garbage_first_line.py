"""Fault: the first stdout line is not a handshake (e.g. a stray print before serve)."""

import _raw

_raw.hang_after("Starting my awesome plugin v2.0 ...")
