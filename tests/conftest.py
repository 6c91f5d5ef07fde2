"""Shared fixtures: real plugin binaries from this environment's bin directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from support import BIN_DIR, FAKES_DIR, REPO_ROOT, installed_script

__all__ = ["BIN_DIR", "FAKES_DIR", "REPO_ROOT", "installed_script"]


@pytest.fixture
def python_plugin(tmp_path: Path):
    """Write an executable plugin script that runs with this interpreter."""

    def write(name: str, body: str) -> Path:
        path = tmp_path / name
        path.write_text(f"#!{sys.executable}\n{body}")
        path.chmod(0o755)
        return path

    return write


@pytest.fixture(autouse=True)
def _no_inherited_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A test run launched from inside a plugin must not look like a plugin itself.
    for key in list(os.environ):
        if key.startswith("PLUGIN_") or key == "DKRON_PLUGIN_MAGIC_COOKIE":
            monkeypatch.delenv(key, raising=False)
