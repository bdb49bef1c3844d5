"""The incremental framer: whole, in chunks, one byte at a time, with fds, and its bounds."""

import struct

import pytest

from bootbus.wire import message as m
from bootbus.wire.errors import FramingError
from bootbus.wire.framer import MAX_QUEUED_FDS, Framer
from bootbus.wire.limits import MAX_MESSAGE_SIZE, MAX_UNIX_FDS_PER_MESSAGE

from .frames import (
    BIG_ENDIAN_NAME_ACQUIRED,
    LIBDBUS_HELLO,
    UNIX_FDS,
    call_fields,
    frame,
    join_fields,
    sig_field,
    u32_field,
)
from .hexbytes import hx


def _with_fds(count: int, serial: int = 5) -> bytes:
    """A call carrying ``count`` UNIX_FD arguments (indexes 0..count-1)."""
    body = b"".join(struct.pack("<I", i) for i in range(count))
    fields = join_fields(call_fields(), sig_field("h" * count), u32_field(UNIX_FDS, count))
    return frame(fields, body, serial=serial)


STREAM = LIBDBUS_HELLO + BIG_ENDIAN_NAME_ACQUIRED + _with_fds(2) + LIBDBUS_HELLO


def _summary(msgs: list[m.Message]) -> list[tuple[int, int, str | None, list[int]]]:
    return [(msg.type, msg.serial, msg.member, msg.fds) for msg in msgs]


EXPECTED = [(m.METHOD_CALL, 1, "Hello", []), (m.SIGNAL, 2, "NameAcquired", []),
            (m.METHOD_CALL, 5, "M", [10, 11]), (m.METHOD_CALL, 1, "Hello", [])]


def test_fed_whole() -> None:
    framer = Framer()
    msgs = framer.feed(STREAM, [10, 11])
    assert _summary(msgs) == EXPECTED
    assert framer.pending == 0 and framer.error is None and framer.fds == []
    assert [msg.raw for msg in msgs] == [LIBDBUS_HELLO, BIG_ENDIAN_NAME_ACQUIRED,
                                        _with_fds(2), LIBDBUS_HELLO]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 15, 16, 17, 64, 127, 128, 129, 1000])
def test_fed_in_chunks(chunk: int) -> None:
    framer = Framer()
    msgs: list[m.Message] = []
    for at in range(0, len(STREAM), chunk):
        # the fds arrive with the first byte of the message that carries them,
        # as SCM_RIGHTS delivers them on a stream socket
        fds = [10, 11] if at <= len(LIBDBUS_HELLO) + len(BIG_ENDIAN_NAME_ACQUIRED) < at + chunk \
            else []
        msgs += framer.feed(STREAM[at:at + chunk], fds)
    assert _summary(msgs) == EXPECTED
    assert framer.pending == 0 and framer.error is None


def test_one_byte_at_a_time_yields_each_message_on_its_last_byte() -> None:
    framer = Framer()
    ends = []
    for at in range(len(STREAM)):
        got = framer.feed(STREAM[at:at + 1], [10, 11] if at == 0 else [])
        if got:
            assert len(got) == 1
            ends.append(at + 1)
        else:
            assert framer.pending == (at + 1) - (ends[-1] if ends else 0)
    hello, signal, fds = len(LIBDBUS_HELLO), len(BIG_ENDIAN_NAME_ACQUIRED), len(_with_fds(2))
    assert ends == [hello, hello + signal, hello + signal + fds, len(STREAM)]


def test_fds_ahead_of_their_message_wait_in_the_queue() -> None:
    framer = Framer()
    assert framer.feed(LIBDBUS_HELLO, [7, 8, 9]) != []
    assert framer.fds == [7, 8, 9]  # the Hello announced none
    (msg,) = framer.feed(_with_fds(2))
    assert msg.fds == [7, 8]
    assert framer.take_fds() == [9]
    assert framer.fds == []


def test_a_message_announcing_more_fds_than_arrived_is_a_protocol_error() -> None:
    framer = Framer()
    assert framer.feed(LIBDBUS_HELLO + _with_fds(2), [3]) != []  # the Hello is still returned
    assert isinstance(framer.error, FramingError)
    assert framer.take_fds() == [3]  # left for the caller to close


def test_more_fds_than_a_message_may_carry_is_a_protocol_error() -> None:
    count = MAX_UNIX_FDS_PER_MESSAGE + 1
    framer = Framer()
    assert framer.feed(_with_fds(count), list(range(100, 100 + count))) == []
    assert isinstance(framer.error, FramingError)


def test_the_largest_fd_count_is_accepted() -> None:
    count = MAX_UNIX_FDS_PER_MESSAGE
    framer = Framer()
    (msg,) = framer.feed(_with_fds(count), list(range(count)))
    assert msg.fds == list(range(count)) and framer.error is None


def test_fds_queued_without_any_message_are_bounded() -> None:
    framer = Framer()
    framer.feed(b"l", list(range(MAX_QUEUED_FDS)))
    assert framer.error is None
    framer.feed(b"", [MAX_QUEUED_FDS])
    assert isinstance(framer.error, FramingError)


@pytest.mark.parametrize("endian", ["l", "B"])
@pytest.mark.parametrize("body_len", [MAX_MESSAGE_SIZE, 0x80000000, 0xFFFFFFFF])
def test_an_oversized_header_is_refused_from_its_first_16_bytes(endian: str,
                                                                body_len: int) -> None:
    fmt = "<" if endian == "l" else ">"
    head = endian.encode() + b"\x01\x00\x01" + struct.pack(fmt + "III", body_len, 1, 0)
    framer = Framer()
    assert framer.feed(head[:15]) == [] and framer.error is None
    assert framer.feed(head[15:]) == []
    assert isinstance(framer.error, FramingError)
    # nothing of it is kept, and the framer refuses any further input
    assert framer.pending == 0
    with pytest.raises(FramingError):
        framer.feed(LIBDBUS_HELLO)


def test_a_header_at_the_bound_waits_for_its_body() -> None:
    head = b"l\x01\x00\x01" + struct.pack("<III", MAX_MESSAGE_SIZE - 16 - 48, 1, 44)
    framer = Framer()
    assert framer.feed(head) == []
    assert framer.error is None and framer.pending == 16


def test_garbage_after_good_messages_returns_them_then_fails() -> None:
    framer = Framer()
    msgs = framer.feed(LIBDBUS_HELLO + b"GET / HTTP/1.1\r\n\r\n")
    assert _summary(msgs) == [(m.METHOD_CALL, 1, "Hello", [])]
    assert isinstance(framer.error, FramingError)


def test_an_invalid_frame_completed_by_a_later_chunk_fails_then() -> None:
    bad = frame(call_fields(), version=2)
    framer = Framer()
    assert framer.feed(bad[:-1]) == [] and framer.error is None
    assert framer.feed(bad[-1:]) == []
    assert isinstance(framer.error, FramingError)


def test_the_framer_state_is_plain_data_that_can_resume() -> None:
    # a snapshot carries buf and fds; a new framer built from them goes on
    first = Framer()
    first.feed(STREAM[:200], [10, 11])
    second = Framer(bytes(first.buf), list(first.fds))
    msgs = second.feed(STREAM[200:])
    assert _summary(msgs) == EXPECTED[1:]


def test_feed_accepts_bytearray_and_memoryview() -> None:
    for data in (bytearray(STREAM), memoryview(STREAM)):
        framer = Framer()
        assert _summary(framer.feed(data, [10, 11])) == EXPECTED


@pytest.mark.parametrize(("sig", "body"), [
    ("s", "03000000 666f6f 78"),        # string without its NUL
    ("u", "0100"),                      # truncated UINT32
    ("b", "02000000"),                  # boolean 2
    ("y", "01 00"),                     # trailing bytes after the last value
    ("o", "02000000 2f2f 00"),          # invalid object path
    ("s", "02000000 c328 00"),          # invalid UTF-8
], ids=["no NUL", "truncated", "boolean 2", "trailing bytes", "bad path", "bad UTF-8"])
def test_a_message_with_an_invalid_body_is_a_protocol_error(sig: str, body: str) -> None:
    # libdbus drops its own connection when handed an invalid message, so the bus
    # validates every body and hangs up on the sender, as dbus-daemon does
    bad = frame(join_fields(call_fields(), sig_field(sig)), hx(body), serial=9)
    framer = Framer()
    msgs = framer.feed(LIBDBUS_HELLO + bad + LIBDBUS_HELLO)
    assert _summary(msgs) == [(m.METHOD_CALL, 1, "Hello", [])]
    assert isinstance(framer.error, FramingError)


def test_valid_bodies_are_parsed_once_and_kept() -> None:
    good = frame(join_fields(call_fields(), sig_field("sb")), hx("01000000 78 00 0000 01000000"))
    (msg,) = Framer().feed(good)
    assert msg.args() == ["x", True]
