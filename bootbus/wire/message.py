"""D-Bus messages: the fixed header, header fields, building and re-addressing.

Owns: parsing and validating a complete frame's header (never the body),
building messages from values, and setting the sender field of a frame without
touching its body. A parsed message keeps its raw bytes so the bus can forward
it as it came. Never does I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

from . import names
from .errors import FramingError, MarshalError, SignatureError
from .limits import FIXED_HEADER_SIZE, MAX_MESSAGE_SIZE, PROTOCOL_VERSION
from .marshal import BIG, LITTLE, Reader, check_simple_body, marshal, unmarshal
from .signature import split_signature

TYPE_CHECKING = False  # typing's, without importing typing (see bootbus.plain)
if TYPE_CHECKING:
    from typing import Any

INVALID = 0
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
# Validated headers by their exact bytes (from the fields' length word to the end of
# their padding), one cache per byte order and message type: calls and signals from
# one peer repeat the same fields, so most headers skip parsing. An entry holds the
# fields in Message order (see _FIELD_ATTRIBUTES); a hit needs no check but the one
# of the body against the signature.
FIELD_CACHE_SIZE = 1024
_FIELD_ATTRIBUTES = ("path", "interface", "member", "error_name", "destination", "sender",
                     "signature", "unix_fds", "sender_span")
if TYPE_CHECKING:  # Any exists for the type checker only (no typing at run time)
    _Fields = tuple[Any, ...]
_NO_FIELDS: _Fields = (None, None, None, None, None, None, "", 0, None)
# Replies from one peer differ only in their reply serial's four bytes: they are cached
# apart, by what follows those bytes, found by trying the offsets at which recent
# replies carried them; a hit must match what precedes them too. A hit is a header
# identical to a validated one except for a u32 field's value, so the only check left
# is the one on that value (not zero).
MAX_REPLY_SERIAL_OFFSETS = 4
_PADDING = tuple(bytes(size) for size in range(8))  # zero bytes up to the next multiple of 8
# Forwarded bodies up to this size are copied next to their new header: sending one
# buffer costs less than gathering two until the copy itself costs more.
COPY_BODY_MAX = 4096
_FIXED = {LITTLE: struct.Struct("<4xIII"), BIG: struct.Struct(">4xIII")}
_U32 = {LITTLE: struct.Struct("<I"), BIG: struct.Struct(">I")}
# the byte order mark and type as one number (the flags skipped), the version, the
# body's length and the serial: the part of a fixed header a Repeat reads
_REPEAT_FIXED = {LITTLE: struct.Struct("<HxBII"), BIG: struct.Struct(">HxBII")}


class _HeaderCache:
    """The validated headers of one byte order and message type."""

    __slots__ = ("endian", "mtype", "fixed", "fields", "replies", "serial_at")

    def __init__(self, endian: str, mtype: int) -> None:
        self.endian = endian
        self.mtype = mtype
        self.fixed = _FIXED[endian]
        self.fields: dict[bytes, _Fields] = {}
        # a reply's key after its serial -> (the key before it, its offset, fields)
        self.replies: dict[bytes, tuple[bytes, int, _Fields]] = {}
        self.serial_at: list[int] = []  # offsets into the key, most recent first


_TYPES = (METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL)
# by the frame's first two bytes (byte order mark << 8 | message type); a miss is an
# invalid byte order or a type the spec does not define (see _unknown_type)
_CACHES = {(mark << 8) | mtype: _HeaderCache(endian, mtype)
           for mark, endian in ((ord("l"), LITTLE), (ord("B"), BIG)) for mtype in _TYPES}


def _unknown_type(mark: int, mtype: int) -> _HeaderCache:
    """The header cache for a message type this bus does not know. The spec: such
    messages must be well-formed like the known ones, and are ignored (the router
    drops them); type 0 is invalid."""
    endian = _ENDIANS.get(mark)
    if endian is None:
        raise FramingError(f"invalid byte order mark {mark!r}")
    if mtype == INVALID:
        raise FramingError("message type 0 is invalid")
    cache = _CACHES[(mark << 8) | mtype] = _HeaderCache(endian, mtype)  # at most 2 x 251
    return cache


class Message:
    """A message as the bus sees it: routing fields parsed, body left as bytes."""

    __slots__ = ("raw", "endian", "type", "flags", "serial", "path", "interface", "member",
                 "error_name", "reply_serial", "destination", "sender", "signature",
                 "unix_fds", "body_offset", "fields_end", "sender_span", "serial_at", "fields",
                 "fds", "fwd", "_args")

    def __init__(self, raw: bytes, endian: str, mtype: int, flags: int, serial: int,
                 fields: _Fields = _NO_FIELDS, body_offset: int = 0, fields_end: int = 0,
                 reply_serial: int = 0, serial_at: int = 0) -> None:
        self.raw = raw
        self.endian = endian
        self.type = mtype
        self.flags = flags
        self.serial = serial
        self.path: str | None
        self.interface: str | None
        self.member: str | None
        self.error_name: str | None
        self.destination: str | None
        self.sender: str | None
        self.signature: str
        self.unix_fds: int
        self.sender_span: tuple[int, int] | None
        (self.path, self.interface, self.member, self.error_name, self.destination,
         self.sender, self.signature, self.unix_fds, self.sender_span) = fields
        # the header cache's entry it was made from: the same object for every message
        # of one header (but for the numbers a Repeat allows to differ) while cached
        self.fields = fields
        self.reply_serial = reply_serial
        self.serial_at = serial_at  # where the reply serial's value is in raw (0: none)
        self.body_offset = body_offset
        self.fields_end = fields_end
        self.fds: Sequence[int] = ()  # (a shared empty tuple: most messages carry none)
        # the buffers that forward it and their size, once made (router.py)
        self.fwd: tuple[list[bytes | memoryview], int] | None = None
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
    msg = next_frame(raw, 0) if len(raw) >= FIXED_HEADER_SIZE else None
    if msg is None or len(msg.raw) != len(raw):
        raise FramingError("frame length does not match its header")
    return msg


def next_frame(view: bytes | bytearray, pos: int,
               max_size: int = MAX_MESSAGE_SIZE) -> Message | None:
    """The message whose frame starts at ``view[pos]``, header validated, or None while
    the frame is incomplete. At least its first 16 bytes must be there: they are
    checked at once, so a frame over ``max_size`` (a configured bound, at most the
    protocol's) is refused before anything is buffered beyond them."""
    cache = _CACHES.get(view[pos] << 8 | view[pos + 1])
    if cache is None:
        cache = _unknown_type(view[pos], view[pos + 1])
    body_len, serial, fields_len = cache.fixed.unpack_from(view, pos)
    if body_len > MAX_MESSAGE_SIZE or fields_len > MAX_MESSAGE_SIZE:
        raise FramingError("message length exceeds the 128 MiB maximum")
    fields_end = FIXED_HEADER_SIZE + fields_len
    body_offset = fields_end + (-fields_len % 8)
    size = body_offset + body_len
    if size > max_size:
        if size > MAX_MESSAGE_SIZE:
            raise FramingError(f"message of {size} bytes exceeds the 128 MiB maximum")
        raise FramingError(f"message of {size} bytes exceeds the configured maximum of "
                           f"{max_size}")
    if len(view) - pos < size:
        return None
    if view[pos + 3] != PROTOCOL_VERSION:
        raise FramingError(f"unsupported protocol version {view[pos + 3]}")
    if serial == 0:
        raise FramingError("message serial is zero")
    if pos == 0 and size == len(view) and isinstance(view, bytes):
        raw = view  # the read held exactly one message: no copy
    else:
        raw = bytes(view[pos:pos + size])
    key = raw[FIXED_HEADER_SIZE - 4:body_offset]  # the fields' length, fields, padding
    fields = cache.fields.get(key)
    reply_serial = serial_at = 0
    if fields is None:
        for at in cache.serial_at:  # a reply: the same header as a validated one but
            hit = cache.replies.get(key[at + 4:])  # for the reply serial's value?
            if hit is not None and hit[1] == at and key.startswith(hit[0]):
                fields = hit[2]
                (reply_serial,) = _U32[cache.endian].unpack_from(key, at)
                if reply_serial == 0:
                    raise FramingError("reply serial is zero")
                serial_at = at + FIXED_HEADER_SIZE - 4
                break
        else:
            fields, reply_serial, serial_at = _validate_header(cache, raw, key, fields_end,
                                                               body_offset)
    if body_len and not fields[6]:
        raise FramingError("message has a body but no signature")
    return Message(raw, cache.endian, cache.mtype, raw[2], serial, fields, body_offset,
                   fields_end, reply_serial, serial_at)


class Repeat:
    """Header prediction (after Van Jacobson's for TCP): the header a connection's
    next frame is expected to repeat.

    A client calling one method in a loop, and the service answering it, send frames
    whose headers differ only in the flags, the body length, the serial and, in a
    reply, the reply serial's value. Made from a validated message, a Repeat
    recognises the next such frame by comparing the bytes in between, and makes its
    Message from the fields it holds: the checks left are those on the numbers that
    may differ (the protocol version, non-zero serials, the size bound) and the one on
    the body. A frame that is not a repeat, or fails a check, is left to next_frame(),
    which says what is wrong with it.
    """

    __slots__ = ("fixed", "lead", "key", "tail", "serial_at", "fields", "body_offset",
                 "fields_end", "endian", "mtype", "u32")

    def __init__(self, msg: Message) -> None:
        raw = msg.raw
        at = msg.serial_at
        self.fixed = _REPEAT_FIXED[msg.endian]
        self.lead = self.fixed.unpack_from(raw)[0]  # byte order and type (not the flags)
        self.serial_at = at
        if at:  # the bytes around the reply serial's value
            self.key = raw[FIXED_HEADER_SIZE - 4:at]
            self.tail = raw[at + 4:msg.body_offset]
        else:  # the fields' length, the fields and their padding
            self.key = raw[FIXED_HEADER_SIZE - 4:msg.body_offset]
            self.tail = b""
        self.fields = msg.fields
        self.body_offset = msg.body_offset
        self.fields_end = msg.fields_end
        self.endian = msg.endian
        self.mtype = msg.type
        self.u32 = _U32[msg.endian]

    def match(self, data: bytes, max_size: int) -> Message | None:
        """The message if ``data`` (at least FIXED_HEADER_SIZE bytes) is exactly one
        valid frame, body included, that repeats this header; else None."""
        body_offset = self.body_offset
        lead, version, body_len, serial = self.fixed.unpack_from(data)
        size = body_offset + body_len
        if (lead != self.lead or size != len(data) or size > max_size or not serial
                or version != PROTOCOL_VERSION
                or not data.startswith(self.key, FIXED_HEADER_SIZE - 4)):
            return None
        at = self.serial_at
        reply_serial = 0
        if at:
            if not data.startswith(self.tail, at + 4):
                return None
            (reply_serial,) = self.u32.unpack_from(data, at)
            if not reply_serial:
                return None
        fields = self.fields
        msg = Message(data, self.endian, self.mtype, data[2], serial, fields, body_offset,
                      self.fields_end, reply_serial, at)
        signature = fields[6]
        if signature:  # the body checks the framer makes
            try:
                if not check_simple_body(signature, data, self.endian, body_offset):
                    msg.args()
            except (MarshalError, SignatureError):
                return None
        elif body_len:
            return None
        return msg


def _validate_header(cache: _HeaderCache, raw: bytes, key: bytes, fields_end: int,
                     body_offset: int) -> tuple[_Fields, int, int]:
    """The fields, the reply serial and its offset in ``raw`` of a header not in the
    cache; cache it."""
    if any(raw[fields_end:body_offset]):
        raise FramingError("non-zero padding after the header")
    msg = Message(raw, cache.endian, cache.mtype, 0, 1)
    try:
        serial_at = _parse_fields(msg, raw, fields_end, _U32[cache.endian])
    except (MarshalError, SignatureError, IndexError, struct.error) as exc:
        raise FramingError(f"invalid header field: {exc}") from None
    _check_required(msg)
    fields = tuple(getattr(msg, name) for name in _FIELD_ATTRIBUTES)
    if not serial_at:
        if len(cache.fields) >= FIELD_CACHE_SIZE:
            cache.fields.clear()
        cache.fields[key] = fields
    else:
        _remember_reply(cache, key, serial_at - (FIXED_HEADER_SIZE - 4), fields)
    return fields, msg.reply_serial, serial_at


def _remember_reply(cache: _HeaderCache, key: bytes, at: int, fields: _Fields) -> None:
    """Cache a reply's header by what follows its reply serial; a hit must match what
    precedes it too."""
    replies = cache.replies
    if len(replies) >= FIELD_CACHE_SIZE:
        replies.clear()
    replies[key[at + 4:]] = (key[:at], at, fields)
    offsets = cache.serial_at
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


def _check_required(msg: Message) -> None:
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
    if msg.interface == "org.freedesktop.DBus.Local":
        raise FramingError("the org.freedesktop.DBus.Local interface is reserved")
    if msg.path == "/org/freedesktop/DBus/Local":
        raise FramingError("the /org/freedesktop/DBus/Local path is reserved")


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


# Encoded text header fields of the messages the bus builds, padded to 8, with the
# size of that padding: the bus's name, paths, interfaces and members repeat in every
# reply and signal, so most are validated and encoded once.
BUILT_FIELD_CACHE_SIZE = 512
_BUILT_FIELDS: dict[tuple[int, str, str], tuple[bytes, int]] = {}
_TEXT_FIELD_TYPES = {FIELD_PATH: ord("o"), FIELD_INTERFACE: ord("s"), FIELD_MEMBER: ord("s"),
                     FIELD_ERROR_NAME: ord("s"), FIELD_DESTINATION: ord("s"),
                     FIELD_SENDER: ord("s"), FIELD_SIGNATURE: ord("g")}
_NOT_TEXT = {FIELD_PATH: "string expected for 'o'", FIELD_SIGNATURE: "signature expected"}
_NOT_STRING = "string expected for 's'"


def _text_field(code: int, text: object, endian: str) -> tuple[bytes, int]:
    """A header field of type o, s or g, padded to 8, and its padding's size."""
    if not isinstance(text, str):
        raise MarshalError(f"{_NOT_TEXT.get(code, _NOT_STRING)}, got {text!r}")
    key = (code, text, endian)
    hit = _BUILT_FIELDS.get(key)
    if hit is not None:
        return hit
    sig = _TEXT_FIELD_TYPES[code]
    if code == FIELD_SIGNATURE:
        try:
            split_signature(text)
            data = text.encode("ascii")
        except (SignatureError, UnicodeEncodeError) as exc:
            raise MarshalError(str(exc)) from None
        field = bytes((FIELD_SIGNATURE, 1, sig, 0, len(data))) + data + b"\0"
    else:
        if code == FIELD_PATH:
            names.check_object_path(text)
        field = _string_field(code, sig, text, _U32[endian])
    pad = -len(field) % 8
    hit = (field + _PADDING[pad], pad)
    if len(_BUILT_FIELDS) >= BUILT_FIELD_CACHE_SIZE:
        _BUILT_FIELDS.clear()
    _BUILT_FIELDS[key] = hit
    return hit


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
    if not isinstance(signature, str):
        raise MarshalError(f"signature expected, got {signature!r}")
    if body is None:
        body = marshal(signature, args, endian) if signature else b""
    u32 = _U32.get(endian)
    if u32 is None:
        raise MarshalError(f"unknown byte order {endian!r}")
    parts = [b"", b""]  # the fixed header's two pieces, filled in last
    pad = 0  # of the last field: the header's own padding, not part of its length
    for code, text in ((FIELD_PATH, path), (FIELD_INTERFACE, interface),
                       (FIELD_MEMBER, member), (FIELD_ERROR_NAME, error_name)):
        if text is not None:
            field, pad = _text_field(code, text, endian)
            parts.append(field)
    if reply_serial:
        parts.append(_u32_field(FIELD_REPLY_SERIAL, reply_serial, u32))
        pad = 0
    for code, text in ((FIELD_DESTINATION, destination), (FIELD_SENDER, sender)):
        if text is not None:
            field, pad = _text_field(code, text, endian)
            parts.append(field)
    if signature:
        field, pad = _text_field(FIELD_SIGNATURE, signature, endian)
        parts.append(field)
    if unix_fds:
        parts.append(_u32_field(FIELD_UNIX_FDS, unix_fds, u32))
        pad = 0
    padded_len = sum(map(len, parts))
    parts[0] = (b"l" if endian == LITTLE else b"B") + bytes((mtype, flags, PROTOCOL_VERSION))
    try:
        parts[1] = u32.pack(len(body)) + u32.pack(serial) + u32.pack(padded_len - pad)
    except struct.error as exc:
        raise MarshalError(f"cannot marshal the fixed header: {exc}") from None
    parts.append(body)
    return b"".join(parts)


def sender_field(sender: str, endian: str) -> bytes:
    """The encoded SENDER header field, starting 8-aligned (cache it per peer)."""
    data = sender.encode()
    return bytes((FIELD_SENDER, 1, ord("s"), 0)) + _U32[endian].pack(len(data)) + data + b"\0"


def _sender_appended(fields_len: int, field: bytes, endian: str) -> tuple[bytes, bytes]:
    """For header fields of ``fields_len`` bytes (a multiple of 8) followed by the sender
    field ``field``: the new fields-length word, and ``field`` with the padding that
    ends the header."""
    total = fields_len + len(field)
    return _U32[endian].pack(total), field + _PADDING[-total % 8]


class SenderField:
    """One peer's SENDER header field in one byte order, and what forwarding a frame
    with it puts around the frame's fields for the last header length it forwarded
    (the new fields' length, and the field with its padding): a peer's frames mostly
    have one or two header lengths."""

    __slots__ = ("field", "endian", "body_offset", "length", "tail")

    def __init__(self, sender: str, endian: str) -> None:
        self.field = sender_field(sender, endian)
        self.endian = endian
        self.body_offset = 0  # (no frame forwarded yet)
        self.length = self.tail = b""

    def forward(self, msg: Message) -> tuple[list[bytes | memoryview], int]:
        """The buffers that forward ``msg`` (of this byte order) from this sender, and
        their size: what :func:`with_sender` makes, for less."""
        raw = msg.raw
        start = msg.body_offset
        if msg.sender_span is not None or len(raw) - start > COPY_BODY_MAX:
            head, rest = with_sender(msg, self.field)
            return ([head, rest], len(head) + len(rest)) if rest else ([head], len(head))
        if start != self.body_offset:
            self.length, self.tail = _sender_appended(start - FIXED_HEADER_SIZE, self.field,
                                                      self.endian)
            self.body_offset = start
        data = b"".join((raw[:12], self.length, raw[FIXED_HEADER_SIZE:start], self.tail,
                         raw[start:]))
        return [data], len(data)


def with_sender(msg: Message, field: bytes) -> tuple[bytes, bytes | memoryview]:
    """Return (head, rest) of ``msg`` with its sender field set to ``field``: the
    frame to forward is ``head + rest``.

    A body of up to COPY_BODY_MAX bytes is copied into ``head`` (``rest`` is empty):
    one buffer is cheaper to send than two. A bigger one stays a view into the
    original frame, sent with ``head`` in one gathered write, never copied.
    """
    raw = msg.raw
    start = msg.body_offset
    if msg.sender_span is None:
        # the fields and their padding stay as they are; the sender field goes last
        length, tail = _sender_appended(start - FIXED_HEADER_SIZE, field, msg.endian)
        if len(raw) - start <= COPY_BODY_MAX:
            return b"".join((raw[:12], length, raw[FIXED_HEADER_SIZE:start], tail,
                             raw[start:])), b""
        return (b"".join((raw[:12], length, raw[FIXED_HEADER_SIZE:start], tail)),
                memoryview(raw)[start:])
    end = msg.fields_end
    first, stop = msg.sender_span
    stop += -stop % 8 if stop < end else 0
    head_fields = raw[FIXED_HEADER_SIZE:first] + raw[min(stop, end):end]
    pad = -(FIXED_HEADER_SIZE + len(head_fields)) % 8
    length, tail = _sender_appended(len(head_fields) + pad, field, msg.endian)
    head = b"".join((raw[:12], length, head_fields, _PADDING[pad], tail))
    if len(raw) - start <= COPY_BODY_MAX:
        return head + raw[start:], b""
    return head, memoryview(raw)[start:]
