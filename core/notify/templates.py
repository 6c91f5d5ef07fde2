"""Dkron's notification templates: Go ``text/template`` restricted to its eight fields.

Dkron renders payloads with ``text/template`` over a struct of eight fields. dkron-py
renders the same placeholders (``{{.JobName}}``, ``{{ .Output }}``, trim markers
``{{-``/``-}}`` and ``{{/* comments */}}``) with the same output and the same error
texts for the common mistakes; other template actions are refused with a parse error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn

from core.jobs.model import Execution

__all__ = [
    "FIELDS",
    "TemplateData",
    "TemplateError",
    "go_time_string",
    "render",
    "render_payload",
    "report",
]

# In Dkron's struct order; the Go type text is quoted by its "can't evaluate" errors.
FIELDS = (
    "Report",
    "JobName",
    "ReportingNode",
    "StartTime",
    "FinishedAt",
    "Success",
    "NodeName",
    "Output",
)
_GO_STRUCT = (
    "struct { Report string; JobName string; ReportingNode string; StartTime time.Time; "
    "FinishedAt time.Time; Success string; NodeName string; Output string }"
)
_GO_ZERO_TIME = "0001-01-01 00:00:00 +0000 UTC"
# Keywords and builtin functions of text/template: valid Go, but not rendered here.
_GO_NAMES = frozenset(
    [
        "if",
        "else",
        "end",
        "range",
        "with",
        "define",
        "template",
        "block",
        "break",
        "continue",
        "nil",
        "true",
        "false",
        "and",
        "or",
        "not",
        "len",
        "index",
        "slice",
        "print",
        "printf",
        "println",
        "html",
        "js",
        "urlquery",
        "call",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
    ]
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TemplateError(Exception):
    """A template that Dkron would not render; ``str()`` is Dkron's payload text."""


@dataclass(frozen=True)
class TemplateData:
    """The values behind the placeholders, already formatted as Go prints them."""

    report: str
    job_name: str
    reporting_node: str
    start_time: str
    finished_at: str
    success: str
    node_name: str
    output: str

    def field(self, name: str) -> str | None:
        values: Mapping[str, str] = {
            "Report": self.report,
            "JobName": self.job_name,
            "ReportingNode": self.reporting_node,
            "StartTime": self.start_time,
            "FinishedAt": self.finished_at,
            "Success": self.success,
            "NodeName": self.node_name,
            "Output": self.output,
        }
        return values.get(name)

    @classmethod
    def build(
        cls, execution: Execution, group: Iterable[Execution], reporting_node: str
    ) -> TemplateData:
        return cls(
            report=report(execution, group, reporting_node),
            job_name=execution.job_name,
            reporting_node=reporting_node,
            start_time=go_time_string(execution.started_at),
            finished_at=go_time_string(execution.finished_at),
            success=_go_bool(execution.success),
            node_name=execution.node_name,
            output=_text(execution.output),
        )


def go_time_string(moment: datetime | None) -> str:
    """Go's ``time.Time.String()`` (``2006-01-02 15:04:05.999999999 -0700 MST``) in UTC.

    Dkron's execution times arrive through protobuf, so they are always in UTC.
    """
    if moment is None:
        return _GO_ZERO_TIME
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + " +0000 UTC"


def _go_bool(value: bool) -> str:
    return "true" if value else "false"


def _text(output: bytes) -> str:
    return output.decode("utf-8", errors="replace")


def report(execution: Execution, group: Iterable[Execution], reporting_node: str) -> str:
    """Dkron's ``{{.Report}}`` text: the execution, then one tab-indented line per member."""
    lines = "".join(
        f"\t[Node]: {member.node_name} [Start]: {go_time_string(member.started_at)} "
        f"[End]: {go_time_string(member.finished_at)} [Success]: {_go_bool(member.success)}\n"
        for member in group
    )
    return (
        f"Executed: {execution.job_name}\n"
        f"Reporting node: {reporting_node}\n"
        f"Start time: {go_time_string(execution.started_at)}\n"
        f"End time: {go_time_string(execution.finished_at)}\n"
        f"Success: {_go_bool(execution.success)}\n"
        f"Node: {execution.node_name}\n"
        f"Output: {_text(execution.output)}\n"
        f"Execution group: {execution.group}\n"
        f"{lines}"
    )


# -- parsing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    name: str
    line: int  # 1-based, as Go counts
    column: int  # byte offset of the ".Name" token within its line, as Go reports


_Node = str | _Field


def _parse(template: str) -> list[_Node]:
    nodes: list[_Node] = []
    position = 0
    trim_next = False
    while True:
        start = template.find("{{", position)
        text = template[position:] if start < 0 else template[position:start]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if start < 0:
            nodes.append(text)
            return nodes
        line = template.count("\n", 0, start) + 1
        inner = start + 2
        if template.startswith("- ", inner) or template.startswith("-\t", inner):
            text = text.rstrip(" \t\r\n")
            inner += 2
        nodes.append(text)
        if template.startswith("/*", inner):
            close = template.find("*/", inner + 2)
            if close < 0:
                _parse_error(line, "unclosed comment")
            end, trim_next = _close_after_comment(template, close + 2, line)
            position = end
            continue
        close = template.find("}}", inner)
        if close < 0:
            _parse_error(line, "unclosed action")
        end = close + 2
        body_end = close
        trim_next = False
        if close - 2 >= inner and template[close - 2 : close] in (" -", "\t-"):
            body_end = close - 2
            trim_next = True
        body = template[inner:body_end]
        nodes.append(_action(template, body, inner, line))
        position = end


def _close_after_comment(template: str, after: int, line: int) -> tuple[int, bool]:
    for closing, trim in (("}}", False), (" -}}", True), ("\t-}}", True)):
        if template.startswith(closing, after):
            return after + len(closing), trim
    _parse_error(line, "comment ends before closing delimiter")


def _action(template: str, body: str, offset: int, line: int) -> _Node:
    stripped = body.strip()
    if not stripped:
        _parse_error(line, "missing value for command")
    if stripped.startswith("."):
        name = stripped[1:]
        if _IDENT.fullmatch(name):
            token = offset + body.index(stripped)
            line_start = template.rfind("\n", 0, token) + 1
            return _Field(name, line, token - line_start)
    else:
        word = _IDENT.match(stripped)
        if word and word.group() not in _GO_NAMES:
            _parse_error(line, f'function "{word.group()}" not defined')
    _parse_error(
        line,
        f"unsupported action {{{{{body}}}}}: only field placeholders such as "
        "{{.JobName}} are rendered",
    )


def _parse_error(line: int, reason: str) -> NoReturn:
    raise TemplateError(f"Failed to parse template: template: report:{line}: {reason}")


def render(template: str, data: TemplateData) -> str:
    """Render ``template``; raises :class:`TemplateError` carrying Dkron's failure text."""
    parts: list[str] = []
    for node in _parse(template):
        if isinstance(node, str):
            parts.append(node)
            continue
        value = data.field(node.name)
        if value is None:
            # Go only finds an unknown field while executing, and Dkron words that
            # failure differently (no space after the colon).
            raise TemplateError(
                f"Failed to execute template:template: report:{node.line}:{node.column}: "
                f'executing "report" at <.{node.name}>: can\'t evaluate field {node.name} '
                f"in type {_GO_STRUCT}"
            )
        parts.append(value)
    return "".join(parts)


def render_payload(template: str, data: TemplateData) -> str:
    """What Dkron sends: the rendered template, or its failure text in its place."""
    try:
        return render(template, data)
    except TemplateError as exc:
        return str(exc)
