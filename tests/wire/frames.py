"""A tiny, independent frame writer for tests: header fields and frames by the spec's rules.

It shares no code with bootbus.wire.message so that a test built with it checks
bootbus against the specification, not against itself. Fields are appended in
the order given (real clients differ: libdbus puts DESTINATION second).
"""

import struct

PATH, INTERFACE, MEMBER, ERROR_NAME, REPLY_SERIAL, DESTINATION, SENDER, SIGNATURE, UNIX_FDS = (
    range(1, 10))


def _u32(value: int, endian: str) -> bytes:
    return struct.pack("<I" if endian == "l" else ">I", value)


def str_field(code: int, text: str | bytes, endian: str = "l", sig: bytes = b"s") -> bytes:
    """A header field holding a STRING or OBJECT_PATH (unpadded at its end)."""
    data = text.encode() if isinstance(text, str) else text
    return bytes((code, 1)) + sig + b"\0" + _u32(len(data), endian) + data + b"\0"


def sig_field(text: str | bytes, code: int = SIGNATURE) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return bytes((code, 1)) + b"g\0" + bytes((len(data),)) + data + b"\0"


def u32_field(code: int, value: int, endian: str = "l") -> bytes:
    return bytes((code, 1)) + b"u\0" + _u32(value, endian)


def join_fields(*fields: bytes) -> bytes:
    """Concatenate fields, each starting 8-aligned (offsets relative to byte 16)."""
    out = b""
    for item in fields:
        out += bytes(-len(out) % 8) + item
    return out


def frame(fields: bytes, body: bytes = b"", mtype: int = 1, flags: int = 0, serial: int = 1,
          endian: str = "l", version: int = 1, body_len: int | None = None,
          fields_len: int | None = None) -> bytes:
    """Fixed header + fields + padding to 8 + body; lengths may be overridden to lie."""
    head = (endian.encode() + bytes((mtype, flags, version))
            + _u32(len(body) if body_len is None else body_len, endian)
            + _u32(serial, endian)
            + _u32(len(fields) if fields_len is None else fields_len, endian))
    return head + fields + bytes(-len(fields) % 8) + body


def call_fields(endian: str = "l", path: str = "/a", member: str = "M",
                destination: str = "a.b") -> bytes:
    return join_fields(str_field(PATH, path, endian, b"o"), str_field(MEMBER, member, endian),
                       str_field(DESTINATION, destination, endian))
