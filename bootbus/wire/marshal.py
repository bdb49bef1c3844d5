"""Marshalling and unmarshalling of D-Bus values, in both byte orders.

Owns: the mapping between Python values and the wire encoding of every D-Bus
type, with the specification's validation on the way in (zero padding,
booleans 0/1, UTF-8 without NUL, valid paths and signatures, array bounds,
nesting depth). Python values: integers for y n q i u x t h (h is the index
into the message's fd list), bool for b, float for d, str for s o g, a
``(signature, value)`` tuple for v, list for arrays, dict for arrays of dict
entries, tuple for structs. Never does I/O.
"""

from __future__ import annotations

import struct

from . import names
from .errors import MarshalError, SignatureError
from .limits import MAX_ARRAY_SIZE, MAX_TOTAL_DEPTH
from .signature import ALIGNMENT, FIXED_TYPES, split_signature, struct_members

TYPE_CHECKING = False  # typing's, without importing typing (see bootbus.plain)
if TYPE_CHECKING:
    from typing import Any

LITTLE = "l"
BIG = "B"
_FMT = {"y": "B", "b": "I", "n": "h", "q": "H", "i": "i", "u": "I", "x": "q", "t": "Q",
        "d": "d", "h": "I"}
_STRUCTS = {
    (endian, code): struct.Struct(("<" if endian == LITTLE else ">") + fmt)
    for endian in (LITTLE, BIG) for code, fmt in _FMT.items()
}
_INT_RANGES = {
    "y": (0, 0xFF), "n": (-0x8000, 0x7FFF), "q": (0, 0xFFFF), "i": (-0x80000000, 0x7FFFFFFF),
    "u": (0, 0xFFFFFFFF), "x": (-(1 << 63), (1 << 63) - 1), "t": (0, (1 << 64) - 1),
    "h": (0, 0xFFFFFFFF),
}


class Writer:
    """Appends marshalled values to a buffer whose offset 0 is 8-aligned."""

    __slots__ = ("buf", "endian", "_u32")

    def __init__(self, endian: str = LITTLE, buf: bytearray | None = None) -> None:
        if endian not in (LITTLE, BIG):
            raise MarshalError(f"unknown byte order {endian!r}")
        self.endian = endian
        self.buf = bytearray() if buf is None else buf
        self._u32 = _STRUCTS[(endian, "u")]

    def align(self, n: int) -> None:
        pad = -len(self.buf) % n
        if pad:
            self.buf += bytes(pad)

    def write(self, sig: str, value: Any) -> None:
        for code in split_signature(sig):
            self._value(code, value, 0)

    def write_many(self, sig: str, values: tuple[Any, ...] | list[Any]) -> None:
        types = split_signature(sig)
        if len(types) != len(values):
            raise MarshalError(f"signature {sig!r} needs {len(types)} values, got {len(values)}")
        for code, value in zip(types, values):
            self._value(code, value, 0)

    def _value(self, t: str, value: Any, depth: int) -> None:
        if depth > MAX_TOTAL_DEPTH:
            raise MarshalError("value nests deeper than the specification allows")
        code = t[0]
        buf = self.buf
        if code in FIXED_TYPES:
            self.align(ALIGNMENT[code])
            try:
                if code == "b":
                    if not isinstance(value, (bool, int)) or value not in (0, 1):
                        raise MarshalError(f"boolean expected, got {value!r}")
                    value = int(value)
                elif code == "d":
                    if isinstance(value, bool) or not isinstance(value, (int, float)):
                        raise MarshalError(f"number expected for 'd', got {value!r}")
                    value = float(value)
                else:
                    low, high = _INT_RANGES[code]
                    if isinstance(value, bool) or not isinstance(value, int) or not (
                        low <= value <= high
                    ):
                        raise MarshalError(f"{value!r} does not fit type {code!r}")
                buf += _STRUCTS[(self.endian, code)].pack(value)
            except (struct.error, TypeError, ValueError, OverflowError) as exc:
                raise MarshalError(f"cannot marshal {value!r} as {code!r}: {exc}") from None
        elif code in "so":
            if not isinstance(value, str):
                raise MarshalError(f"string expected for {code!r}, got {value!r}")
            if code == "o":
                names.check_object_path(value)
            data = _encode(value)
            self.align(4)
            buf += self._u32.pack(len(data))
            buf += data
            buf += b"\0"
        elif code == "g":
            if not isinstance(value, str):
                raise MarshalError(f"signature expected, got {value!r}")
            try:
                split_signature(value)
            except SignatureError as exc:
                raise MarshalError(str(exc)) from None
            data = value.encode("ascii")
            buf.append(len(data))
            buf += data
            buf += b"\0"
        elif code == "v":
            if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str)):
                raise MarshalError(f"variant expected as (signature, value), got {value!r}")
            inner_sig, inner = value
            types = _single(inner_sig)
            self._value("g", inner_sig, depth)
            self._value(types, inner, depth + 1)
        elif code == "a":
            self._array(t, value, depth)
        elif code == "(":
            members = struct_members(t)
            if not isinstance(value, (tuple, list)) or len(value) != len(members):
                raise MarshalError(f"struct {t} expected, got {value!r}")
            self.align(8)
            for member, item in zip(members, value):
                self._value(member, item, depth + 1)
        else:  # pragma: no cover - signatures are validated before
            raise MarshalError(f"cannot marshal type {t!r}")

    def _array(self, t: str, value: Any, depth: int) -> None:
        elem = t[1:]
        self.align(4)
        at = len(self.buf)
        self.buf += b"\0\0\0\0"
        self.align(ALIGNMENT[elem[0]])
        start = len(self.buf)
        if elem[0] == "{":
            key_t, value_t = struct_members(elem)
            if not isinstance(value, dict):
                raise MarshalError(f"dict expected for {t}, got {type(value).__name__}")
            for key, item in value.items():
                self.align(8)
                self._value(key_t, key, depth + 2)
                self._value(value_t, item, depth + 2)
        elif elem == "y" and isinstance(value, (bytes, bytearray, memoryview)):
            self.buf += value
        else:
            if not isinstance(value, (list, tuple)):
                raise MarshalError(f"list expected for {t}, got {type(value).__name__}")
            for item in value:
                self._value(elem, item, depth + 1)
        length = len(self.buf) - start
        if length > MAX_ARRAY_SIZE:
            raise MarshalError(f"array of {length} bytes exceeds {MAX_ARRAY_SIZE}")
        self._u32.pack_into(self.buf, at, length)


def _encode(value: str) -> bytes:
    if "\0" in value:
        raise MarshalError("strings must not contain NUL")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MarshalError(f"string is not valid UTF-8: {exc}") from None


def _single(sig: str) -> str:
    try:
        types = split_signature(sig)
    except SignatureError as exc:
        raise MarshalError(str(exc)) from None
    if len(types) != 1:
        raise MarshalError(f"variant signature {sig!r} is not a single complete type")
    return types[0]


class Reader:
    """Reads values from ``data[pos:end]``; offsets are relative to an 8-aligned start."""

    __slots__ = ("data", "pos", "end", "endian", "_u32")

    def __init__(self, data: bytes | bytearray | memoryview, endian: str,
                 pos: int = 0, end: int | None = None) -> None:
        if endian not in (LITTLE, BIG):
            raise MarshalError(f"unknown byte order {endian!r}")
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end
        self.endian = endian
        self._u32 = _STRUCTS[(endian, "u")]

    def align(self, n: int) -> None:
        pad = -self.pos % n
        if pad:
            if self.pos + pad > self.end:
                raise MarshalError("message truncated inside padding")
            if any(self.data[self.pos:self.pos + pad]):
                raise MarshalError("non-zero alignment padding")
            self.pos += pad

    def read(self, sig: str) -> list[Any]:
        return [self._value(code, 0) for code in split_signature(sig)]

    def _take(self, n: int) -> int:
        at = self.pos
        if at + n > self.end:
            raise MarshalError("message truncated")
        self.pos = at + n
        return at

    def _value(self, t: str, depth: int) -> Any:
        if depth > MAX_TOTAL_DEPTH:
            raise MarshalError("value nests deeper than the specification allows")
        code = t[0]
        if code in FIXED_TYPES:
            self.align(ALIGNMENT[code])
            st = _STRUCTS[(self.endian, code)]
            at = self._take(st.size)
            (value,) = st.unpack_from(self.data, at)
            if code == "b":
                if value > 1:
                    raise MarshalError(f"boolean with value {value}")
                return bool(value)
            return value
        if code in "so":
            self.align(4)
            (length,) = self._u32.unpack_from(self.data, self._take(4))
            return self._string(length, code)
        if code == "g":
            length = self.data[self._take(1)]
            return self._string(length, "g")
        if code == "v":
            length = self.data[self._take(1)]
            inner_sig = self._string(length, "g")
            return (inner_sig, self._value(_single(inner_sig), depth + 1))
        if code == "a":
            return self._array(t, depth)
        if code == "(":
            self.align(8)
            return tuple(self._value(m, depth + 1) for m in struct_members(t))
        raise MarshalError(f"cannot unmarshal type {t!r}")  # pragma: no cover

    def _string(self, length: int, code: str) -> str:
        at = self._take(length + 1)
        raw = bytes(self.data[at:at + length])
        if self.data[at + length] != 0:
            raise MarshalError("string is not NUL-terminated")
        if b"\0" in raw:
            raise MarshalError("string contains NUL")
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MarshalError(f"string is not valid UTF-8: {exc}") from None
        if code == "o" and not names.is_object_path(value):
            raise MarshalError(f"invalid object path {value!r}")
        if code == "g":
            try:
                split_signature(value)
            except SignatureError as exc:
                raise MarshalError(str(exc)) from None
        return value

    def _array(self, t: str, depth: int) -> Any:
        self.align(4)
        (length,) = self._u32.unpack_from(self.data, self._take(4))
        if length > MAX_ARRAY_SIZE:
            raise MarshalError(f"array of {length} bytes exceeds {MAX_ARRAY_SIZE}")
        elem = t[1:]
        self.align(ALIGNMENT[elem[0]])
        stop = self.pos + length
        if stop > self.end:
            raise MarshalError("array runs past the end of the message")
        if elem == "y":
            at = self._take(length)
            return bytes(self.data[at:stop])
        if elem[0] == "{":
            key_t, value_t = struct_members(elem)
            result: dict[Any, Any] = {}
            while self.pos < stop:
                self.align(8)
                key = self._value(key_t, depth + 2)
                result[key] = self._value(value_t, depth + 2)
            items: Any = result
        else:
            items = []
            while self.pos < stop:
                items.append(self._value(elem, depth + 1))
        if self.pos != stop:
            raise MarshalError("array elements do not fill the array length exactly")
        return items


_STRINGS_U32 = {endian: _STRUCTS[(endian, "u")] for endian in (LITTLE, BIG)}


def _marshal_strings(sig: str, values: tuple[Any, ...] | list[Any], u32: struct.Struct) -> bytes:
    """The bodies the bus sends most (s, sss: replies, NameOwnerChanged), with a
    :class:`Writer`'s checks and bytes, without its per-value dispatch."""
    if len(sig) != len(values):
        raise MarshalError(f"signature {sig!r} needs {len(sig)} values, got {len(values)}")
    parts: list[bytes] = []
    size = 0
    for value in values:
        if not isinstance(value, str):
            raise MarshalError(f"string expected for 's', got {value!r}")
        data = _encode(value)
        pad = -size % 4
        if pad:
            parts.append(bytes(pad))
        parts.append(u32.pack(len(data)))
        parts.append(data)
        parts.append(b"\0")
        size += pad + 5 + len(data)
    return b"".join(parts)


def check_simple_body(sig: str, data: bytes, endian: str, pos: int) -> bool:
    """Validate ``data[pos:]`` as a body of signature ``ay`` or ``s`` (the payloads of
    most calls, replies and signals) exactly as :func:`unmarshal` would, without
    building the value. Return False for any other signature: the caller unmarshals.
    Raises MarshalError with unmarshal's messages."""
    if pos % 4 or (sig != "ay" and sig != "s") or endian not in _STRINGS_U32:
        return False
    end = len(data)
    if pos + 4 > end:
        raise MarshalError("message truncated")
    (length,) = _STRINGS_U32[endian].unpack_from(data, pos)
    start = pos + 4
    if sig == "ay":
        if length > MAX_ARRAY_SIZE:
            raise MarshalError(f"array of {length} bytes exceeds {MAX_ARRAY_SIZE}")
        stop = start + length
        if stop > end:
            raise MarshalError("array runs past the end of the message")
    else:
        stop = start + length + 1
        if stop > end:
            raise MarshalError("message truncated")
        if data[stop - 1] != 0:
            raise MarshalError("string is not NUL-terminated")
        text = data[start:stop - 1]
        if b"\0" in text:
            raise MarshalError("string contains NUL")
        if not text.isascii():
            try:
                text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MarshalError(f"string is not valid UTF-8: {exc}") from None
    if stop != end:
        raise MarshalError("trailing bytes after the last value of the body")
    return True


def marshal(sig: str, values: tuple[Any, ...] | list[Any], endian: str = LITTLE) -> bytes:
    """Marshal ``values`` (one per complete type of ``sig``) as a message body."""
    if sig and not sig.strip("s") and endian in _STRINGS_U32:
        return _marshal_strings(sig, values, _STRINGS_U32[endian])
    writer = Writer(endian)
    writer.write_many(sig, values)
    return bytes(writer.buf)


def unmarshal(sig: str, data: bytes | bytearray | memoryview, endian: str = LITTLE,
              pos: int = 0, end: int | None = None) -> list[Any]:
    """Unmarshal a body; all of ``data[pos:end]`` must be consumed."""
    reader = Reader(data, endian, pos, end)
    values = reader.read(sig)
    if reader.pos != reader.end:
        raise MarshalError("trailing bytes after the last value of the body")
    return values
