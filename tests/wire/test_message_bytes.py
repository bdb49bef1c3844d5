"""Header parsing of known frames, written byte by byte; building; re-addressing.

LIBDBUS_HELLO (tests/wire/frames.py) is the frame libdbus (dbus-send,
dbus-python) writes as its first message: PATH, DESTINATION, INTERFACE, MEMBER
in that order, serial 1, no body. Other frames are put together by frames.py
from the specification's rules, independently of bootbus.wire.message.
"""

import struct

import pytest
from jeepney.low_level import Message as JMessage

from bootbus.wire import message as m
from bootbus.wire.errors import FramingError
from bootbus.wire.limits import MAX_MESSAGE_SIZE

from .frames import (
    BIG_ENDIAN_NAME_ACQUIRED,
    DESTINATION,
    ERROR_NAME,
    INTERFACE,
    LIBDBUS_HELLO,
    MEMBER,
    PATH,
    REPLY_SERIAL,
    SENDER,
    UNIX_FDS,
    call_fields,
    frame,
    join_fields,
    sig_field,
    str_field,
    u32_field,
)
from .hexbytes import hx


def test_libdbus_hello_is_what_the_independent_parser_reads() -> None:
    # guard the hand-written literal itself with jeepney's parser
    jmsg = JMessage.from_buffer(LIBDBUS_HELLO)
    assert jmsg.header.fields[3] == "Hello"


def test_parse_libdbus_hello() -> None:
    assert len(LIBDBUS_HELLO) == 128
    assert m.frame_size(LIBDBUS_HELLO[:16]) == 128
    msg = m.parse(LIBDBUS_HELLO)
    assert (msg.type, msg.flags, msg.serial, msg.endian) == (m.METHOD_CALL, 0, 1, "l")
    assert msg.path == "/org/freedesktop/DBus"
    assert msg.destination == "org.freedesktop.DBus"
    assert msg.interface == "org.freedesktop.DBus"
    assert msg.member == "Hello"
    assert (msg.sender, msg.error_name, msg.reply_serial, msg.signature, msg.unix_fds) == (
        None, None, 0, "", 0)
    assert msg.sender_span is None
    assert msg.body == b""
    assert msg.args() == []
    assert msg.fields_end == 126 and msg.body_offset == 128


def test_parse_big_endian_signal_with_body() -> None:
    raw = BIG_ENDIAN_NAME_ACQUIRED
    assert JMessage.from_buffer(raw).body == (":1.5",)
    assert m.frame_size(raw[:16]) == len(raw) == 169
    msg = m.parse(raw)
    assert (msg.type, msg.flags, msg.serial, msg.endian) == (m.SIGNAL, 1, 2, "B")
    assert (msg.path, msg.interface, msg.member) == (
        "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameAcquired")
    assert (msg.destination, msg.sender, msg.signature) == (
        ":1.5", "org.freedesktop.DBus", "s")
    assert msg.body == hx("00000004 3a312e35 00")
    assert msg.args() == [":1.5"]
    start, stop = msg.sender_span
    assert raw[start:start + 4] == b"\x07\x01s\x00" and stop == start + 29


def test_build_writes_the_spec_layout() -> None:
    raw = m.build(m.METHOD_RETURN, 7, reply_serial=3, destination=":1.1", signature="u",
                  args=(5,), endian="B")
    assert raw == hx("""
        42 02 00 01  00000004  00000007  0000001f
        05 01 75 00  00000003                    # REPLY_SERIAL 3
        06 01 73 00  00000004 3a312e31 00 000000 # DESTINATION ":1.1"
        08 01 67 00  01 75 00                    # SIGNATURE "u"
        00                                       # pad to 8
        00000005                                 # body
    """)


def test_build_then_parse_keeps_every_field() -> None:
    raw = m.build(m.ERROR, 9, error_name="com.example.Error.Bad", reply_serial=4,
                  destination=":1.4", sender=":1.3", signature="sa{sv}",
                  args=("text", {"k": ("i", 1)}), unix_fds=2, flags=m.FLAG_NO_AUTO_START,
                  path="/p", interface="com.example.I", member="M")
    msg = m.parse(raw)
    assert (msg.type, msg.serial, msg.flags) == (m.ERROR, 9, m.FLAG_NO_AUTO_START)
    assert (msg.error_name, msg.reply_serial, msg.destination, msg.sender) == (
        "com.example.Error.Bad", 4, ":1.4", ":1.3")
    assert (msg.path, msg.interface, msg.member, msg.unix_fds) == ("/p", "com.example.I", "M", 2)
    assert msg.args() == ["text", {"k": ("i", 1)}]


# -- the sender field, set by the bus --------------------------------------------

def test_with_sender_appends_the_field_to_libdbus_hello() -> None:
    msg = m.parse(LIBDBUS_HELLO)
    header, body = m.with_sender(msg, m.sender_field(":1.7", "l"))
    sender = hx("07 01 73 00 04000000 3a312e37 00")
    assert header == (LIBDBUS_HELLO[:12] + struct.pack("<I", 110 + 2 + 13)
                      + LIBDBUS_HELLO[16:126] + b"\0\0" + sender + b"\0\0\0")
    assert bytes(body) == b""
    again = m.parse(header + bytes(body))
    assert again.sender == ":1.7" and again.member == "Hello"


@pytest.mark.parametrize("endian", ["l", "B"])
def test_a_sender_field_forwards_what_with_sender_makes(endian: str) -> None:
    sender = m.SenderField(":1.7", endian)
    u32 = "<I" if endian == "l" else ">I"

    def ay(size: int) -> bytes:  # a body of exactly ``size`` bytes
        return struct.pack(u32, size - 4) + bytes(size - 4)

    fields = join_fields(call_fields(endian), sig_field("ay"))
    frames = [frame(call_fields(endian), endian=endian),
              frame(fields, ay(m.COPY_BODY_MAX), endian=endian),  # the most that is copied
              frame(fields, ay(m.COPY_BODY_MAX + 4), endian=endian),  # sent as a view
              frame(join_fields(str_field(SENDER, ":9.9", endian),
                                str_field(PATH, "/a", endian, b"o"),
                                str_field(MEMBER, "S", endian), str_field(INTERFACE, "a.b", endian)),
                    mtype=m.SIGNAL, endian=endian),  # a sender field to replace
              frame(call_fields(endian, path="/a/longer/path"), endian=endian),
              frame(call_fields(endian), endian=endian)]  # another header length, then back
    for raw in frames:
        msg = m.parse(raw)
        bufs, size = sender.forward(msg)
        header, rest = m.with_sender(msg, m.sender_field(":1.7", endian))
        assert b"".join(bytes(buf) for buf in bufs) == header + bytes(rest)
        assert size == len(header) + len(rest)
        assert len(bufs) == (2 if rest else 1)


def test_sender_field_big_endian() -> None:
    assert m.sender_field(":1.10", "B") == hx("07 01 73 00 00000005 3a312e3130 00")


@pytest.mark.parametrize("endian", ["l", "B"])
@pytest.mark.parametrize("position", ["first", "middle", "last"])
def test_with_sender_replaces_a_spoofed_sender(endian: str, position: str) -> None:
    spoof = str_field(SENDER, "org.freedesktop.DBus", endian)
    others = [str_field(PATH, "/a/b", endian, b"o"), str_field(MEMBER, "Frob", endian),
              str_field(INTERFACE, "a.b", endian), sig_field("s")]
    at = {"first": 0, "middle": 2, "last": 4}[position]
    fields = join_fields(*others[:at], spoof, *others[at:])
    body = hx("03000000 616263 00" if endian == "l" else "00000003 616263 00")
    raw = frame(fields, body, mtype=m.SIGNAL, endian=endian)
    msg = m.parse(raw)
    assert msg.sender == "org.freedesktop.DBus"
    header, rest = m.with_sender(msg, m.sender_field(":1.42", endian))
    out = m.parse(header + bytes(rest))
    assert out.sender == ":1.42"
    assert (out.path, out.member, out.interface, out.signature) == ("/a/b", "Frob", "a.b", "s")
    assert out.args() == ["abc"]
    assert (header + bytes(rest)).count(b"org.freedesktop.DBus") == 0


# -- frames the parser must refuse --------------------------------------------------

BAD_FRAMES = {
    "byte order mark 'x'": b"x" + frame(call_fields())[1:],
    "protocol version 2": frame(call_fields(), version=2),
    "protocol version 0": frame(call_fields(), version=0),
    "serial 0": frame(call_fields(), serial=0),
    "message type 0": frame(call_fields(), mtype=0),
    "message type 5 with a bad header field": frame(call_fields(path="/a/"), mtype=5),
    "message type 200 with non-zero padding": frame(call_fields(), mtype=200)[:-1] + b"\1",
    "method call without member": frame(join_fields(str_field(PATH, "/a", sig=b"o"))),
    "method call without path": frame(join_fields(str_field(MEMBER, "M"))),
    "signal without interface": frame(join_fields(str_field(PATH, "/a", sig=b"o"),
                                                  str_field(MEMBER, "M")), mtype=m.SIGNAL),
    "error without error name": frame(join_fields(u32_field(REPLY_SERIAL, 1)), mtype=m.ERROR),
    "error without reply serial": frame(join_fields(str_field(ERROR_NAME, "a.E")),
                                        mtype=m.ERROR),
    "return without reply serial": frame(b"", mtype=m.METHOD_RETURN),
    "reply serial 0": frame(join_fields(u32_field(REPLY_SERIAL, 0)), mtype=m.METHOD_RETURN),
    "PATH typed as STRING": frame(join_fields(str_field(PATH, "/a"), str_field(MEMBER, "M"))),
    "MEMBER typed as OBJECT_PATH": frame(join_fields(str_field(PATH, "/a", sig=b"o"),
                                                     str_field(MEMBER, "/M", sig=b"o"))),
    "REPLY_SERIAL typed as INT32": frame(join_fields(bytes((REPLY_SERIAL, 1)) + b"i\0"
                                                     + b"\1\0\0\0"), mtype=m.METHOD_RETURN),
    "MEMBER twice": frame(join_fields(str_field(PATH, "/a", sig=b"o"), str_field(MEMBER, "M"),
                                      str_field(MEMBER, "N"))),
    "header field code 0": frame(join_fields(bytes((0, 1)) + b"y\0" + b"\1",
                                             *[call_fields()])),
    "unknown field with an invalid signature": frame(
        join_fields(bytes((200, 1)) + b"a\0" + bytes(4), call_fields())),
    "unknown field with two types": frame(
        join_fields(bytes((200, 2)) + b"yy\0" + b"\1\1", call_fields())),
    "invalid object path": frame(call_fields(path="/a/")),
    "invalid member": frame(call_fields(member="9x")),
    "invalid destination": frame(call_fields(destination="a")),
    "invalid interface": frame(join_fields(call_fields(), str_field(INTERFACE, "noDots"))),
    "invalid error name": frame(join_fields(str_field(ERROR_NAME, "a..b"),
                                            u32_field(REPLY_SERIAL, 1)), mtype=m.ERROR),
    "invalid sender": frame(join_fields(call_fields(), str_field(SENDER, "x"))),
    "invalid signature field": frame(join_fields(call_fields(), sig_field("a")), body=b"\0"),
    "invalid UTF-8 in member": frame(join_fields(str_field(PATH, "/a", sig=b"o"),
                                                 str_field(MEMBER, b"\xc3\x28"))),
    "NUL inside destination": frame(call_fields(destination="a.b\0c")),
    "header string without its NUL": frame(call_fields()[:-1] + b"x"),
    "signature string without its NUL": frame(join_fields(
        call_fields(), bytes((8, 1)) + b"g\0" + b"\1sx"), body=b"\0"),
    "reserved interface org.freedesktop.DBus.Local": frame(join_fields(
        call_fields(), str_field(INTERFACE, "org.freedesktop.DBus.Local"))),
    "reserved path /org/freedesktop/DBus/Local": frame(
        call_fields(path="/org/freedesktop/DBus/Local")),
    "body without a signature": frame(call_fields(), body=b"\1"),
    "non-zero padding between fields": frame(
        call_fields()[:30] + b"\1\0" + call_fields()[32:]),
    # call_fields() is 44 bytes long: 4 bytes of padding follow it
    "non-zero padding after the header": frame(call_fields())[:-1] + b"\1",
    "fields length cutting a field": frame(call_fields(), fields_len=len(call_fields()) - 3),
    "fields length longer than the fields": frame(call_fields(), fields_len=len(call_fields())
                                                  + 8),
    "UNIX_FDS typed as STRING": frame(join_fields(call_fields(), str_field(UNIX_FDS, "1"))),
}


@pytest.mark.parametrize("raw", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_parse_refuses(raw: bytes) -> None:
    with pytest.raises(FramingError):
        m.parse(m_frame_exactly(raw))


def m_frame_exactly(raw: bytes) -> bytes:
    """Hand the parser exactly the bytes the framer would (its frame_size), when
    the header's lengths are readable; otherwise the bytes as they are."""
    try:
        size = m.frame_size(raw[:16])
    except FramingError:
        return raw
    return (raw + bytes(max(0, size - len(raw))))[:size]


def test_unknown_header_fields_are_skipped() -> None:
    # code 200, signature "at", value [1]: padding to 4 before the array length
    unknown = bytes((200, 2)) + b"at\0" + hx("000000 08000000 00000000 0100000000000000")
    raw = frame(join_fields(unknown, call_fields(), bytes((9 + 1, 1)) + b"s\0"
                            + hx("01000000 78 00")))
    msg = m.parse(raw)
    assert (msg.path, msg.member, msg.destination) == ("/a", "M", "a.b")


@pytest.mark.parametrize("endian", ["l", "B"])
def test_a_message_of_an_unknown_type_is_parsed_when_well_formed(endian: str) -> None:
    """The spec: unknown types must be well-formed like the known ones, then ignored
    (the router drops them); none of the known types' required fields apply."""
    raw = frame(join_fields(str_field(DESTINATION, "a.b", endian)), mtype=5, endian=endian)
    msg = m.parse(raw)
    assert (msg.type, msg.destination, msg.path, msg.member) == (5, "a.b", None, None)
    assert m.parse(raw).type == 5  # the cached header answers the same


def test_frame_size_rejects_an_unknown_byte_order() -> None:
    with pytest.raises(FramingError):
        m.frame_size(b"X" + bytes(15))


@pytest.mark.parametrize(("body_len", "fields_len", "ok"), [
    (MAX_MESSAGE_SIZE - 16, 0, True),            # exactly 128 MiB in all
    (MAX_MESSAGE_SIZE - 16 - 8, 8, True),
    (MAX_MESSAGE_SIZE - 16 + 1, 0, False),
    (MAX_MESSAGE_SIZE - 16 - 7, 1, False),       # the padding after the fields counts
    (0, MAX_MESSAGE_SIZE, False),
    (0x80000000, 0, False),                      # 2 GiB
    (0xFFFFFFFF, 0xFFFFFFFF, False),
])
@pytest.mark.parametrize("endian", ["l", "B"])
def test_frame_size_bound_of_128_mib(body_len: int, fields_len: int, ok: bool,
                                     endian: str) -> None:
    fmt = "<" if endian == "l" else ">"
    head = endian.encode() + b"\x01\x00\x01" + struct.pack(fmt + "III", body_len, 1, fields_len)
    if ok:
        assert m.frame_size(head) == 16 + fields_len + (-fields_len % 8) + body_len
    else:
        with pytest.raises(FramingError):
            m.frame_size(head)


# -- the header caches -------------------------------------------------------------

@pytest.mark.parametrize("endian", ["l", "B"])
def test_replies_that_differ_before_their_serial_are_not_confused(endian: str) -> None:
    """The reply cache is keyed by what follows the reply serial; what precedes it
    (here the destination, of the same length) must match as well."""
    def reply(destination: str, serial: int) -> bytes:
        return frame(join_fields(str_field(DESTINATION, destination, endian),
                                 u32_field(REPLY_SERIAL, serial, endian)),
                     mtype=m.METHOD_RETURN, endian=endian)

    first = m.parse(reply(":1.1", 7))
    again = m.parse(reply(":1.1", 8))  # a hit: only the serial differs
    other = m.parse(reply(":1.2", 9))  # same bytes after the serial, not before it
    assert (first.destination, first.reply_serial) == (":1.1", 7)
    assert (again.destination, again.reply_serial) == (":1.1", 8)
    assert (other.destination, other.reply_serial) == (":1.2", 9)
    with pytest.raises(FramingError, match="reply serial is zero"):
        m.parse(reply(":1.1", 0))


def test_a_header_cached_for_one_type_is_checked_again_for_another() -> None:
    """A signal needs an interface, a call does not: the cache is per type."""
    fields = call_fields()
    assert m.parse(frame(fields)).member == "M"  # cached as a call's header
    with pytest.raises(FramingError, match="signal without path, interface or member"):
        m.parse(frame(fields, mtype=m.SIGNAL))
