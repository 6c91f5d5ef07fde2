"""Helpers shared by test modules across directories.

Test modules import from here, never from ``conftest``: every test directory has a
conftest.py and, without packages, they would shadow one another.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

__all__ = ["BIN_DIR", "FAKES_DIR", "REPO_ROOT", "installed_script"]

BIN_DIR = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parent.parent
FAKES_DIR = Path(__file__).resolve().parent / "fakes"


def installed_script(name: str) -> str:
    """Absolute path of a console script installed beside the running interpreter."""
    path = shutil.which(name, path=str(BIN_DIR)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; run `pip install -e .[dev]` first")
    return path
