"""The ``files`` processor: stores each execution's output as ``<log_dir>/<key>.log``."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from typing import NoReturn

from builtin_plugins._forward import apply_forward, wants_forward
from plugin_sdk import Execution, ProcessorPlugin, serve_processor

__all__ = ["DEFAULT_LOG_DIR", "FilesProcessor", "log_file_name", "main", "plugin", "processor"]

log = logging.getLogger("builtin_plugins.files_processor")

DEFAULT_LOG_DIR = "/var/log/dkron"
_FILE_MODE = 0o644
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_STEM = 200  # leaves room for the hash and ".log" under NAME_MAX (255)


def log_file_name(key: str) -> str:
    """A file name for execution ``key`` that cannot leave its directory.

    The key embeds the node name, which the cluster does not restrict. Safe keys
    keep Dkron's exact name; anything else is rewritten and gets a hash of the
    original, so two different unsafe keys never share a file.
    """
    stem = _UNSAFE.sub("_", key)[:_MAX_STEM]
    if stem != key or stem.strip(".") == "":
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        stem = f"{stem}-{digest}"
    return f"{stem}.log"


class FilesProcessor:
    """Config: ``log_dir`` (default ``/var/log/dkron``, created if missing), ``forward``."""

    def process(self, execution: Execution, config: Mapping[str, str]) -> Execution:
        forward = wants_forward(config)
        log_dir = os.path.abspath(config.get("log_dir") or DEFAULT_LOG_DIR)
        try:
            os.makedirs(log_dir, mode=0o755, exist_ok=True)
        except OSError as exc:
            raise RuntimeError(
                f"files processor: cannot create log_dir {log_dir!r}: {exc.strerror or exc}"
            ) from exc
        path = os.path.join(log_dir, log_file_name(execution.key))
        _write_atomically(path, execution.output)
        log.info("wrote execution output", extra={"path": path, "job": execution.job_name})
        return apply_forward(execution, forward, os.fsencode(path))


def _write_atomically(path: str, data: bytes) -> None:
    # Temp file + rename: a reader never sees half a log, and a symlink planted at
    # ``path`` is replaced instead of followed.
    directory = os.path.dirname(path)
    try:
        fd, temp = tempfile.mkstemp(prefix=".dkron-", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise RuntimeError(
            f"files processor: cannot write in log_dir {directory!r}: {exc.strerror or exc}"
        ) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), _FILE_MODE)  # exact mode, whatever the umask
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise RuntimeError(
            f"files processor: cannot write {path!r}: {exc.strerror or exc}"
        ) from exc


processor = FilesProcessor()
plugin = ProcessorPlugin("files", processor)


def main() -> NoReturn:
    serve_processor(processor)
