"""Header prediction (Framer.repeated, message.Repeat): a shortcut, never a second
opinion. For any frame, repeated() gives None or exactly the message feed() gives a
fresh framer for it; it never accepts what feed() refuses."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootbus.wire import message as m
from bootbus.wire.framer import MAX_PREDICTED_HEADER, Framer
from bootbus.wire.limits import FIXED_HEADER_SIZE, MAX_MESSAGE_SIZE

from .frames import (
    DESTINATION,
    ERROR_NAME,
    INTERFACE,
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

ATTRIBUTES = ("endian", "type", "flags", "serial", "path", "interface", "member",
              "error_name", "reply_serial", "destination", "sender", "signature",
              "unix_fds", "body_offset", "fields_end", "sender_span", "serial_at", "fields",
              "raw")


def _ay(payload: bytes, endian: str = "l") -> bytes:
    return (len(payload).to_bytes(4, "little" if endian == "l" else "big")) + payload


def call(serial: int = 7, payload: bytes = b"ping", flags: int = 0, endian: str = "l") -> bytes:
    fields = join_fields(str_field(PATH, "/org/bootbus/Bench", endian, b"o"),
                         str_field(INTERFACE, "org.bootbus.Bench", endian),
                         str_field(MEMBER, "Echo", endian),
                         str_field(DESTINATION, "org.bootbus.Bench.Echo", endian),
                         sig_field("ay"))
    return frame(fields, _ay(payload, endian), serial=serial, flags=flags, endian=endian)


def reply(reply_serial: int = 7, serial: int = 9, text: bytes = b"pong", endian: str = "l",
          sender: bool = False) -> bytes:
    fields = [u32_field(REPLY_SERIAL, reply_serial, endian), str_field(DESTINATION, ":1.1", endian),
              sig_field("s")]
    if sender:
        fields.append(str_field(SENDER, ":1.2", endian))
    body = (len(text).to_bytes(4, "little" if endian == "l" else "big")) + text + b"\0"
    return frame(join_fields(*fields), body, mtype=2, serial=serial, endian=endian)


def _s(text: bytes) -> bytes:
    return len(text).to_bytes(4, "little") + text + b"\0"


UNKNOWN_FIELD = 0x20  # header fields the spec does not define are validated, then ignored
SEEDS = [
    call(), call(endian="B"), reply(), reply(endian="B"), reply(sender=True),
    frame(join_fields(str_field(PATH, "/a", "l", b"o"), str_field(INTERFACE, "a.b"),
                      str_field(MEMBER, "S")), mtype=4),
    # bodies check_simple_body leaves to the unmarshaller: u, ss, a{sv}-like
    frame(join_fields(str_field(PATH, "/a", "l", b"o"), str_field(INTERFACE, "a.b"),
                      str_field(MEMBER, "U"), sig_field("u")), (7).to_bytes(4, "little"),
          mtype=4),
    frame(join_fields(call_fields(), sig_field("ss")), _s(b"org.x.I") + _s(b"P")),
    frame(join_fields(call_fields(), sig_field("a{sv}")),
          hx("10000000 00000000 01000000 6b 00 01 75 00 00 00 00 05000000")),
    # an error; an unknown field; a call that carries a reply serial; UNIX_FDS of 0
    frame(join_fields(str_field(ERROR_NAME, "org.x.Error"), u32_field(REPLY_SERIAL, 3),
                      str_field(DESTINATION, ":1.9")), mtype=3),
    frame(join_fields(call_fields(), str_field(UNKNOWN_FIELD, "what"))),
    frame(join_fields(call_fields(), u32_field(REPLY_SERIAL, 5))),
    frame(join_fields(call_fields(), u32_field(UNIX_FDS, 0))),
]


def _fed(data: bytes, max_size: int = MAX_MESSAGE_SIZE) -> m.Message | None:
    """What a fresh framer makes of ``data``: its one message, or None (an error, an
    incomplete frame, several frames)."""
    framer = Framer()
    framer.max_size = max_size
    msgs = framer.feed(data)
    return msgs[0] if len(msgs) == 1 and framer.error is None and not framer.buf else None


def _same(a: m.Message, b: m.Message) -> None:
    for name in ATTRIBUTES:
        assert getattr(a, name) == getattr(b, name), name
    assert a.fds == b.fds == ()
    assert a.args() == b.args()


def _learnt(seed: bytes) -> Framer:
    framer = Framer()
    assert len(framer.feed(seed)) == 1
    assert framer.repeat is None  # once is not yet a pattern
    assert len(framer.feed(seed)) == 1
    assert framer.repeat is not None
    return framer


@pytest.mark.parametrize("seed", SEEDS)
def test_a_lone_frame_is_expected_again(seed: bytes) -> None:
    framer = _learnt(seed)
    msg = framer.repeated(seed)
    assert msg is not None
    fed = _fed(seed)
    assert fed is not None
    _same(msg, fed)


def test_a_call_repeats_with_another_serial_flags_and_body() -> None:
    framer = _learnt(call())
    msg = framer.repeated(call(serial=12345, payload=b"x" * 300, flags=m.FLAG_NO_REPLY_EXPECTED))
    assert msg is not None
    assert (msg.serial, msg.flags, msg.args()) == (12345, m.FLAG_NO_REPLY_EXPECTED, [b"x" * 300])


def test_a_reply_repeats_with_another_reply_serial() -> None:
    framer = _learnt(reply(reply_serial=7))
    msg = framer.repeated(reply(reply_serial=0x01020304, serial=10, text=b"other"))
    assert msg is not None
    assert (msg.reply_serial, msg.serial, msg.args()) == (0x01020304, 10, ["other"])


@pytest.mark.parametrize(("frame_bytes", "error"), [
    (call(serial=0), "serial is zero"),
    (reply(reply_serial=0), "reply serial is zero"),
    (call()[:3] + b"\x02" + call()[4:], "protocol version"),
    (call(payload=b"")[:-4] + b"\x05\x00\x00\x00", "array runs past"),
    (reply(text=b"a\0b"), "string contains NUL"),
])
def test_what_feed_refuses_is_never_a_repeat(frame_bytes: bytes, error: str) -> None:
    framer = _learnt(reply() if frame_bytes[1] == 2 else call())
    assert framer.repeated(frame_bytes) is None
    framer.feed(frame_bytes)
    assert framer.error is not None and error in str(framer.error)


def test_a_frame_over_the_configured_bound_is_not_a_repeat() -> None:
    framer = _learnt(call())
    framer.max_size = len(call(payload=b"x" * 100)) - 1
    assert framer.repeated(call(payload=b"x" * 100)) is None
    assert not framer.feed(call(payload=b"x" * 100)) and "configured maximum" in str(framer.error)


def test_other_headers_and_partial_input_take_the_general_path() -> None:
    framer = _learnt(call())
    assert framer.repeated(reply()) is None  # another type
    assert framer.repeated(call(endian="B")) is None  # another byte order
    other = frame(join_fields(str_field(PATH, "/org/bootbus/Bench", "l", b"o"),
                              str_field(MEMBER, "Other"), sig_field("ay")), _ay(b""))
    assert framer.repeated(other) is None  # other fields
    assert framer.repeated(call() + call(serial=8)) is None  # two frames
    assert framer.repeated(call()[:-1]) is None  # half a frame
    framer.feed(call()[:20])
    assert framer.repeated(call()) is None  # bytes are waiting in the framer


def test_a_header_is_expected_once_it_came_alone_twice_in_a_row() -> None:
    framer = Framer()
    for frame_bytes in (call(), reply(), call(serial=8), reply(reply_serial=8)):
        framer.feed(frame_bytes)  # a peer alternating two headers: nothing to expect
        assert framer.repeat is None
    framer.feed(reply(reply_serial=9, serial=11))
    assert framer.repeat is not None and framer.repeat.mtype == m.METHOD_RETURN
    assert framer.repeated(call(serial=9)) is None  # (then it goes to feed)
    framer.feed(call(serial=9))
    framer.feed(call(serial=10))
    assert framer.repeated(call(serial=11)) is not None  # the newer pattern


def test_several_frames_in_one_read_teach_nothing() -> None:
    framer = Framer()
    for serial in (1, 3, 5):
        framer.feed(call(serial=serial) + call(serial=serial + 1))
    assert framer.repeat is None


def test_a_frame_announcing_fds_teaches_nothing() -> None:
    fields = join_fields(str_field(PATH, "/a", "l", b"o"), str_field(MEMBER, "M"),
                         sig_field("h"), u32_field(9, 1))
    framer = Framer()
    for fd in (5, 6):
        (msg,) = framer.feed(frame(fields, bytes(4)), [fd])
        assert msg.fds == [fd] and framer.repeat is None


# where a repeat may differ from the header it repeats (flags, version, body length,
# serial; a reply's serial sits at 16 + 8 in the seeds), anywhere else, and the body
POSITIONS = st.sampled_from([2, 3, 4, 8, 9, 11, 24, 25, 27]) | st.integers(0, 400) | (
    st.integers(1, 8).map(lambda back: -back))
MUTATIONS = st.lists(st.tuples(POSITIONS, st.integers(0, 255)), min_size=1, max_size=3)


@settings(max_examples=500, deadline=None, database=None)
@given(st.data(), st.sampled_from(SEEDS), MUTATIONS, st.sampled_from([0, 0, 0, 1, 5]))
def test_a_repeat_is_exactly_what_feed_makes_of_it(data: st.DataObject, seed: bytes,
                                                   mutations: list[tuple[int, int]],
                                                   cut: int) -> None:
    learnt = data.draw(st.just(seed) | st.sampled_from(SEEDS))
    frame_bytes = mutate(seed, mutations, cut)
    framer = _learnt(learnt)
    # the framer's state around it: a bound lowered by a reload, fds that arrived ahead
    # of their message, a global header cache emptied since the header was learnt
    framer.max_size = data.draw(st.sampled_from([MAX_MESSAGE_SIZE, len(seed), len(seed) - 1,
                                                 FIXED_HEADER_SIZE]))
    framer.fds = data.draw(st.sampled_from([[], [41]]))
    if data.draw(st.booleans()):
        _empty_header_caches()
    expected = framer.repeat
    msg = framer.repeated(frame_bytes)  # (never raises: errors are feed()'s to name)
    fed = _fed(frame_bytes, framer.max_size)
    if msg is not None:
        assert fed is not None, "repeated() accepted a frame feed() refuses"
        _same(msg, fed)
    # nothing consumed either way (a hit notes its header as the last lone one)
    assert framer.buf == b"" and framer.error is None and framer.repeat is expected
    assert framer.fds in ([], [41])


def _empty_header_caches() -> None:
    for cache in m._CACHES.values():
        cache.fields.clear()
        cache.replies.clear()
        cache.serial_at.clear()


def test_a_repeat_learnt_survives_a_peer_that_then_alternates() -> None:
    framer = _learnt(call())
    repeat = framer.repeat
    other = frame(join_fields(str_field(PATH, "/org/bootbus/Bench", "l", b"o"),
                              str_field(MEMBER, "Other"), sig_field("ay")), _ay(b"x"))
    hits = 0
    for serial in range(10, 40):
        data = call(serial=serial) if serial % 2 else other[:8] + serial.to_bytes(4, "little") + other[12:]
        msg = framer.repeated(data)
        if msg is None:
            assert len(framer.feed(data)) == 1
        else:
            hits += 1
    assert hits == 15  # every call, none of the others
    assert framer.repeat is repeat  # and no Repeat was built for the alternation


def test_a_header_over_the_bound_is_not_kept() -> None:
    path = "/" + "p" * MAX_PREDICTED_HEADER
    big = frame(join_fields(str_field(PATH, path, "l", b"o"), str_field(MEMBER, "M")))
    framer = Framer()
    framer.feed(big)
    framer.feed(big[:8] + (2).to_bytes(4, "little") + big[12:])
    assert framer.repeat is None and framer.alone is None


def mutate(seed: bytes, mutations: list[tuple[int, int]], cut: int) -> bytes:
    data = bytearray(seed)
    for at, value in mutations:
        data[at % len(data)] = value
    return bytes(data[:len(data) - cut])
