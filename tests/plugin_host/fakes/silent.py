"""Fault: never prints a handshake, idles until killed."""

import os
import sys
import threading
from pathlib import Path

folder = os.environ.get("CORE_FAKE_PID_DIR")
if folder:
    Path(folder, f"{os.path.basename(sys.argv[0])}.{os.getpid()}").touch()
threading.Event().wait()
