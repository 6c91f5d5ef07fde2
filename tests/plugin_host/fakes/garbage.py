"""Fault: the first stdout line is not a handshake, then it idles until killed."""

import os
import sys
import threading
from pathlib import Path

folder = os.environ.get("CORE_FAKE_PID_DIR")
if folder:
    Path(folder, f"{os.path.basename(sys.argv[0])}.{os.getpid()}").touch()
print("hello, I am definitely not a plugin", flush=True)
threading.Event().wait()
