"""The server's parts depend on narrow protocols, not on the node that wires them."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "core.api.app",
        "core.server.rpc",
        "core.server.leader",
        "core.server.jobs",
        "core.server.members",
        "core.dispatch.dispatcher",
        "core.store.memory",
    ],
)
def test_a_part_imports_without_the_composition_root(module: str) -> None:
    probe = (
        f"import sys, {module}; "
        "bad = [m for m in ('core.node',) if m in sys.modules]; "
        "sys.exit(', '.join(bad) or None)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, f"{module} pulls in {done.stderr or done.stdout}"


def test_the_in_memory_store_needs_no_raft() -> None:
    probe = "import sys, core.store, core.store.memory; sys.exit('pysyncobj' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe]).returncode == 0
