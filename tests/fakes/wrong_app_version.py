"""Fault: app protocol 5, while Dkron hosts offer only version 1."""

import _raw

_raw.hang_after("1|5|unix|/tmp/fake-app|grpc|")
