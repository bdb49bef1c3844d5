"""A deliberately tiny D-Bus client on raw sockets, for playing hostile peers.

This module owns the byte-level pieces the hostile-peer tests need: the SASL
EXTERNAL exchange, a builder for messages whose every header byte can be
falsified (endianness, body length, serial, fields), and a reader that parses
the replies the bus sends back (header fields and simple bodies).

It must never import bootbus (the tests would then check bootbus against
itself) nor jeepney or libdbus (which refuse to send malformed messages). It
covers only the basic types the tests use: y b u i s o g h and arrays of s.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, Self

# Message types and flags from the specification's "Message Format" section.
METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL = 1, 2, 3, 4
NO_REPLY_EXPECTED = 0x1
PROTOCOL_VERSION = 1
# Header field codes.
PATH, INTERFACE, MEMBER, ERROR_NAME, REPLY_SERIAL = 1, 2, 3, 4, 5
DESTINATION, SENDER, SIGNATURE, UNIX_FDS = 6, 7, 8, 9
FIELD_SIGNATURES = {
    PATH: "o", INTERFACE: "s", MEMBER: "s", ERROR_NAME: "s", REPLY_SERIAL: "u",
    DESTINATION: "s", SENDER: "s", SIGNATURE: "g", UNIX_FDS: "u",
}
FIXED_HEADER_LEN = 16
# The largest SASL reply line we accept back from a bus.
MAX_SASL_LINE = 16384
# The largest message this reader accepts back from a bus (the spec's maximum).
MAX_MESSAGE_LEN = 128 * 1024 * 1024

DRIVER = "org.freedesktop.DBus"
DRIVER_PATH = "/org/freedesktop/DBus"

_FORMATS = {"y": "B", "b": "I", "u": "I", "i": "i", "h": "I"}


class Writer:
    """Marshals basic values into a growing buffer, aligned from offset 0."""

    def __init__(self, endian: str = "<") -> None:
        self.endian = endian
        self.buf = bytearray()

    def align(self, n: int) -> None:
        self.buf += b"\0" * (-len(self.buf) % n)

    def fixed(self, code: str, value: int) -> None:
        fmt = _FORMATS[code]
        self.align(struct.calcsize(fmt))
        self.buf += struct.pack(self.endian + fmt, value)

    def string(self, value: str) -> None:
        raw = value.encode()
        self.fixed("u", len(raw))
        self.buf += raw + b"\0"

    def signature(self, value: str) -> None:
        raw = value.encode()
        self.buf += bytes([len(raw)]) + raw + b"\0"

    def value(self, code: str, value: Any) -> None:
        if code in ("s", "o"):
            self.string(value)
        elif code == "g":
            self.signature(value)
        elif code == "as":
            self.fixed("u", 0)
            start = len(self.buf)
            for item in value:
                self.string(item)
            struct.pack_into(self.endian + "I", self.buf, start - 4, len(self.buf) - start)
        else:
            self.fixed(code, value)


def split_signature(signature: str) -> list[str]:
    """Split a signature of basic types and 'as' into single complete types."""
    out: list[str] = []
    i = 0
    while i < len(signature):
        step = 2 if signature[i] == "a" else 1
        out.append(signature[i:i + step])
        i += step
    return out


def marshal_body(signature: str, args: tuple[Any, ...], endian: str = "<") -> bytes:
    w = Writer(endian)
    for code, arg in zip(split_signature(signature), args, strict=True):
        w.value(code, arg)
    return bytes(w.buf)


@dataclass
class Typed:
    """A header field value with an explicit signature (for codes the table lacks)."""

    signature: str
    value: Any


def build_message(
    msg_type: int,
    serial: int,
    fields: dict[int, Any],
    body: bytes = b"",
    *,
    flags: int = 0,
    endian_byte: bytes = b"l",
    body_length: int | None = None,
    version: int = PROTOCOL_VERSION,
) -> bytes:
    """Build one message; body_length and endian_byte may lie on purpose."""
    endian = ">" if endian_byte == b"B" else "<"
    w = Writer(endian)
    w.buf += endian_byte + bytes([msg_type, flags, version])
    w.fixed("u", len(body) if body_length is None else body_length)
    w.fixed("u", serial)
    w.fixed("u", 0)
    start = len(w.buf)
    for code, value in fields.items():
        sig, value = (value.signature, value.value) if isinstance(value, Typed) else (
            FIELD_SIGNATURES[code], value)
        w.align(8)
        w.fixed("y", code)
        w.signature(sig)
        w.value(sig, value)
    struct.pack_into(endian + "I", w.buf, 12, len(w.buf) - start)
    w.align(8)
    return bytes(w.buf) + body


def method_call(
    serial: int,
    member: str,
    signature: str = "",
    args: tuple[Any, ...] = (),
    *,
    destination: str | None = DRIVER,
    path: str = DRIVER_PATH,
    interface: str | None = DRIVER,
    flags: int = 0,
) -> bytes:
    fields: dict[int, Any] = {PATH: path, MEMBER: member}
    if interface is not None:
        fields[INTERFACE] = interface
    if destination is not None:
        fields[DESTINATION] = destination
    if signature:
        fields[SIGNATURE] = signature
    return build_message(METHOD_CALL, serial, fields, marshal_body(signature, args), flags=flags)


@dataclass
class RawMessage:
    msg_type: int
    flags: int
    serial: int
    fields: dict[int, Any]
    body: bytes
    endian: str

    @property
    def error_name(self) -> str | None:
        name = self.fields.get(ERROR_NAME)
        return None if name is None else str(name)

    def args(self) -> list[Any]:
        """Unmarshal a body of basic types and 'as'."""
        codes = split_signature(self.fields.get(SIGNATURE, ""))
        return _Reader(self.body, self.endian).values(codes)


class _Reader:
    def __init__(self, data: bytes, endian: str, pos: int = 0) -> None:
        self.data, self.endian, self.pos = data, endian, pos

    def align(self, n: int) -> None:
        self.pos += -self.pos % n

    def fixed(self, code: str) -> int:
        fmt = self.endian + _FORMATS[code]
        self.align(struct.calcsize(fmt))
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(value)

    def string(self) -> str:
        n = self.fixed("u")
        raw = self.data[self.pos:self.pos + n]
        self.pos += n + 1
        return raw.decode()

    def signature(self) -> str:
        n = self.data[self.pos]
        raw = self.data[self.pos + 1:self.pos + 1 + n]
        self.pos += n + 2
        return raw.decode()

    def value(self, code: str) -> Any:
        if code in ("s", "o"):
            return self.string()
        if code == "g":
            return self.signature()
        if code == "as":
            end = self.fixed("u")
            end += self.pos
            items = []
            while self.pos < end:
                items.append(self.string())
            return items
        return self.fixed(code)

    def values(self, codes: list[str]) -> list[Any]:
        return [self.value(c) for c in codes]


def parse_message(data: bytes) -> RawMessage:
    endian = {ord("l"): "<", ord("B"): ">"}[data[0]]
    r = _Reader(data, endian, 4)
    body_len = r.fixed("u")
    serial = r.fixed("u")
    fields_len = r.fixed("u")
    end = r.pos + fields_len
    fields: dict[int, Any] = {}
    while r.pos < end:
        r.align(8)
        code = r.fixed("y")
        sig = r.signature()
        fields[code] = r.value(sig)
    r.align(8)
    body = data[r.pos:r.pos + body_len]
    return RawMessage(data[1], data[2], serial, fields, body, endian)


def message_length(fixed_header: bytes) -> int:
    """Total length of a message given its first 16 bytes."""
    endian = {ord("l"): "<", ord("B"): ">"}[fixed_header[0]]
    body_len, _serial, fields_len = struct.unpack(endian + "III", fixed_header[4:16])
    header_len = FIXED_HEADER_LEN + int(fields_len)
    return header_len + (-header_len % 8) + int(body_len)


class RawPeer:
    """A socket speaking just enough D-Bus to misbehave precisely."""

    def __init__(self, socket_path: str, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(socket_path)
        self._rbuf = b""
        self._serial = 0
        self.unique_name: str | None = None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv_exact(self, n: int) -> bytes:
        while len(self._rbuf) < n:
            chunk = self.sock.recv(max(65536, n - len(self._rbuf)))
            if not chunk:
                raise ConnectionResetError(f"bus closed the connection ({self._rbuf!r} pending)")
            self._rbuf += chunk
        out, self._rbuf = self._rbuf[:n], self._rbuf[n:]
        return out

    def sasl_line(self) -> str:
        while b"\r\n" not in self._rbuf:
            if len(self._rbuf) > MAX_SASL_LINE:
                raise ValueError(f"overlong SASL line {self._rbuf[:80]!r}")
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionResetError(f"bus closed during auth ({self._rbuf!r})")
            self._rbuf += chunk
        line, _, self._rbuf = self._rbuf.partition(b"\r\n")
        return line.decode("ascii")

    def auth_external(self, uid: int | None = None) -> str:
        """Send the NUL byte and AUTH EXTERNAL for uid (default: ours); return the reply."""
        claimed = os.getuid() if uid is None else uid
        self.send(b"\0AUTH EXTERNAL " + str(claimed).encode().hex().encode() + b"\r\n")
        return self.sasl_line()

    def authenticate(self) -> None:
        reply = self.auth_external()
        if not reply.startswith("OK "):
            raise AssertionError(f"EXTERNAL for our own uid was refused: {reply!r}")
        self.send(b"BEGIN\r\n")

    def read_message(self) -> RawMessage:
        fixed = self._recv_exact(FIXED_HEADER_LEN)
        total = message_length(fixed)
        if total > MAX_MESSAGE_LEN:
            raise ValueError(f"bus sent a {total}-byte message")
        return parse_message(fixed + self._recv_exact(total - FIXED_HEADER_LEN))

    def read_reply(self, serial: int) -> RawMessage:
        """Read until the reply to serial, skipping signals on the way."""
        while True:
            msg = self.read_message()
            if msg.msg_type in (METHOD_RETURN, ERROR) and msg.fields.get(REPLY_SERIAL) == serial:
                return msg

    def call(self, member: str, signature: str = "", args: tuple[Any, ...] = (),
             **kw: Any) -> RawMessage:
        """Send a method call and return its reply."""
        serial = self.next_serial()
        self.send(method_call(serial, member, signature, args, **kw))
        return self.read_reply(serial)

    def hello(self) -> str:
        reply = self.call("Hello")
        if reply.msg_type != METHOD_RETURN:
            raise AssertionError(f"Hello failed: {reply.error_name}")
        self.unique_name = str(reply.args()[0])
        return self.unique_name

    def wait_closed(self, timeout: float = 5.0) -> bytes:
        """Read until the bus closes the connection; return what it sent meanwhile.

        Raises TimeoutError if the bus keeps the connection open past timeout.
        """
        deadline = time.monotonic() + timeout
        received = self._rbuf
        self._rbuf = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"bus kept the connection open; it sent {received[:200]!r}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return received
            except TimeoutError:
                continue
            if not chunk:
                return received
            received += chunk
