"""plugin_sdk.goplugin knows nothing of Dkron; plugin_sdk.gocompat sits below kernel and SDK.

Checked on the source (imports as written), not by importing: importing any
``plugin_sdk`` module runs the SDK's ``__init__`` first, which is not the package's doing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support import REPO_ROOT

# go-plugin's own proto package (``plugin.*``) is generated into dkron_pb/plugin; the rest
# of dkron_pb is Dkron's wire types.
_GOPLUGIN_MAY_IMPORT = ("plugin_sdk.goplugin", "dkron_pb.plugin")
_GOCOMPAT_MAY_IMPORT = ("plugin_sdk.gocompat",)
_FIRST_PARTY = ("core", "plugin_sdk", "builtin_plugins", "dkron_pb")


def _imports(package: Path) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.extend((path.name, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.extend((path.name, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def _first_party(name: str) -> bool:
    return name.split(".")[0] in _FIRST_PARTY


@pytest.mark.parametrize(
    ("package", "allowed"),
    [("goplugin", _GOPLUGIN_MAY_IMPORT), ("gocompat", _GOCOMPAT_MAY_IMPORT)],
)
def test_package_imports_only_itself_among_first_party_code(
    package: str, allowed: tuple[str, ...]
) -> None:
    imports = _imports(REPO_ROOT / "plugin_sdk" / package)
    assert imports, "no imports found: wrong path?"
    stray = [
        (module, name)
        for module, name in imports
        if _first_party(name) and not name.startswith(tuple(f"{a}." for a in allowed))
    ]
    assert stray == []


def test_goplugin_reads_no_dkron_setting() -> None:
    # Dkron's cookie and DKRON_* variables are passed in by plugin_sdk.protocol.
    for path in (REPO_ROOT / "plugin_sdk" / "goplugin").rglob("*.py"):
        assert "DKRON_" not in path.read_text(), path.name
