"""Fault: a valid handshake pointing at a unix socket nobody listens on."""

import os
import tempfile

import _raw

_raw.hang_after(f"1|1|unix|{os.path.join(tempfile.gettempdir(), 'fake-nobody-home')}|grpc|")
