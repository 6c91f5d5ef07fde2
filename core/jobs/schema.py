"""Field tables: one row per JSON field of a record, read by everything that lists fields.

A :class:`Record` is the JSON view of one dataclass (Job, RetryBackoff, Execution), in
the order the API writes it. Its rows drive the JSON codec (key, Go type, when a field is
omitted), the OpenAPI schema, the store's normalisation (``stored_form``), the sort keys
of the list routes and the allowed values validation checks. The tables themselves sit
next to their classes in :mod:`core.jobs.model`; a test checks they cover each dataclass.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BOOL",
    "INT",
    "INT64",
    "NULLABLE_TIME",
    "OUTPUT",
    "PROCESSORS",
    "STRING",
    "STRING_LIST",
    "TIME",
    "UINT",
    "FieldSpec",
    "Kind",
    "Record",
    "string_map",
    "struct",
]


@dataclass(frozen=True, slots=True)
class Kind:
    """A field's Go type as JSON sees it: how the codec reads and writes it.

    ``name`` picks the codec's behaviour; ``go_type`` is what Go's mismatch messages call
    it; ``schema`` is its OpenAPI type. ``record`` is set for a nested struct.
    """

    name: str
    go_type: str
    schema: Mapping[str, Any]
    record: Record | None = None


STRING = Kind("string", "string", {"type": "string"})
BOOL = Kind("bool", "bool", {"type": "boolean"})
INT = Kind("int", "int", {"type": "integer"})
UINT = Kind("uint", "uint", {"type": "integer"})
INT64 = Kind("int64", "int64", {"type": "integer"})
# Go's time.Time: never null; the zero time (0001-01-01T00:00:00Z) is None here.
TIME = Kind("time", "time.Time", {"type": "string", "format": "date-time"})
# Dkron's ntime.NullableTime: null is None; also reads HTML datetime-local.
NULLABLE_TIME = Kind(
    "nullable_time", "ntime.NullableTime", {"type": ["string", "null"], "format": "date-time"}
)
STRING_LIST = Kind(
    "string_list", "[]string", {"type": ["array", "null"], "items": {"type": "string"}}
)
PROCESSORS = Kind(
    "processors",
    "map[string]plugin.Config",
    {
        "type": ["object", "null"],
        "additionalProperties": {"type": "object", "additionalProperties": {"type": "string"}},
    },
)
# Bytes shown as text (invalid UTF-8 replaced), read back as UTF-8.
OUTPUT = Kind("output", "string", {"type": "string"})


def string_map(go_type: str) -> Kind:
    """A ``map[string]string`` under its Go type name (``plugin.ExecutorPluginConfig``)."""
    return Kind(
        "string_map",
        go_type,
        {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
    )


def struct(record: Record) -> Kind:
    """A pointer to a nested struct (``null`` is None)."""
    return Kind("struct", f"dkron.{record.go_name}", {"type": "object"}, record)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One JSON field.

    ``name`` is the JSON key and the attribute decoding fills; ``attr``, when set, is the
    attribute the encoder reads instead (a Job's ``id`` is written from ``effective_id``).
    ``omitempty`` leaves the field out while it is empty or at its ``default``. A
    ``derived`` field is written only, never read: from a property of that name, or from a
    value the encoder is given (``output_truncated``); without either it is left out.
    ``schema`` adds to or overrides the kind's OpenAPI type; ``enum`` is the allowed
    values, for OpenAPI and validation.
    """

    name: str
    kind: Kind
    doc: str = ""
    attr: str = ""
    omitempty: bool = False
    default: object = None
    derived: bool = False
    read_only: bool = False
    required: bool = False
    sortable: bool = False
    enum: tuple[str, ...] | None = None
    schema: Mapping[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """The attribute the encoder reads."""
        return self.attr or self.name

    def openapi(self) -> dict[str, Any]:
        prop: dict[str, Any] = dict(copy.deepcopy(self.kind.schema))
        if self.read_only:
            prop["readOnly"] = True
        if self.enum is not None:
            prop["enum"] = list(self.enum)
        prop.update(copy.deepcopy(dict(self.schema)))
        if self.doc:
            prop["description"] = self.doc
        if self.kind.record is not None:
            prop["properties"] = self.kind.record.openapi()["properties"]
        return prop


class Record:
    """A dataclass's JSON fields, in output order."""

    def __init__(self, go_name: str, cls: type[Any], fields: Sequence[FieldSpec]) -> None:
        self.go_name = go_name
        self.cls = cls
        self.fields = tuple(fields)
        self.by_name = {spec.name: spec for spec in self.fields}
        if len(self.by_name) != len(self.fields):
            raise ValueError(f"{go_name}: a JSON key is listed twice")

    def __iter__(self) -> Iterator[FieldSpec]:
        return iter(self.fields)

    def __getitem__(self, name: str) -> FieldSpec:
        return self.by_name[name]

    @property
    def keys(self) -> list[str]:
        """The keys a body may carry (derived fields are not read)."""
        return [spec.name for spec in self.fields if not spec.derived]

    @property
    def sortable(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.fields if spec.sortable)

    def of_kind(self, *kinds: str) -> tuple[str, ...]:
        """Attributes of the read fields of these kind names (``"time"``, ``"string_map"``)."""
        return tuple(
            spec.name for spec in self.fields if spec.kind.name in kinds and not spec.derived
        )

    def openapi(self) -> dict[str, Any]:
        """The record's OpenAPI 3.1 schema object."""
        schema: dict[str, Any] = {"type": "object"}
        required = [spec.name for spec in self.fields if spec.required]
        if required:
            schema["required"] = required
        schema["properties"] = {spec.name: spec.openapi() for spec in self.fields}
        return schema
