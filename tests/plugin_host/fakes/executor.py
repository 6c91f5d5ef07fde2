"""A steerable SDK executor: the job's executor_config says what it does.

Keys, applied in this order: ``stream`` (text sent through the status helper),
``wait_file`` (block until that path exists), ``crash`` (exit with that status),
``hang`` (block forever), ``sigstop`` (stop itself, so it no longer answers
health), then the output: ``lines`` (N numbered lines), ``output`` (that text),
``partial work`` if ``fail`` is set, else ``pid=<pid> started=<monotonic>``;
``fail`` also makes that the error.
``$CORE_FAKE_PID_DIR`` gets an empty ``<name>.<pid>`` file at start.
"""

import time

STARTED = time.monotonic()  # before the heavy imports: when exec() happened, near enough

import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

from plugin_sdk import ExecuteRequest, ExecuteResponse, StatusHelper, serve  # noqa: E402

_WAIT_LIMIT = 20.0


def _record_pid() -> None:
    folder = os.environ.get("CORE_FAKE_PID_DIR")
    if folder:
        Path(folder, f"{os.path.basename(sys.argv[0])}.{os.getpid()}").touch()


def execute(request: ExecuteRequest, status: StatusHelper) -> ExecuteResponse:
    config = request.config
    if "stream" in config:
        status.update(config["stream"])
    if "wait_file" in config:
        deadline = time.monotonic() + _WAIT_LIMIT
        while not os.path.exists(config["wait_file"]):
            if time.monotonic() > deadline:
                return ExecuteResponse(error=f"{config['wait_file']} never appeared")
            time.sleep(0.01)
        status.update("second\n")
    if "crash" in config:
        os._exit(int(config["crash"]))
    if "hang" in config:
        threading.Event().wait()
    if "sigstop" in config:
        os.kill(os.getpid(), signal.SIGSTOP)
        # The stop reaches this thread a moment later (the kernel wakes another
        # thread first); without this we could still answer in that window.
        threading.Event().wait()
    if "lines" in config:
        text = "".join(f"{i:06d}\n" for i in range(int(config["lines"])))
    elif "fail" in config:
        text = "partial work\n"
    else:
        text = config.get("output", f"pid={os.getpid()} started={STARTED!r}\n")
    return ExecuteResponse(output=text.encode(), error=config.get("fail", ""))


if __name__ == "__main__":
    _record_pid()
    serve(execute)
