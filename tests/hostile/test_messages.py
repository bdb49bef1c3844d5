"""Hostile peers after authentication: malformed, lying, truncated and
spoofed messages.

Each bad message must get an error reply or a hang-up (bootbus hangs up on
any message it cannot frame or validate, as dbus-daemon does); the daemon must
keep serving the witness and give back what the attacker made it hold.
"""

from __future__ import annotations

import struct
import time

import pytest

from integration import rawwire as rw

from .conftest import Target
from .peers import assert_disconnected, assert_served_promptly, call_header, registered
from .procstat import rss_kib

# Truncated messages left hanging: how many peers, what each announces, and
# how much of it each really sends before going quiet.
HANGING_PEERS = 4
HANGING_ANNOUNCED = 100 * 1024 * 1024
HANGING_SENT = 8 * 1024 * 1024
# The daemon may hold what it was sent, plus this, while they hang.
HANGING_SLACK_KIB = 8 * 1024
# Beyond the specification's 32 arrays + 32 structs (64 in all).
TOO_DEEP = 33
VARIANT_NESTING = 20_000  # far past any recursion limit a parser could have


def marker_replaced(msg: bytes, marker: bytes, raw: bytes) -> bytes:
    """Swap a same-length placeholder for raw bytes the builder cannot encode."""
    assert len(marker) == len(raw) and msg.count(marker) == 1
    return msg.replace(marker, raw)


def send_and_expect_hangup(target: Target, data: bytes) -> None:
    with registered(target.bus) as bad:
        name = bad.unique_name
        try:
            bad.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        received = assert_disconnected(bad)
        # Whatever came back before the hang-up, it was no success for this call.
        assert b"\x02" not in received[1:2]
    gone = target.witness.call("NameHasOwner", "s", (name,))
    assert gone.args() == [False]
    target.assert_recovered()


# -- garbage after authentication ----------------------------------------------

def test_garbage_after_begin(target: Target) -> None:
    with rw.RawPeer(target.bus.socket_path) as bad:
        bad.authenticate()
        bad.send(b"\xde\xad\xbe\xef" * 1024)
        assert assert_disconnected(bad) == b""
    target.assert_recovered()


def test_garbage_after_hello(target: Target) -> None:
    send_and_expect_hangup(target, b"\xde\xad\xbe\xef" * 1024)


@pytest.mark.parametrize("endian_byte", [b"X", b"\0", b"b", b"L"])
def test_bad_endian_byte(target: Target, endian_byte: bytes) -> None:
    send_and_expect_hangup(target, rw.build_message(rw.METHOD_CALL, 2, call_header(),
                                                    endian_byte=endian_byte))


@pytest.mark.parametrize("length", [2**31, 2**32 - 1])
@pytest.mark.parametrize("where", ["body", "header-fields"])
def test_huge_announced_length(target: Target, where: str, length: int) -> None:
    if where == "body":
        msg = rw.build_message(rw.METHOD_CALL, 2, call_header(signature="s"),
                               body_length=length)
    else:
        raw = bytearray(rw.build_message(rw.METHOD_CALL, 2, call_header()))
        struct.pack_into("<I", raw, 12, length)
        msg = bytes(raw)
    send_and_expect_hangup(target, msg + b"\0" * 65536)
    # The daemon refused from the first 16 bytes: it never tried to make room.
    assert rss_kib(target.pid) < target.before.rss_kib + 4096


# -- Hello ------------------------------------------------------------------

def test_call_before_hello(target: Target) -> None:
    with rw.RawPeer(target.bus.socket_path) as early:
        early.authenticate()
        early.send(rw.method_call(1, "RequestName", "su", ("com.example.Sneaky", 0)))
        assert assert_disconnected(early) == b""
    reply = target.witness.call("NameHasOwner", "s", ("com.example.Sneaky",))
    assert reply.args() == [False]
    target.assert_recovered()


def test_hello_twice(target: Target) -> None:
    with registered(target.bus) as twice:
        first = twice.unique_name
        reply = twice.call("Hello")
        assert reply.msg_type == rw.ERROR
        assert reply.error_name == "org.freedesktop.DBus.Error.Failed"
        # Still the same peer, still served.
        assert twice.call("GetNameOwner", "s", (first,)).args() == [first]
        for _ in range(100):
            twice.send(rw.method_call(twice.next_serial(), "Hello"))
        assert twice.call("GetId").msg_type == rw.METHOD_RETURN
    target.assert_recovered()


# -- invalid names, paths and signatures ---------------------------------------

@pytest.mark.parametrize("path", ["", "a", "//", "/a/", "/a//b", "/a-b", "/a.b", "/\u00e9"])
def test_invalid_object_path_in_header(target: Target, path: str) -> None:
    send_and_expect_hangup(target, rw.build_message(rw.METHOD_CALL, 2, call_header(path=path)))


def test_invalid_object_path_in_body(target: Target) -> None:
    fields = call_header(member="NameHasOwner", signature="o")
    send_and_expect_hangup(target, rw.build_message(rw.METHOD_CALL, 2, fields,
                                                    rw.marshal_body("o", ("/bad//path",))))


@pytest.mark.parametrize("field", ["member", "interface", "destination", "sender", "path"])
def test_invalid_utf8_in_header_name(target: Target, field: str) -> None:
    placeholders = {"member": "Zq9x", "interface": "com.Zq9x", "destination": "com.Zq9x",
                    "sender": ":1.Zq9x", "path": "/Zq9x"}
    msg = rw.build_message(rw.METHOD_CALL, 2, call_header(**{field: placeholders[field]}))
    send_and_expect_hangup(target, marker_replaced(msg, b"Zq9x", b"\xff\xfe\xc3\x28"))


def test_invalid_utf8_in_error_name(target: Target) -> None:
    msg = rw.build_message(rw.ERROR, 2, {rw.ERROR_NAME: "com.Zq9x.Err", rw.REPLY_SERIAL: 1,
                                         rw.DESTINATION: rw.DRIVER})
    send_and_expect_hangup(target, marker_replaced(msg, b"Zq9x", b"\xed\xa0\x80A"))


def test_invalid_utf8_in_bus_name_argument(target: Target) -> None:
    fields = call_header(member="RequestName", signature="su")
    msg = rw.build_message(rw.METHOD_CALL, 2, fields,
                           rw.marshal_body("su", ("com.Zq9x.Name", 0)))
    send_and_expect_hangup(target, marker_replaced(msg, b"Zq9x", b"\xc0\x80\xf8\x88"))


@pytest.mark.parametrize("signature,body", [
    ("a" * TOO_DEEP + "y", b"\0\0\0\0"),
    ("(" * TOO_DEEP + "y" + ")" * TOO_DEEP, b"\x07"),
    ("a(" * TOO_DEEP + "y" + ")" * TOO_DEEP, b"\0\0\0\0"),
], ids=["arrays", "structs", "arrays-of-structs"])
def test_signature_nested_too_deep(target: Target, signature: str, body: bytes) -> None:
    fields = {rw.PATH: "/x", rw.INTERFACE: "com.example.Deep", rw.MEMBER: "S",
              rw.SIGNATURE: signature}
    send_and_expect_hangup(target, rw.build_message(rw.SIGNAL, 2, fields, body))


def nested_variants(depth: int) -> bytes:
    """A body of signature 'v': a variant holding a variant ... holding a byte."""
    return b"\x01v\x00" * depth + b"\x01y\x00\x2a"


def test_variants_nested_too_deep_in_body(target: Target) -> None:
    fields = {rw.PATH: "/x", rw.INTERFACE: "com.example.Deep", rw.MEMBER: "S",
              rw.SIGNATURE: "v"}
    send_and_expect_hangup(target, rw.build_message(rw.SIGNAL, 2, fields,
                                                    nested_variants(VARIANT_NESTING)))


def test_variants_nested_too_deep_in_header(target: Target) -> None:
    """An unknown header field (which must be skipped) whose value nests variants."""
    msg = bytearray(rw.build_message(rw.METHOD_CALL, 2, call_header()))
    fields_len = struct.unpack_from("<I", msg, 12)[0]
    end = 16 + fields_len
    extra = b"\0" * (-end % 8) + b"\x77" + b"\x01v\x00" + nested_variants(VARIANT_NESTING)
    new_len = fields_len + len(extra)
    out = bytes(msg[:12]) + struct.pack("<I", new_len) + bytes(msg[16:end]) + extra
    out += b"\0" * (-len(out) % 8)
    send_and_expect_hangup(target, out)


# -- truncated messages left hanging ---------------------------------------------

def test_truncated_messages_left_hanging(target: Target) -> None:
    """Peers that announce 100 MiB and send 8 MiB, then go quiet: the daemon
    holds what it got (and not several copies), serves everyone meanwhile, and
    gives it all back when they leave."""
    header = rw.build_message(rw.SIGNAL, 2, {rw.PATH: "/x", rw.INTERFACE: "com.example.Half",
                                             rw.MEMBER: "S", rw.SIGNATURE: "ay"},
                              body_length=HANGING_ANNOUNCED)
    hanging = [registered(target.bus) for _ in range(HANGING_PEERS)]
    try:
        chunk = struct.pack("<I", HANGING_ANNOUNCED - 4) + b"\x55" * (HANGING_SENT - 4)
        for peer in hanging:
            peer.send(header + chunk)
        time.sleep(0.3)  # let the daemon read all of it
        assert_served_promptly(target.witness)
        held = rss_kib(target.pid) - target.before.rss_kib
        bound = HANGING_PEERS * HANGING_SENT // 1024 + HANGING_SLACK_KIB
        print(f"holding {held} KiB for {HANGING_PEERS} hanging peers")
        assert held <= bound, f"{held} KiB held for {HANGING_PEERS} x {HANGING_SENT} bytes"
        for peer in hanging:  # still connected, holding their half messages
            owned = target.witness.call("NameHasOwner", "s", (peer.unique_name,))
            assert owned.args() == [True]
        with registered(target.bus) as newcomer:
            assert newcomer.call("GetId").msg_type == rw.METHOD_RETURN
    finally:
        for peer in hanging:
            peer.close()
    target.assert_recovered()


# -- spoofing -------------------------------------------------------------------

@pytest.mark.parametrize("spoofed", [rw.DRIVER, ":1.1", "com.example.Someone"])
def test_spoofed_sender_on_signal_and_call(target: Target, spoofed: str) -> None:
    with registered(target.bus) as receiver, registered(target.bus) as liar:
        receiver.call("AddMatch", "s", ("type='signal',interface='com.example.Spoof'",))
        liar.send(rw.build_message(rw.SIGNAL, liar.next_serial(), {
            rw.PATH: "/x", rw.INTERFACE: "com.example.Spoof", rw.MEMBER: "S",
            rw.SENDER: spoofed}))
        liar.send(rw.build_message(rw.METHOD_CALL, liar.next_serial(), {
            rw.PATH: "/x", rw.INTERFACE: "com.example.Spoof", rw.MEMBER: "M",
            rw.DESTINATION: receiver.unique_name, rw.SENDER: spoofed}, flags=rw.NO_REPLY_EXPECTED))
        signal = receiver.read_message()
        call = receiver.read_message()
        assert (signal.msg_type, call.msg_type) == (rw.SIGNAL, rw.METHOD_CALL)
        assert signal.fields[rw.SENDER] == liar.unique_name
        assert call.fields[rw.SENDER] == liar.unique_name
    target.assert_recovered()
