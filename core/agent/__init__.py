"""The agent: runs jobs on this node for whichever server leads (``AgentService``),
each (run id, attempt) once, and keeps results for a new leader to collect."""

from core.agent.runs import AgentStateError, ReportDone, RunKey, RunTable, TermFence
from core.agent.service import AgentRunService

__all__ = ["AgentRunService", "AgentStateError", "ReportDone", "RunKey", "RunTable", "TermFence"]
