"""D-Bus messages: the fixed header, header fields, building and re-addressing.

Owns: parsing and validating a complete frame's header (never the body),
building messages from values, and setting the sender field of a frame without
touching its body. A parsed message keeps its raw bytes so the bus can forward
it as it came. Never does I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from . import names
from .errors import FramingError, MarshalError, SignatureError
from .limits import FIXED_HEADER_SIZE, MAX_MESSAGE_SIZE, PROTOCOL_VERSION
from .marshal import BIG, LITTLE, Reader, marshal, unmarshal
from .signature import split_signature

TYPE_CHECKING = False  # typing's, without importing typing (see bootbus.plain)
if TYPE_CHECKING:
    from typing import Any

METHOD_CALL = 1
METHOD_RETURN = 2
ERROR = 3
SIGNAL = 4
TYPE_NAMES = {METHOD_CALL: "method_call", METHOD_RETURN: "method_return", ERROR: "error",
              SIGNAL: "signal"}

FLAG_NO_REPLY_EXPECTED = 0x1
FLAG_NO_AUTO_START = 0x2
FLAG_ALLOW_INTERACTIVE_AUTHORIZATION = 0x4

FIELD_PATH = 1
FIELD_INTERFACE = 2
FIELD_MEMBER = 3
FIELD_ERROR_NAME = 4
FIELD_REPLY_SERIAL = 5
FIELD_DESTINATION = 6
FIELD_SENDER = 7
FIELD_SIGNATURE = 8
FIELD_UNIX_FDS = 9
_FIELD_TYPES = {FIELD_PATH: b"o", FIELD_INTERFACE: b"s", FIELD_MEMBER: b"s",
                FIELD_ERROR_NAME: b"s", FIELD_REPLY_SERIAL: b"u", FIELD_DESTINATION: b"s",
                FIELD_SENDER: b"s", FIELD_SIGNATURE: b"g", FIELD_UNIX_FDS: b"u"}

# The string-valued header fields: how each is validated, its name in errors, where
# it goes on the Message (the signature field is validated as a signature).
_STRING_FIELDS: dict[int, tuple[Callable[[str], bool], str, str]] = {
    FIELD_PATH: (names.is_object_path, "object path", "path"),
    FIELD_INTERFACE: (names.is_interface_name, "interface name", "interface"),
    FIELD_MEMBER: (names.is_member_name, "member name", "member"),
    FIELD_ERROR_NAME: (names.is_error_name, "error name", "error_name"),
    FIELD_DESTINATION: (names.is_bus_name, "destination", "destination"),
    FIELD_SENDER: (names.is_bus_name, "sender", "sender"),
}

_ENDIANS = {ord("l"): LITTLE, ord("B"): BIG}
# Validated header fields by their exact bytes (length word included): calls and
# signals from one peer repeat the same fields, so most headers skip parsing.
FIELD_CACHE_SIZE = 1024
_FIELD_CACHE: dict[str, dict[bytes, tuple[Any, ...]]] = {LITTLE: {}, BIG: {}}
# Replies from one peer differ only in their reply serial's four bytes: they are cached
# apart, by their fields with those bytes zeroed, found by trying the offsets at which
# recent replies carried it. A hit is a header identical to a validated one except for
# a u32 field's value, so the only check left is the one on that value (not zero).
MAX_REPLY_SERIAL_OFFSETS = 4
_REPLY_CACHE: dict[str, dict[bytes, tuple[Any, ...]]] = {LITTLE: {}, BIG: {}}
_REPLY_SERIAL_AT: dict[str, list[int]] = {LITTLE: [], BIG: []}  # offsets into the cache key
_ZERO_U32 = bytes(4)
_FIXED = {LITTLE: struct.Struct("<4xIII"), BIG: struct.Struct(">4xIII")}
_U32 = {LITTLE: struct.Struct("<I"), BIG: struct.Struct(">I")}


class Message:
    """A message as the bus sees it: routing fields parsed, body left as bytes."""

    __slots__ = ("raw", "endian", "type", "flags", "serial", "path", "interface", "member",
                 "error_name", "reply_serial", "destination", "sender", "signature",
                 "unix_fds", "body_offset", "fields_end", "sender_span", "fds", "fwd", "_args")

    def __init__(self, raw: bytes, endian: str, mtype: int, flags: int, serial: int) -> None:
        self.raw = raw
        self.endian = endian
        self.type = mtype
        self.flags = flags
        self.serial = serial
        self.path: str | None = None
        self.interface: str | None = None
        self.member: str | None = None
        self.error_name: str | None = None
        self.reply_serial = 0
        self.destination: str | None = None
        self.sender: str | None = None
        self.signature = ""
        self.unix_fds = 0
        self.body_offset = 0
        self.fields_end = 0
        self.sender_span: tuple[int, int] | None = None
        self.fds: list[int] = []
        self.fwd: tuple[bytes, bytes | memoryview] | None = None  # forwarded form, cached
        self._args: list[Any] | None = None

    @property
    def body(self) -> bytes:
        return self.raw[self.body_offset:]

    def args(self) -> list[Any]:
        """Unmarshal the body (only for messages the bus itself must read); cached."""
        if self._args is None:
            self._args = unmarshal(self.signature, self.raw, self.endian, self.body_offset)
        return self._args

    def __repr__(self) -> str:
        return (f"<Message {TYPE_NAMES.get(self.type, self.type)} serial={self.serial} "
                f"path={self.path} iface={self.interface} member={self.member} "
                f"dest={self.destination} sender={self.sender}>")


def frame_size(head: bytes | bytearray | memoryview, pos: int = 0) -> int:
    """The total size of the frame whose first 16 bytes are ``head[pos:pos + 16]``."""
    endian = _ENDIANS.get(head[pos])
    if endian is None:
        raise FramingError(f"invalid byte order mark {head[pos]!r}")
    body_len, _serial, fields_len = _FIXED[endian].unpack_from(head, pos)
    if body_len > MAX_MESSAGE_SIZE or fields_len > MAX_MESSAGE_SIZE:
        raise FramingError("message length exceeds the 128 MiB maximum")
    total: int = FIXED_HEADER_SIZE + fields_len + (-fields_len % 8) + body_len
    if total > MAX_MESSAGE_SIZE:
        raise FramingError(f"message of {total} bytes exceeds the 128 MiB maximum")
    return total


def parse(raw: bytes) -> Message:
    """Parse and validate the header of one complete frame."""
    endian = _ENDIANS.get(raw[0])
    if endian is None:
        raise FramingError(f"invalid byte order mark {raw[0]!r}")
    mtype, flags, version = raw[1], raw[2], raw[3]
    if version != PROTOCOL_VERSION:
        raise FramingError(f"unsupported protocol version {version}")
    body_len, serial, fields_len = _FIXED[endian].unpack_from(raw, 0)
    if serial == 0:
        raise FramingError("message serial is zero")
    fields_end = FIXED_HEADER_SIZE + fields_len
    body_offset = fields_end + (-fields_len % 8)
    if body_offset + body_len != len(raw):
        raise FramingError("frame length does not match its header")
    if any(raw[fields_end:body_offset]):
        raise FramingError("non-zero padding after the header")
    msg = Message(raw, endian, mtype, flags, serial)
    msg.body_offset = body_offset
    msg.fields_end = fields_end
    cache = _FIELD_CACHE[endian]
    key = raw[FIXED_HEADER_SIZE - 4:fields_end]
    cached = cache.get(key)
    if cached is not None:
        (msg.path, msg.interface, msg.member, msg.error_name, msg.destination, msg.sender,
         msg.signature, msg.unix_fds, msg.sender_span) = cached
    elif not (mtype in _REPLY_TYPES and _cached_reply(msg, key, endian)):
        try:
            serial_at = _parse_fields(msg, raw, fields_end, _U32[endian])
        except (MarshalError, SignatureError, IndexError, struct.error) as exc:
            raise FramingError(f"invalid header field: {exc}") from None
        entry = (msg.path, msg.interface, msg.member, msg.error_name, msg.destination,
                 msg.sender, msg.signature, msg.unix_fds, msg.sender_span)
        if not serial_at:
            if len(cache) >= FIELD_CACHE_SIZE:
                cache.clear()
            cache[key] = entry
        else:
            _remember_reply(key, serial_at - (FIXED_HEADER_SIZE - 4), endian, entry)
    _check_required(msg, body_len)
    return msg


_REPLY_TYPES = (METHOD_RETURN, ERROR)


def _cached_reply(msg: Message, key: bytes, endian: str) -> bool:
    """Fill ``msg`` from the reply cache, if a header like ``key`` was validated."""
    replies = _REPLY_CACHE[endian]
    for at in _REPLY_SERIAL_AT[endian]:
        cached = replies.get(key[:at] + _ZERO_U32 + key[at + 4:])
        if cached is not None and cached[9] == at:
            (value,) = _U32[endian].unpack_from(key, at)
            if value == 0:
                raise FramingError("reply serial is zero")
            msg.reply_serial = value
            (msg.path, msg.interface, msg.member, msg.error_name, msg.destination, msg.sender,
             msg.signature, msg.unix_fds, msg.sender_span) = cached[:9]
            return True
    return False


def _remember_reply(key: bytes, at: int, endian: str, entry: tuple[Any, ...]) -> None:
    replies = _REPLY_CACHE[endian]
    if len(replies) >= FIELD_CACHE_SIZE:
        replies.clear()
    replies[key[:at] + _ZERO_U32 + key[at + 4:]] = (*entry, at)
    offsets = _REPLY_SERIAL_AT[endian]
    if at not in offsets:
        offsets.insert(0, at)
        del offsets[MAX_REPLY_SERIAL_OFFSETS:]


def _parse_fields(msg: Message, raw: bytes, end: int, u32: struct.Struct) -> int:
    """Parse and validate the header fields; return the offset of the reply serial's
    value in ``raw`` (0 without one)."""
    pos = FIXED_HEADER_SIZE
    seen = 0
    serial_at = 0
    while pos < end:
        pad = -pos % 8
        if pad:
            if any(raw[pos:pos + pad]):
                raise FramingError("non-zero padding between header fields")
            pos += pad
        start = pos
        code = raw[pos]
        siglen = raw[pos + 1]
        sig = raw[pos + 2:pos + 2 + siglen]
        if raw[pos + 2 + siglen] != 0:
            raise FramingError("header field signature is not NUL-terminated")
        pos += 3 + siglen
        expected = _FIELD_TYPES.get(code)
        if expected is None:
            if code == 0:
                raise FramingError("header field code 0 is invalid")
            # Unknown fields are validated as a variant, then ignored (the spec says so).
            reader = Reader(raw, msg.endian, pos, end)
            reader.read(_single_type(sig))
            pos = reader.pos
            continue
        if sig != expected:
            raise FramingError(f"header field {code} has type {sig!r}, not {expected!r}")
        bit = 1 << code
        if seen & bit:
            raise FramingError(f"header field {code} appears twice")
        seen |= bit
        if expected == b"u":
            pos += -pos % 4
            if pos + 4 > end:
                raise FramingError("header field runs past the header")
            (value,) = u32.unpack_from(raw, pos)
            pos += 4
            if code == FIELD_REPLY_SERIAL:
                if value == 0:
                    raise FramingError("reply serial is zero")
                msg.reply_serial = value
                serial_at = pos - 4
            else:
                msg.unix_fds = value
            continue
        if expected == b"g":
            length = raw[pos]
            pos += 1
        else:
            pos += -pos % 4
            (length,) = u32.unpack_from(raw, pos)
            pos += 4
        if pos + length >= end + 1 or raw[pos + length] != 0:
            raise FramingError("header string is not NUL-terminated inside the header")
        try:
            text = raw[pos:pos + length].decode("utf-8")
        except UnicodeDecodeError:
            raise FramingError("header string is not valid UTF-8") from None
        pos += length + 1
        if code == FIELD_SIGNATURE:
            split_signature(text)
            msg.signature = text
            continue
        valid, what, attribute = _STRING_FIELDS[code]
        if not valid(text):
            raise FramingError(f"invalid {what} {text!r}")
        setattr(msg, attribute, text)
        if code == FIELD_SENDER:
            msg.sender_span = (start, pos)
    if pos != end:
        raise FramingError("header fields do not fill the header exactly")
    return serial_at


def _single_type(sig: bytes) -> str:
    try:
        text = sig.decode("ascii")
        if len(split_signature(text)) == 1:
            return text
    except (SignatureError, UnicodeDecodeError):
        pass
    raise FramingError(f"invalid header field signature {sig!r}")


def _check_required(msg: Message, body_len: int) -> None:
    mtype = msg.type
    if mtype == METHOD_CALL:
        if msg.path is None or msg.member is None:
            raise FramingError("method call without path or member")
    elif mtype == SIGNAL:
        if msg.path is None or msg.interface is None or msg.member is None:
            raise FramingError("signal without path, interface or member")
    elif mtype == ERROR:
        if msg.error_name is None or not msg.reply_serial:
            raise FramingError("error without error name or reply serial")
    elif mtype == METHOD_RETURN:
        if not msg.reply_serial:
            raise FramingError("method return without reply serial")
    else:
        raise FramingError(f"unknown message type {mtype}")
    if msg.interface == "org.freedesktop.DBus.Local":
        raise FramingError("the org.freedesktop.DBus.Local interface is reserved")
    if msg.path == "/org/freedesktop/DBus/Local":
        raise FramingError("the /org/freedesktop/DBus/Local path is reserved")
    if body_len and not msg.signature:
        raise FramingError("message has a body but no signature")


def _string_field(code: int, sig: int, text: str, u32: struct.Struct) -> bytes:
    """One 8-aligned header field of type s or o (the checks are marshal's)."""
    if "\0" in text:
        raise MarshalError("strings must not contain NUL")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MarshalError(f"string is not valid UTF-8: {exc}") from None
    return bytes((code, 1, sig, 0)) + u32.pack(len(data)) + data + b"\0"


def _u32_field(code: int, value: int, u32: struct.Struct) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
        raise MarshalError(f"{value!r} does not fit type 'u'")
    return bytes((code, 1, ord("u"), 0)) + u32.pack(value)


def build(mtype: int, serial: int, *, path: str | None = None, interface: str | None = None,
          member: str | None = None, error_name: str | None = None, reply_serial: int = 0,
          destination: str | None = None, sender: str | None = None, signature: str = "",
          body: bytes | None = None, args: tuple[Any, ...] | list[Any] = (),
          unix_fds: int = 0, flags: int = 0, endian: str = LITTLE) -> bytes:
    """Build a complete frame; ``body`` (already marshalled) or ``args`` give the body.

    The header fields are encoded directly (each starts 8-aligned, so its value's
    alignment is fixed), with the same checks a :class:`Writer` makes: this runs
    for every reply and signal the bus sends, Hello's three included.
    """
    if body is None:
        body = marshal(signature, args, endian) if signature else b""
    u32 = _U32.get(endian)
    if u32 is None:
        raise MarshalError(f"unknown byte order {endian!r}")
    fields: list[bytes] = []
    if path is not None:
        if not isinstance(path, str):
            raise MarshalError(f"string expected for 'o', got {path!r}")
        names.check_object_path(path)
        fields.append(_string_field(FIELD_PATH, ord("o"), path, u32))
    for code, text in ((FIELD_INTERFACE, interface), (FIELD_MEMBER, member),
                       (FIELD_ERROR_NAME, error_name)):
        if text is not None:
            if not isinstance(text, str):
                raise MarshalError(f"string expected for 's', got {text!r}")
            fields.append(_string_field(code, ord("s"), text, u32))
    if reply_serial:
        fields.append(_u32_field(FIELD_REPLY_SERIAL, reply_serial, u32))
    for code, text in ((FIELD_DESTINATION, destination), (FIELD_SENDER, sender)):
        if text is not None:
            if not isinstance(text, str):
                raise MarshalError(f"string expected for 's', got {text!r}")
            fields.append(_string_field(code, ord("s"), text, u32))
    if signature:
        if not isinstance(signature, str):
            raise MarshalError(f"signature expected, got {signature!r}")
        try:
            split_signature(signature)
            data = signature.encode("ascii")
        except (SignatureError, UnicodeEncodeError) as exc:
            raise MarshalError(str(exc)) from None
        fields.append(bytes((FIELD_SIGNATURE, 1, ord("g"), 0, len(data))) + data + b"\0")
    if unix_fds:
        fields.append(_u32_field(FIELD_UNIX_FDS, unix_fds, u32))
    padded = [f + bytes(-len(f) % 8) for f in fields]
    if padded:
        padded[-1] = fields[-1]  # the header's own padding follows the length
    header_fields = b"".join(padded)
    head = (b"l" if endian == LITTLE else b"B") + bytes((mtype, flags, PROTOCOL_VERSION))
    try:
        fixed = u32.pack(len(body)) + u32.pack(serial) + u32.pack(len(header_fields))
    except struct.error as exc:
        raise MarshalError(f"cannot marshal the fixed header: {exc}") from None
    return b"".join((head, fixed, header_fields, bytes(-len(header_fields) % 8), body))


def sender_field(sender: str, endian: str) -> bytes:
    """The encoded SENDER header field, starting 8-aligned (cache it per peer)."""
    data = sender.encode()
    return bytes((FIELD_SENDER, 1, ord("s"), 0)) + _U32[endian].pack(len(data)) + data + b"\0"


def with_sender(msg: Message, field: bytes) -> tuple[bytes, bytes | memoryview]:
    """Return (new header, body) of ``msg`` with its sender field set to ``field``.

    The body is a view into the original frame; sending both with one gathered
    write forwards the message without copying the body.
    """
    raw = msg.raw
    end = msg.fields_end
    head_fields = raw[FIXED_HEADER_SIZE:end]
    if msg.sender_span is not None:
        start, stop = msg.sender_span
        stop += -stop % 8 if stop < end else 0
        head_fields = raw[FIXED_HEADER_SIZE:start] + raw[min(stop, end):end]
    pad = -(FIXED_HEADER_SIZE + len(head_fields)) % 8
    fields_len = len(head_fields) + pad + len(field)
    header = b"".join((raw[:12], _U32[msg.endian].pack(fields_len), head_fields, bytes(pad),
                       field, bytes(-fields_len % 8)))
    return header, memoryview(raw)[msg.body_offset:]
