"""Plugin discovery: names, search order, overrides and the files it refuses to run."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from core.plugins.discovery import SYSTEM_PLUGIN_DIR, default_search_path, discover


def touch(directory: Path, name: str, mode: int = 0o755) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(mode)
    return path


def test_names_are_everything_after_the_prefix(tmp_path: Path) -> None:
    for name in (
        "dkron-executor-foo-bar",
        "dkron-executor-win.exe",
        "dkron-executor-WIN2.EXE",
        "dkron-executor-v1.2",
        "dkron-processor-files-v2",
        "dkron-executor-",  # bare prefix: no name
        "dkron-executor-.exe",  # nothing left once .exe is trimmed
        "dkron-notaplugin",
        "README",
        "my-dkron-executor-x",
    ):
        touch(tmp_path, name)

    found = discover([tmp_path])

    assert found.of_kind("executor").keys() == {"foo-bar", "win", "WIN2", "v1.2"}
    assert found.of_kind("processor").keys() == {"files-v2"}
    assert found.of_kind("executor")["win"].path == tmp_path / "dkron-executor-win.exe"
    assert found.of_kind("executor")["foo-bar"].directory == tmp_path
    assert found.skipped == [] and found.shadowed == []


def test_a_later_directory_overrides_an_earlier_one(tmp_path: Path) -> None:
    first, second, third = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for directory in (first, second, third):
        touch(directory, "dkron-executor-everywhere")
    for directory in (first, second):
        touch(directory, "dkron-executor-twice")
    touch(first, "dkron-executor-once")
    # Same name, other kind: not an override.
    touch(third, "dkron-processor-once")

    found = discover([first, second, third])

    executors = found.of_kind("executor")
    assert executors["everywhere"].directory == third
    assert executors["twice"].directory == second
    assert executors["once"].directory == first
    assert found.of_kind("processor")["once"].directory == third
    shadowed = {(old.path, new.path) for old, new in found.shadowed}
    assert shadowed == {
        (first / "dkron-executor-everywhere", second / "dkron-executor-everywhere"),
        (second / "dkron-executor-everywhere", third / "dkron-executor-everywhere"),
        (first / "dkron-executor-twice", second / "dkron-executor-twice"),
    }


def test_the_same_directory_twice_shadows_nothing(tmp_path: Path) -> None:
    touch(tmp_path, "dkron-executor-one")
    found = discover([tmp_path, tmp_path])
    assert list(found.of_kind("executor")) == ["one"]
    assert found.shadowed == []


@pytest.mark.parametrize(
    ("mode", "reason"),
    [(0o777, "world-writable"), (0o757, "world-writable"), (0o644, "not executable")],
)
def test_unsafe_files_are_skipped_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int, reason: str
) -> None:
    bad = touch(tmp_path, "dkron-executor-bad", mode)
    touch(tmp_path, "dkron-executor-good")
    caplog.set_level(logging.WARNING, logger="dkron.plugins")

    found = discover([tmp_path])

    assert list(found.of_kind("executor")) == ["good"]
    assert len(found.skipped) == 1
    path, why = found.skipped[0]
    assert path == bad and reason in why
    lines = [r.getMessage() for r in caplog.records if r.name == "dkron.plugins"]
    assert any(str(bad) in line and reason in line for line in lines), lines


def test_a_skipped_file_does_not_shadow_a_good_earlier_one(tmp_path: Path) -> None:
    good = touch(tmp_path / "first", "dkron-executor-x")
    touch(tmp_path / "second", "dkron-executor-x", 0o777)
    found = discover([tmp_path / "first", tmp_path / "second"])
    assert found.of_kind("executor")["x"].path == good
    assert [p.parent.name for p, _ in found.skipped] == ["second"]


def test_a_directory_with_a_plugin_name_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "dkron-executor-dir").mkdir()
    found = discover([tmp_path])
    assert found.plugins == {}
    assert found.skipped == [(tmp_path / "dkron-executor-dir", "not a regular file")]


def test_missing_directories_are_fine(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    touch(tmp_path / "real", "dkron-executor-ok")
    caplog.set_level(logging.DEBUG, logger="dkron.plugins")
    found = discover([tmp_path / "absent", tmp_path / "real", tmp_path / "also" / "absent"])
    assert list(found.of_kind("executor")) == ["ok"]
    assert found.skipped == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_default_search_path_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Under `pytest` or `python -m pytest` alike, the running executable lives in the venv's bin.
    bin_dir = Path(sys.executable).parent.resolve()

    assert default_search_path(tmp_path) == [
        tmp_path.resolve(),
        Path(SYSTEM_PLUGIN_DIR).resolve(),
        bin_dir,
    ]
    monkeypatch.chdir(tmp_path)
    assert default_search_path()[0] == tmp_path.resolve() / "plugins.d"
    # The same directory is listed once.
    assert default_search_path(SYSTEM_PLUGIN_DIR) == [Path(SYSTEM_PLUGIN_DIR).resolve(), bin_dir]
