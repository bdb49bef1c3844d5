"""A tiny, independent frame writer for tests: header fields and frames by the spec's rules.

It shares no code with bootbus.wire.message so that a test built with it checks
bootbus against the specification, not against itself. Fields are appended in
the order given (real clients differ: libdbus puts DESTINATION second).
"""

import struct

from .hexbytes import hx

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


LIBDBUS_HELLO = hx("""
6c 01 00 01               # 'l', METHOD_CALL, no flags, version 1
00000000                  # body length 0
01000000                  # serial 1
6e000000                  # header fields array: 110 bytes
01 01 6f 00  15000000     # PATH, signature "o", 21 bytes
2f6f72672f667265656465736b746f702f44427573 00   # "/org/freedesktop/DBus"
0000                      # pad to 8
06 01 73 00  14000000     # DESTINATION, "s", 20 bytes
6f72672e667265656465736b746f702e44427573 00     # "org.freedesktop.DBus"
000000
02 01 73 00  14000000     # INTERFACE
6f72672e667265656465736b746f702e44427573 00
000000
03 01 73 00  05000000     # MEMBER
48656c6c6f 00             # "Hello"
0000                      # pad the header to 8 (not counted in the 110)
""")

# What dbus-daemon sends a new peer after Hello, big-endian this time.
BIG_ENDIAN_NAME_ACQUIRED = hx("""
42 04 01 01               # 'B', SIGNAL, NO_REPLY_EXPECTED, version 1
00000009                  # body length 9
00000002                  # serial 2
0000008f                  # header fields: 143 bytes
01 01 6f 00  00000015  2f6f72672f667265656465736b746f702f44427573 00  0000
02 01 73 00  00000014  6f72672e667265656465736b746f702e44427573 00  000000
03 01 73 00  0000000c  4e616d6541637175697265 64 00  000000     # "NameAcquired"
06 01 73 00  00000004  3a312e35 00  000000                       # ":1.5"
07 01 73 00  00000014  6f72672e667265656465736b746f702e44427573 00  000000
08 01 67 00  01 73 00     # SIGNATURE "s"
00                        # pad the header to 8
00000004  3a312e35 00     # body: STRING ":1.5"
""")
