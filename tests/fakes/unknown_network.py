"""Fault: a network other than unix or tcp."""

import _raw

_raw.hang_after("1|1|carrier-pigeon|coop:7|grpc|")
