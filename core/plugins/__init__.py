"""The plugin host: discovery, supervised executor plugins, pluggy-dispatched processors."""

from core.plugins.discovery import Discovery, PluginBinary, default_search_path, discover
from core.plugins.executors import ExecutionOutcome, run_execution
from core.plugins.output import DEFAULT_OUTPUT_LIMIT, OutputBuffer
from core.plugins.probe import ProbeResult, probe
from core.plugins.processors import ProcessingResult, ProcessorDispatcher
from core.plugins.runtime import PluginRuntime, RuntimeSettings
from core.plugins.supervisor import Backoff, ManagedPlugin

__all__ = [
    "DEFAULT_OUTPUT_LIMIT",
    "Backoff",
    "Discovery",
    "ExecutionOutcome",
    "ManagedPlugin",
    "OutputBuffer",
    "PluginBinary",
    "PluginRuntime",
    "ProbeResult",
    "ProcessingResult",
    "ProcessorDispatcher",
    "RuntimeSettings",
    "default_search_path",
    "discover",
    "probe",
    "run_execution",
]
