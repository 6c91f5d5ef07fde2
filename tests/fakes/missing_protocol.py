"""Fault: a 4-field handshake; go-plugin reads the missing protocol as netrpc."""

import _raw

_raw.hang_after("1|1|unix|/tmp/fake-noproto")
