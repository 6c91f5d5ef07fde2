"""Regenerate the `dkron_pb` package from the .proto sources in this folder.

    python proto/generate.py            # rewrite dkron_pb/
    python proto/generate.py --check    # exit 1 if dkron_pb/ is stale

protoc writes imports relative to the proto root (`from types.v1 import ...`),
which would collide with the standard library's `types`; every generated import
is therefore re-rooted under `dkron_pb`.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PROTO_ROOT.parent
PACKAGE = "dkron_pb"
TOP_LEVEL = ("types", "plugin", "dkronpy")
_IMPORT = re.compile(rf"^(from|import) ({'|'.join(TOP_LEVEL)})([.\s])", re.MULTILINE)


def _protos() -> list[str]:
    return sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))


def generate(out: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc  # dev dependency: pip install -e .[dev]

    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *_protos(),
    ]
    bin_dir = Path(sys.executable).parent
    import os

    env_path = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{env_path}"  # finds protoc-gen-mypy*
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for path in out.rglob("*.py*"):
        text = path.read_text()
        path.write_text(_IMPORT.sub(rf"\1 {PACKAGE}.\2\3", text))
    for folder in [out, *[d for d in out.rglob("*") if d.is_dir()]]:
        (folder / "__init__.py").touch()
    (out / "__init__.py").write_text(
        '"""Generated from proto/ by `python proto/generate.py`; do not edit."""\n'
    )
    (out / "py.typed").touch()


def _differences(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    found = [f"only in one tree: {n}" for n in cmp.left_only + cmp.right_only]
    found += [f"differs: {n}" for n in cmp.diff_files]
    for name, sub in cmp.subdirs.items():
        found += [f"{name}/{d}" for d in _differences(Path(sub.left), Path(sub.right))]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if dkron_pb is stale")
    options = parser.parse_args()
    target = REPO_ROOT / PACKAGE
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / PACKAGE
        fresh.mkdir()
        generate(fresh)
        if options.check:
            stale = _differences(fresh, target) if target.exists() else ["missing"]
            for line in stale:
                print(f"stale generated code: {line}", file=sys.stderr)
            return 1 if stale else 0
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(fresh, target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
