"""The import direction of docs/architecture.md holds: no lower layer imports a higher one.

The contracts live in .importlinter; this runs import-linter over the real source tree so
the README's test command fails when a change breaks a layer, as CI's lint step does.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from support import REPO_ROOT, installed_script


def test_import_contracts_hold() -> None:
    result = subprocess.run(
        [installed_script("lint-imports"), "--no-cache"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


def test_a_forbidden_import_is_caught(tmp_path: Path) -> None:
    """The check can fail: forbidding an import the tree really has (core.api imports
    core.jobs) is reported broken."""
    config = REPO_ROOT / ".importlinter"
    probe = config.read_text() + (
        "\n[importlinter:contract:probe]\n"
        "name = probe\n"
        "type = forbidden\nsource_modules =\n    core.api\n"
        "forbidden_modules =\n    core.jobs\n"
    )
    path = tmp_path / "importlinter.ini"
    path.write_text(probe)
    result = subprocess.run(
        [installed_script("lint-imports"), "--no-cache", "--config", str(path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "probe BROKEN" in result.stdout, result.stdout
