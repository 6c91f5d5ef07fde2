"""Fault: a net/rpc plugin (like Dkron's Go processors), which executors must not be."""

import _raw

_raw.hang_after("1|1|unix|/tmp/fake-netrpc|netrpc|")
