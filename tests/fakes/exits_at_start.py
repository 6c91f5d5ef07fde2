"""Fault: dies before the handshake, explaining why on stderr."""

import sys

import _raw

_raw.record_pid()
sys.stderr.write("fatal: cannot read /etc/fake-plugin.conf: no such file\n")
sys.exit(3)
