"""Fault: go-plugin core protocol 2, which no host understands."""

import _raw

_raw.hang_after("2|1|unix|/tmp/fake-core|grpc|")
