"""Fault: a stray first line, and a child that keeps the plugin's stdout open; both idle
until killed (the child records its own pid too)."""

import os
import subprocess
import sys
import threading
from pathlib import Path

folder = os.environ.get("CORE_FAKE_PID_DIR")
name = os.path.basename(sys.argv[0])
child = subprocess.Popen([sys.executable, "-c", "import threading; threading.Event().wait()"])
if folder:
    Path(folder, f"{name}.{os.getpid()}").touch()
    Path(folder, f"{name}-child.{child.pid}").touch()
print("Starting my awesome plugin v2.0 ...", flush=True)
threading.Event().wait()
