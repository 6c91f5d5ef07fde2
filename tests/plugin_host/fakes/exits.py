"""Fault: the plugin dies at start, before any handshake."""

import sys

sys.stderr.write("fatal: cannot open /nonexistent/config.yml\n")
sys.exit(4)
