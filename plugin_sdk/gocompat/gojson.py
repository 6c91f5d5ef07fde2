"""Go's ``encoding/json`` as Dkron's API uses it, with Go's error texts.

A scanner that reads one JSON value with Go's grammar and syntax-error messages
(``invalid character 'x' looking for beginning of value``), the decoding rules for Go
struct fields (first type mismatch reported once the whole value is read, unknown keys
ignored, keys matched case-insensitively, ``null`` leaving a value as it is), Go's view of
invalid UTF-8, and ``go_json_dumps``, gin's rendering of a value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "KIND_NAMES",
    "Decoding",
    "Field",
    "FieldDecoder",
    "GoJSONError",
    "Node",
    "Struct",
    "decode_bool",
    "decode_go_text",
    "decode_string",
    "decode_string_list",
    "go_json_dumps",
    "integer_decoder",
    "scan",
    "string_map_decoder",
]


class GoJSONError(ValueError):
    """A value Go's JSON decoder rejects; ``str()`` is Go's error text."""


_ESCAPED_BYTES = {i: "\ufffd" for i in range(0xDC80, 0xDD00)}


def decode_go_text(data: bytes) -> str:
    """Bytes to text the way Go's JSON encoder sees them: each invalid byte becomes U+FFFD."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # surrogateescape maps each undecodable byte to one lone surrogate, exactly the
        # bytes Go's utf8.DecodeRune reports one at a time as RuneError.
        return data.decode("utf-8", "surrogateescape").translate(_ESCAPED_BYTES)


_NAMED_BYTES = {
    7: "\\a",
    8: "\\b",
    9: "\\t",
    10: "\\n",
    11: "\\v",
    12: "\\f",
    13: "\\r",
    0x5C: "\\\\",
}


def _go_char(byte: int) -> str:
    """``quoteChar`` from Go's JSON scanner: the offending byte as a Go rune literal."""
    if byte == 0x27:
        return "'\\''"
    if byte == 0x22:
        return "'\"'"
    if byte in _NAMED_BYTES:
        body = _NAMED_BYTES[byte]
    elif byte < 0x20 or byte == 0x7F:
        body = f"\\x{byte:02x}"
    elif byte < 0x7F or (byte >= 0xA1 and byte != 0xAD):
        # Go turns the byte into the rune of the same value (Latin-1) before quoting it.
        body = chr(byte)
    else:
        body = f"\\u{byte:04x}"
    return f"'{body}'"


# -- a Go-compatible JSON scanner -----------------------------------------------------------

_MAX_DEPTH = 10_000
_PLAIN = re.compile(rb'[^"\\\x00-\x1f]*')
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_SIMPLE_ESCAPES = {
    0x22: '"',
    0x5C: "\\",
    0x2F: "/",
    0x62: "\b",
    0x66: "\f",
    0x6E: "\n",
    0x72: "\r",
    0x74: "\t",
}


@dataclass(slots=True)
class Node:
    kind: str  # object, array, string, number, true, false, null
    text: str = ""  # decoded string, or the number's literal
    raw: bytes = b""  # a string's bytes between the quotes, escapes left as they are
    members: list[tuple[str, Node]] = field(default_factory=list)
    elements: list[Node] = field(default_factory=list)


class _Scanner:
    """Reads one JSON value with Go's grammar and Go's syntax error messages."""

    def __init__(self, data: bytes, *, stream: bool) -> None:
        self.data = data
        self.size = len(data)
        # stream=True is json.Decoder.Decode; False is json.Unmarshal.
        self.stream = stream

    def _eof(self) -> GoJSONError:
        return GoJSONError("unexpected EOF" if self.stream else "unexpected end of JSON input")

    def _skip_ws(self, pos: int) -> int:
        data, size = self.data, self.size
        while pos < size and data[pos] in b" \t\r\n":
            pos += 1
        return pos

    def _need(self, pos: int) -> int:
        if pos >= self.size:
            raise self._eof()
        return self.data[pos]

    def scan(self) -> Node:
        pos = self._skip_ws(0)
        if pos >= self.size:
            raise GoJSONError("EOF" if self.stream else "unexpected end of JSON input")
        node, pos = self._value(pos)
        if not self.stream:
            pos = self._skip_ws(pos)
            if pos < self.size:
                raise GoJSONError(
                    f"invalid character {_go_char(self.data[pos])} after top-level value"
                )
        return node

    def _value(self, pos: int) -> tuple[Node, int]:
        # Iterative, so nesting is bounded by Go's limit and not by Python's stack.
        stack: list[Node] = []
        keys: list[str] = []
        while True:
            byte = self._need(pos)
            value: Node
            if byte == 0x7B or byte == 0x5B:  # { or [
                if len(stack) >= _MAX_DEPTH:
                    raise GoJSONError(f"invalid character {_go_char(byte)} exceeded max depth")
                container = Node("object" if byte == 0x7B else "array")
                pos = self._skip_ws(pos + 1)
                first = self._need(pos)
                if first == byte + 2:  # } or ]
                    value, pos = container, pos + 1
                elif byte == 0x5B:
                    stack.append(container)
                    keys.append("")
                    continue
                elif first == 0x22:
                    key, pos = self._key(pos)
                    stack.append(container)
                    keys.append(key)
                    continue
                else:
                    raise GoJSONError(
                        f"invalid character {_go_char(first)} looking for beginning of object key"
                        " string"
                    )
            elif byte == 0x22:
                text, raw, pos = self._string(pos)
                value = Node("string", text=text, raw=raw)
            elif byte == 0x2D or 0x30 <= byte <= 0x39:
                text, pos = self._number(pos)
                value = Node("number", text=text)
            elif byte == 0x74:
                pos = self._literal(pos, b"true")
                value = Node("true")
            elif byte == 0x66:
                pos = self._literal(pos, b"false")
                value = Node("false")
            elif byte == 0x6E:
                pos = self._literal(pos, b"null")
                value = Node("null")
            else:
                raise GoJSONError(
                    f"invalid character {_go_char(byte)} looking for beginning of value"
                )
            # Attach the finished value, then read separators until another value starts.
            while True:
                if not stack:
                    return value, pos
                parent = stack[-1]
                if parent.kind == "object":
                    parent.members.append((keys[-1], value))
                else:
                    parent.elements.append(value)
                pos = self._skip_ws(pos)
                byte = self._need(pos)
                if byte == 0x2C:  # ,
                    pos = self._skip_ws(pos + 1)
                    if parent.kind == "object":
                        first = self._need(pos)
                        if first != 0x22:
                            raise GoJSONError(
                                f"invalid character {_go_char(first)} looking for beginning of"
                                " object key string"
                            )
                        keys[-1], pos = self._key(pos)
                    break
                closer = 0x7D if parent.kind == "object" else 0x5D
                if byte != closer:
                    where = "object key:value pair" if parent.kind == "object" else "array element"
                    raise GoJSONError(f"invalid character {_go_char(byte)} after {where}")
                value, pos = stack.pop(), pos + 1
                keys.pop()

    def _key(self, pos: int) -> tuple[str, int]:
        key, _, pos = self._string(pos)
        pos = self._skip_ws(pos)
        byte = self._need(pos)
        if byte != 0x3A:
            raise GoJSONError(f"invalid character {_go_char(byte)} after object key")
        return key, self._skip_ws(pos + 1)

    def _hex4(self, pos: int) -> int:
        for offset in range(4):
            byte = self._need(pos + offset)
            if byte not in _HEX_DIGITS:
                raise GoJSONError(
                    f"invalid character {_go_char(byte)} in \\u hexadecimal character escape"
                )
        return int(self.data[pos : pos + 4], 16)

    def _string(self, start: int) -> tuple[str, bytes, int]:
        data = self.data
        parts: list[str] = []
        pos = start + 1
        while True:
            match = _PLAIN.match(data, pos)
            assert match is not None  # the pattern accepts the empty string
            if match.end() > pos:
                parts.append(decode_go_text(data[pos : match.end()]))
            pos = match.end()
            byte = self._need(pos)
            if byte == 0x22:
                return "".join(parts), data[start + 1 : pos], pos + 1
            if byte < 0x20:
                raise GoJSONError(f"invalid character {_go_char(byte)} in string literal")
            escape = self._need(pos + 1)
            if escape in _SIMPLE_ESCAPES:
                parts.append(_SIMPLE_ESCAPES[escape])
                pos += 2
                continue
            if escape != 0x75:  # u
                raise GoJSONError(f"invalid character {_go_char(escape)} in string escape code")
            code = self._hex4(pos + 2)
            pos += 6
            if 0xD800 <= code < 0xE000:
                # Go pairs a high surrogate with an immediately following \u low surrogate;
                # anything else becomes U+FFFD and the next escape is read on its own.
                low = self._low_surrogate(pos) if code < 0xDC00 else None
                if low is None:
                    parts.append("\ufffd")
                else:
                    parts.append(chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)))
                    pos += 6
            else:
                parts.append(chr(code))

    def _low_surrogate(self, pos: int) -> int | None:
        data = self.data
        if data[pos : pos + 2] != b"\\u" or pos + 6 > self.size:
            return None
        digits = data[pos + 2 : pos + 6]
        if not all(byte in _HEX_DIGITS for byte in digits):
            return None
        code = int(digits, 16)
        return code if 0xDC00 <= code < 0xE000 else None

    def _digits(self, pos: int) -> int:
        data, size = self.data, self.size
        while pos < size and 0x30 <= data[pos] <= 0x39:
            pos += 1
        return pos

    def _number(self, start: int) -> tuple[str, int]:
        data, size = self.data, self.size
        pos = start
        if data[pos] == 0x2D:
            pos += 1
            byte = self._need(pos)
            if not 0x30 <= byte <= 0x39:
                raise GoJSONError(f"invalid character {_go_char(byte)} in numeric literal")
        pos = pos + 1 if data[pos] == 0x30 else self._digits(pos)
        if pos < size and data[pos] == 0x2E:
            byte = self._need(pos + 1)
            if not 0x30 <= byte <= 0x39:
                raise GoJSONError(
                    f"invalid character {_go_char(byte)} after decimal point in numeric literal"
                )
            pos = self._digits(pos + 1)
        if pos < size and data[pos] in b"eE":
            pos += 1
            if self._need(pos) in b"+-":
                pos += 1
            byte = self._need(pos)
            if not 0x30 <= byte <= 0x39:
                raise GoJSONError(
                    f"invalid character {_go_char(byte)} in exponent of numeric literal"
                )
            pos = self._digits(pos)
        return data[start:pos].decode("ascii"), pos

    def _literal(self, start: int, word: bytes) -> int:
        for offset in range(1, len(word)):
            byte = self._need(start + offset)
            if byte != word[offset]:
                expected = chr(word[offset])
                raise GoJSONError(
                    f"invalid character {_go_char(byte)} in literal {word.decode()} "
                    f"(expecting '{expected}')"
                )
        return start + len(word)


def _node_from_python(value: object) -> Node:
    """An already-parsed JSON value (``json.loads`` output) as a scanner node."""
    if value is None:
        return Node("null")
    if value is True:
        return Node("true")
    if value is False:
        return Node("false")
    if isinstance(value, str):
        raw = json.dumps(value, ensure_ascii=False)[1:-1].encode("utf-8", "surrogatepass")
        return Node("string", text=decode_go_text(value.encode("utf-8", "surrogatepass")), raw=raw)
    if isinstance(value, int):
        return Node("number", text=str(value))
    if isinstance(value, float):
        return Node("number", text=json.dumps(value))
    if isinstance(value, dict):
        return Node("object", members=[(str(k), _node_from_python(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return Node("array", elements=[_node_from_python(v) for v in value])
    raise GoJSONError(f"json: unsupported value of Python type {type(value).__name__}")


def scan(data: bytes | str | object, *, stream: bool) -> Node:
    """One JSON value as Go reads it: ``stream=True`` is ``json.Decoder.Decode`` (first
    value only, ``EOF`` when empty), ``False`` is ``json.Unmarshal``. ``data`` may also be
    an already-parsed value (``json.loads`` output). Raises ``GoJSONError`` (Go's text)."""
    if isinstance(data, bytes | bytearray | memoryview):
        return _Scanner(bytes(data), stream=stream).scan()
    if isinstance(data, str):
        return _Scanner(data.encode("utf-8", "surrogatepass"), stream=stream).scan()
    return _node_from_python(data)


# -- decoding -------------------------------------------------------------------------------

KIND_NAMES = {
    "object": "object",
    "array": "array",
    "string": "string",
    "number": "number",
    "true": "bool",
    "false": "bool",
}
_SIGNED = re.compile(r"-?[0-9]+")
_UNSIGNED = re.compile(r"[0-9]+")


class Decoding:
    """Go keeps the first type mismatch and reports it after reading the whole value."""

    __slots__ = ("first_error", "unknown")

    def __init__(self) -> None:
        self.first_error: str | None = None
        # Keys Go would ignore in silence: reported (a misspelt key is a lost setting).
        self.unknown: list[str] = []

    def mismatch(self, what: str, go_type: str, struct: str, path: str) -> None:
        if self.first_error is not None:
            return
        if path:
            self.first_error = (
                f"json: cannot unmarshal {what} into Go struct field {struct}.{path} "
                f"of type {go_type}"
            )
        else:
            self.first_error = f"json: cannot unmarshal {what} into Go value of type {go_type}"

    def finish(self) -> None:
        if self.first_error is not None:
            raise GoJSONError(self.first_error)


# A field decoder gets the node, the decoding state, the Go struct name and field path,
# and the current value (Go decodes into what is already there), and returns the new value.
FieldDecoder = Callable[[Node, Decoding, str, str, object], object]


def decode_string(node: Node, ctx: Decoding, struct: str, path: str, current: object) -> object:
    if node.kind == "string":
        return node.text
    if node.kind != "null":  # null leaves a Go string untouched
        ctx.mismatch(KIND_NAMES[node.kind], "string", struct, path)
    return current


def decode_bool(node: Node, ctx: Decoding, struct: str, path: str, current: object) -> object:
    if node.kind in ("true", "false"):
        return node.kind == "true"
    if node.kind != "null":
        ctx.mismatch(KIND_NAMES[node.kind], "bool", struct, path)
    return current


def integer_decoder(go_type: str, *, signed: bool) -> FieldDecoder:
    low, high = (-(1 << 63), (1 << 63) - 1) if signed else (0, (1 << 64) - 1)
    pattern = _SIGNED if signed else _UNSIGNED

    def decode(node: Node, ctx: Decoding, struct: str, path: str, current: object) -> object:
        if node.kind == "null":
            return current
        if node.kind != "number":
            ctx.mismatch(KIND_NAMES[node.kind], go_type, struct, path)
            return current
        if not pattern.fullmatch(node.text) or not low <= int(node.text) <= high:
            # strconv.ParseInt/ParseUint failed or overflowed: Go names the literal.
            ctx.mismatch(f"number {node.text}", go_type, struct, path)
            return current
        return int(node.text)

    return decode


def string_map_decoder(go_type: str) -> FieldDecoder:
    def decode(node: Node, ctx: Decoding, struct: str, path: str, current: object) -> object:
        if node.kind == "null":
            return None
        if node.kind != "object":
            ctx.mismatch(KIND_NAMES[node.kind], go_type, struct, path)
            return current
        # Go decodes into an existing map, so a repeated key merges the two objects.
        result: dict[str, str] = dict(current) if isinstance(current, dict) else {}
        for key, item in node.members:
            result[key] = str(decode_string(item, ctx, struct, path, ""))
        return result

    return decode


def decode_string_list(
    node: Node, ctx: Decoding, struct: str, path: str, current: object
) -> object:
    if node.kind == "null":
        return None
    if node.kind != "array":
        ctx.mismatch(KIND_NAMES[node.kind], "[]string", struct, path)
        return current
    return [str(decode_string(item, ctx, struct, path, "")) for item in node.elements]


@dataclass(frozen=True, slots=True)
class Field:
    """One struct field: the attribute it fills and how its JSON value is read."""

    attr: str
    decode: FieldDecoder


def _fold(key: str) -> str:
    """Go's key folding; of non-ASCII letters only long s and Kelvin sign fold onto ASCII."""
    if key.isascii():
        return key.upper()
    folds = {"\u017f": "S", "\u212a": "K"}
    return "".join(char.upper() if char < "\x80" else folds.get(char, char) for char in key)


class Struct:
    """A Go struct's JSON fields: exact key first, then Go's case-insensitive match."""

    def __init__(self, go_name: str, fields: dict[str, Field]) -> None:
        self.go_name = go_name
        self.exact = fields
        self.folded = {_fold(name): name for name in fields}

    def lookup(self, key: str) -> tuple[str, Field] | None:
        found = self.exact.get(key)
        if found is not None:
            return key, found
        name = self.folded.get(_fold(key))
        return None if name is None else (name, self.exact[name])

    def decode_into(self, target: object, node: Node, ctx: Decoding, prefix: str) -> None:
        for key, item in node.members:
            hit = self.lookup(key)
            if hit is None:
                ctx.unknown.append(prefix + key)  # ignored, as in Go, but said
                continue
            name, spec = hit
            value = spec.decode(item, ctx, self.go_name, prefix + name, getattr(target, spec.attr))
            setattr(target, spec.attr, value)


_HTML_UNSAFE = re.compile("[<>&\u2028\u2029]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def go_json_dumps(value: object, *, pretty: bool = False) -> bytes:
    """Serialise like gin's ``c.JSON`` (Go ``json.Marshal``) or ``c.IndentedJSON`` (pretty).

    Go escapes ``<``, ``>``, ``&``, U+2028 and U+2029 inside strings; those characters
    cannot occur outside strings in JSON, so they are replaced on the whole text.
    """
    if pretty:
        text = json.dumps(value, ensure_ascii=False, indent=4, separators=(",", ": "))
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = _HTML_UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
    text = _LONE_SURROGATE.sub("\ufffd", text)
    return text.encode("utf-8")
