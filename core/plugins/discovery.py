"""Find ``dkron-executor-*`` and ``dkron-processor-*`` executables.

Directories are searched in order and a later one overrides an earlier one, as in
Dkron (whose builtins, beside its executable, replace same-named plugins).
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "DEFAULT_PLUGIN_DIR",
    "SYSTEM_PLUGIN_DIR",
    "Discovery",
    "PluginBinary",
    "PluginKind",
    "default_search_path",
    "discover",
]

log = logging.getLogger("dkron.plugins")

PluginKind = Literal["executor", "processor"]
DEFAULT_PLUGIN_DIR = "plugins.d"
SYSTEM_PLUGIN_DIR = "/etc/dkron/plugins"
_PREFIXES: dict[str, PluginKind] = {"dkron-executor-": "executor", "dkron-processor-": "processor"}


@dataclass(frozen=True)
class PluginBinary:
    kind: PluginKind
    name: str
    path: Path
    directory: Path


@dataclass
class Discovery:
    """What a scan found: the winners by (kind, name), what they shadowed, what was skipped."""

    plugins: dict[tuple[PluginKind, str], PluginBinary] = field(default_factory=dict)
    shadowed: list[tuple[PluginBinary, PluginBinary]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def of_kind(self, kind: PluginKind) -> dict[str, PluginBinary]:
        return {name: p for (k, name), p in sorted(self.plugins.items()) if k == kind}


def _executable_dir() -> Path:
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.is_file() and script.suffix != ".py":
        return script.resolve().parent
    return Path(sys.executable).parent


def default_search_path(plugin_dir: str | os.PathLike[str] = DEFAULT_PLUGIN_DIR) -> list[Path]:
    """``--plugin-dir``, ``/etc/dkron/plugins``, then the running executable's directory."""
    ordered: list[Path] = []
    for folder in (Path(plugin_dir), Path(SYSTEM_PLUGIN_DIR), _executable_dir()):
        resolved = folder.resolve()
        if resolved not in ordered:
            ordered.append(resolved)
    return ordered


def _classify(path: Path) -> tuple[PluginKind, str] | None:
    for prefix, kind in _PREFIXES.items():
        if path.name.startswith(prefix):
            name = path.name[len(prefix) :]
            if name.lower().endswith(".exe"):
                name = name[:-4]
            return (kind, name) if name else None
    return None


def _unsafe_reason(path: Path) -> str | None:
    try:
        info = path.stat()
    except OSError as exc:
        return f"cannot stat: {exc.strerror}"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_mode & stat.S_IWOTH:
        return "world-writable: anyone could replace it (chmod o-w to allow it)"
    if not os.access(path, os.X_OK):
        return "not executable (chmod +x to allow it)"
    return None


def discover(directories: Sequence[Path] | Iterable[Path]) -> Discovery:
    found = Discovery()
    for directory in directories:
        try:
            entries = sorted(Path(directory).iterdir())
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot read plugin directory %s: %s", directory, exc.strerror)
            continue
        for path in entries:
            classified = _classify(path)
            if classified is None:
                continue
            reason = _unsafe_reason(path)
            if reason is not None:
                log.warning("skipping plugin %s: %s", path, reason)
                found.skipped.append((path, reason))
                continue
            kind, name = classified
            binary = PluginBinary(kind, name, path, Path(directory))
            previous = found.plugins.get((kind, name))
            if previous is not None and previous.path != path:
                found.shadowed.append((previous, binary))
                log.info("%s plugin %r: %s overrides %s", kind, name, path, previous.path)
            found.plugins[(kind, name)] = binary
    return found
