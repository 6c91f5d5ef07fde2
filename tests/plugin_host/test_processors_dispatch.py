"""Processors through pluggy: Python ones, binary ones behind BinaryProcessor, entry points.

A processor that fails is recorded on the execution; it never loses the
execution, never raises out of dispatch, and the processors after it still run.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from plugin_host_helpers import install

from core.plugins.processors import ProcessorDispatcher
from core.plugins.runtime import PluginRuntime, RuntimeSettings
from core.plugins.supervisor import Backoff
from plugin_sdk import Execution, ProcessorPlugin, hookimpl


def tagger(tag: str) -> ProcessorPlugin:
    def process(execution: Execution, config: Mapping[str, str]) -> Execution:
        note = f"[{config.get('tag', tag)}@{config['reporting_node']}]"
        return replace(execution, output=execution.output + note.encode())

    return ProcessorPlugin(tag, process)


def failing(name: str, error: Exception) -> ProcessorPlugin:
    def process(execution: Execution, config: Mapping[str, str]) -> Execution:
        raise error

    return ProcessorPlugin(name, process)


def execution(output: bytes = b"out") -> Execution:
    return Execution(
        job_name="job",
        success=True,
        output=output,
        node_name="node-a",
        started_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        finished_at=datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC),
    )


def dispatcher(*plugins: object) -> ProcessorDispatcher:
    found = ProcessorDispatcher(load_entry_points=False)
    for plugin in plugins:
        found.register(plugin)
    return found


async def test_processors_run_in_the_jobs_order_with_the_reporting_node() -> None:
    processors = dispatcher(tagger("a"), tagger("b"), tagger("c"))
    assert processors.names() == ["a", "b", "c"]

    result = await processors.run(
        execution(), {"c": {}, "a": {"tag": "A!"}, "b": {}}, reporting_node="node-r"
    )

    assert result.errors == []
    assert result.execution.output == b"out[c@node-r][A!@node-r][b@node-r]"
    # Everything else about the execution is carried through untouched.
    assert replace(result.execution, output=b"out") == execution()


async def test_a_failing_processor_is_recorded_and_the_rest_still_run() -> None:
    processors = dispatcher(tagger("a"), failing("boom", ValueError("bad bucket")), tagger("b"))

    result = await processors.run(execution(), {"a": {}, "boom": {}, "b": {}}, "n")

    assert result.errors == ["processor 'boom' failed: ValueError: bad bucket"]
    assert (
        result.execution.output
        == b"out[a@n]\n[processor 'boom' failed: ValueError: bad bucket]\n[b@n]"
    )
    assert result.execution.success is True  # the job's own result is not rewritten


async def test_an_unknown_processor_is_a_recorded_error() -> None:
    processors = dispatcher(tagger("a"))

    result = await processors.run(execution(), {"ghost": {}, "a": {}}, "n")

    assert len(result.errors) == 1
    assert "processor 'ghost' failed" in result.errors[0]
    assert "no processor named 'ghost'" in result.errors[0] and "['a']" in result.errors[0]
    assert result.execution.output.startswith(b"out\n[processor 'ghost' failed")
    assert result.execution.output.endswith(b"[a@n]")


async def test_a_processor_returning_the_wrong_type_is_recorded() -> None:
    def wrong(execution: Execution, config: Mapping[str, str]) -> Execution:
        return "not an execution"  # type: ignore[return-value]

    result = await dispatcher(ProcessorPlugin("wrong", wrong)).run(execution(), {"wrong": {}})

    assert result.errors == [
        "processor 'wrong' failed: TypeError: returned str, expected Execution"
    ]
    assert result.execution.output.startswith(b"out\n")


async def test_a_later_registration_answers_first_for_a_shared_name() -> None:
    processors = dispatcher(tagger("x"))
    processors.register(ProcessorPlugin("x", lambda e, c: replace(e, output=b"override")))
    assert processors.names() == ["x"]
    result = await processors.run(execution(), {"x": {}})
    assert result.execution.output == b"override" and result.errors == []


class ModuleStyle:
    """A plain object with hook functions, as an entry point may name a module."""

    @hookimpl
    def dkron_processor_names(self) -> list[str]:
        return ["count"]

    @hookimpl
    def dkron_process(
        self, processor: str, execution: Execution, config: Mapping[str, str]
    ) -> Execution | None:
        if processor != "count":
            return None
        return replace(execution, output=b"%d bytes" % len(execution.output))


async def test_plain_hook_implementations_work_too() -> None:
    result = await dispatcher(ModuleStyle(), tagger("a")).run(execution(b"12345"), {"count": {}})
    assert result.execution.output == b"5 bytes"


class Spy:
    """Records every call it gets; answers for ``names``."""

    def __init__(self, *names: str) -> None:
        self._names = list(names)
        self.calls: list[str] = []

    @hookimpl
    def dkron_processor_names(self) -> list[str]:
        return self._names

    @hookimpl
    def dkron_process(
        self, processor: str, execution: Execution, config: Mapping[str, str]
    ) -> Execution | None:
        self.calls.append(processor)
        return replace(execution, output=execution.output + f"<{processor}>".encode())


async def test_a_plugin_is_called_only_for_the_names_it_lists() -> None:
    early, late = Spy("a", "b"), Spy("c")
    processors = dispatcher(early, late)

    result = await processors.run(execution(), {"b": {}, "c": {}, "a": {}}, "n")

    assert result.errors == []
    assert result.execution.output == b"out<b><c><a>"
    assert early.calls == ["b", "a"] and late.calls == ["c"]


class Nameless:
    """Implements only dkron_process: it cannot be told apart, so it is asked for every name."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def dkron_process(
        self, processor: str, execution: Execution, config: Mapping[str, str]
    ) -> Execution | None:
        self.calls.append(processor)
        return replace(execution, output=b"nameless") if processor == "quiet" else None


async def test_a_plugin_without_names_is_still_asked() -> None:
    nameless = Nameless()
    processors = dispatcher(tagger("a"), nameless)

    result = await processors.run(execution(), {"a": {}, "quiet": {}}, "n")

    assert result.errors == [] and result.execution.output == b"nameless"
    assert nameless.calls == ["a", "quiet"]  # "a" fell through to its tagger


# -- binary processors ------------------------------------------------------------------


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[PluginRuntime]:
    install(tmp_path, "processor", "bin", "processor")
    settings = RuntimeSettings(
        plugin_dir=tmp_path, backoff=Backoff(initial=0.05), load_entry_points=False
    )
    async with PluginRuntime(settings, search_path=[tmp_path]) as started:
        yield started


async def test_binary_and_python_processors_chain(runtime: PluginRuntime) -> None:
    runtime.processors.register(tagger("py"))
    assert runtime.processors.names() == ["bin", "py"]
    plugin = runtime.binary_processors["bin"]

    result = await runtime.process(
        execution(), {"py": {}, "bin": {"tag": "B"}, "py2": {}}, reporting_node="node-r"
    )

    missing = "processor 'py2' failed: no processor named 'py2' (known: ['bin', 'py'])"
    assert result.errors == [missing]
    assert result.execution.output == f"out[py@node-r][B@node-r]\n[{missing}]\n".encode()
    assert result.execution.job_name == "job" and result.execution.node_name == "node-a"
    assert result.execution.started_at == execution().started_at
    assert plugin.state.running and plugin.state.starts == 1


async def test_a_binary_processor_error_is_recorded(runtime: PluginRuntime) -> None:
    runtime.processors.register(tagger("py"))

    result = await runtime.process(execution(), {"bin": {"fail": "no route"}, "py": {}}, "n")

    assert len(result.errors) == 1
    assert "processor 'bin' failed" in result.errors[0] and "no route" in result.errors[0]
    assert result.execution.output == b"out\n[" + result.errors[0].encode() + b"]\n[py@n]"


async def test_a_crashing_binary_processor_is_recorded_and_restarted(
    runtime: PluginRuntime,
) -> None:
    plugin = runtime.binary_processors["bin"]
    first_pid = plugin.state.pid

    crashed = await runtime.process(execution(), {"bin": {"crash": "5"}}, "n")

    assert len(crashed.errors) == 1
    assert "plugin 'bin'" in crashed.errors[0] and "exit status 5" in crashed.errors[0]
    assert crashed.execution.output.startswith(b"out\n[processor 'bin' failed")

    again = await runtime.process(execution(), {"bin": {}}, "n")
    assert again.errors == [] and again.execution.output == b"out[binary@n]"
    assert plugin.state.starts == 2 and plugin.state.pid != first_pid


# -- entry points -----------------------------------------------------------------------

_MODULE = "dkron_core_test_ep_processors"


@pytest.fixture
def entry_point_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A throwaway installed distribution declaring two ``dkron.processors`` entry points."""
    site = tmp_path / "site"
    site.mkdir()
    (site / f"{_MODULE}.py").write_text(
        "from dataclasses import replace\n"
        "from plugin_sdk import ProcessorPlugin, hookimpl\n"
        "\n"
        "plugin = ProcessorPlugin('shout', lambda e, c: replace(e, output=e.output.upper()))\n"
        "\n"
        "@hookimpl\n"
        "def dkron_processor_names():\n"
        "    return ['reverse']\n"
        "\n"
        "@hookimpl\n"
        "def dkron_process(processor, execution, config):\n"
        "    if processor == 'reverse':\n"
        "        return replace(execution, output=execution.output[::-1])\n"
        "    return None\n"
    )
    dist = site / "dkron_core_test_ep-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: dkron-core-test-ep\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        f"[dkron.processors]\nshout = {_MODULE}:plugin\nreverse = {_MODULE}\n"
    )
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop(_MODULE, None)
    importlib.invalidate_caches()


async def test_entry_point_processors_are_loaded(entry_point_package: Path) -> None:
    loaded = ProcessorDispatcher(load_entry_points=True)
    assert {"shout", "reverse"} <= set(loaded.names())
    assert ProcessorDispatcher(load_entry_points=False).names() == []

    result = await loaded.run(execution(b"abc"), {"shout": {}, "reverse": {}}, "n")

    assert result.errors == []
    assert result.execution.output == b"CBA"


async def test_a_broken_entry_point_is_recorded_and_the_rest_still_load(
    entry_point_package: Path,
) -> None:
    entry_points = entry_point_package / "dkron_core_test_ep-0.1.dist-info" / "entry_points.txt"
    entry_points.write_text(
        entry_points.read_text() + "broken = dkron_core_test_ep_missing_module:plugin\n"
    )
    importlib.invalidate_caches()

    loaded = ProcessorDispatcher(load_entry_points=True)

    assert {"shout", "reverse"} <= set(loaded.names())
    [(name, cause)] = loaded.load_errors
    assert name == "broken"
    assert "ModuleNotFoundError" in cause and "dkron_core_test_ep_missing_module" in cause
    result = await loaded.run(execution(b"abc"), {"broken": {}, "shout": {}}, "n")
    assert result.execution.output.startswith(b"ABC")
    assert result.errors == [
        f"processor 'broken' failed: no processor named 'broken' (known: {loaded.names()})"
    ]


async def test_a_blocked_entry_point_is_not_loaded(entry_point_package: Path) -> None:
    loaded = ProcessorDispatcher(load_entry_points=False)
    loaded.manager.set_blocked("shout")

    loaded._load_entry_points()

    assert loaded.names() == ["reverse"] and loaded.load_errors == []
    assert [dist.project_name for _, dist in loaded.manager.list_plugin_distinfo()] == [
        "dkron-core-test-ep"
    ]
