"""Hostile peers on raw sockets: each is refused or disconnected, and a
well-behaved client connected before the attack is still served afterwards.

The attacks are built with rawwire.py, which shares no code with bootbus. The
expected reaction is dbus-daemon's unless a test says why bootbus differs.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable

import dbus
import pytest

from . import rawwire as rw
from .buses import Bus
from .peers import DRIVER, Peer, member

# How many rejected AUTH attempts a bus may allow before it must hang up
# (the spec: "if the client is rejected too many times the server must disconnect").
MAX_AUTH_ATTEMPTS_TRIED = 100
# Idle or stalled connections held open while a new client must still get in.
STALLED_PEERS = 20


@pytest.fixture
def witness(connect: Callable[..., Peer]) -> Peer:
    """A good client, connected before the attack, watching names come and go."""
    peer = connect()
    peer.add_match(f"type='signal',sender='{DRIVER}',member='NameOwnerChanged'")
    return peer


def assert_still_served(bus: Bus, witness: Peer) -> None:
    bus.assert_alive()
    assert witness.driver_ok("NameHasOwner", "s", (witness.unique_name,)) == (True,)
    assert witness.unique_name in witness.driver_ok("ListNames")[0]


def assert_forgotten(witness: Peer, unique_name: str) -> None:
    """The bus dropped the peer: it announced the unique name's end."""
    gone = witness.wait_for(lambda m: member(m) == "NameOwnerChanged"
                            and m.body == (unique_name, unique_name, ""))
    assert gone is not None
    assert witness.driver_ok("NameHasOwner", "s", (unique_name,)) == (False,)


def registered_peer(bus: Bus) -> rw.RawPeer:
    peer = rw.RawPeer(bus.socket_path)
    peer.authenticate()
    peer.hello()
    return peer


def call_header(**fields: object) -> dict[int, object]:
    base: dict[int, object] = {rw.PATH: rw.DRIVER_PATH, rw.INTERFACE: rw.DRIVER,
                               rw.MEMBER: "GetId", rw.DESTINATION: rw.DRIVER}
    base.update({getattr(rw, k.upper()): v for k, v in fields.items()})
    return {k: v for k, v in base.items() if v is not None}


# -- before and during authentication ------------------------------------------

def test_first_byte_not_nul(bus: Bus, witness: Peer) -> None:
    with rw.RawPeer(bus.socket_path) as bad:
        bad.send(b"GARBAGE\r\nAUTH EXTERNAL 30\r\n\xff\xfe")
        assert bad.wait_closed() == b""
    assert_still_served(bus, witness)


def test_unknown_auth_command_gets_error(bus: Bus, witness: Peer) -> None:
    """The spec: unknown commands get ERROR, not a disconnect; auth may go on."""
    with rw.RawPeer(bus.socket_path) as odd:
        odd.send(b"\0HELLO THERE\r\n")
        assert odd.sasl_line().startswith("ERROR")
        odd.send(b"AUTH EXTERNAL " + str(os.getuid()).encode().hex().encode() + b"\r\n")
        assert odd.sasl_line().startswith("OK ")
        odd.send(b"BEGIN\r\n")
        assert odd.hello().startswith(":")
    assert_still_served(bus, witness)


def test_overlong_auth_line(bus: Bus, witness: Peer) -> None:
    with rw.RawPeer(bus.socket_path) as bad:
        bad.send(b"\0" + bytes(range(1, 256)) * 300)  # 76 KiB, no line end
        assert bad.wait_closed() == b""
    assert_still_served(bus, witness)


def test_external_with_wrong_uid(bus: Bus, witness: Peer) -> None:
    other_uid = 65534 if os.getuid() == 0 else 0
    with rw.RawPeer(bus.socket_path) as liar:
        reply = liar.auth_external(uid=other_uid)
        assert reply.split()[0] == "REJECTED" and "EXTERNAL" in reply.split()[1:]
        # BEGIN while still unauthenticated ends the conversation, silently.
        liar.send(b"BEGIN\r\n" + rw.method_call(1, "Hello"))
        assert liar.wait_closed() == b""
    assert_still_served(bus, witness)


def test_repeated_rejections_disconnect(bus: Bus, witness: Peer) -> None:
    other_uid = 65534 if os.getuid() == 0 else 0
    with rw.RawPeer(bus.socket_path) as liar:
        liar.send(b"\0")
        with pytest.raises(ConnectionError):
            for _ in range(MAX_AUTH_ATTEMPTS_TRIED):
                liar.send(b"AUTH EXTERNAL " + str(other_uid).encode().hex().encode() + b"\r\n")
                assert liar.sasl_line().startswith("REJECTED")
    assert_still_served(bus, witness)


def test_stalled_peers_do_not_block_others(bus: Bus, witness: Peer,
                                           connect: Callable[..., Peer]) -> None:
    stalled = [rw.RawPeer(bus.socket_path) for _ in range(STALLED_PEERS)]
    try:
        for i, peer in enumerate(stalled):
            if i % 2:
                peer.send(b"\0AUTH EXTERN")  # half a line, then nothing
        newcomer = connect()
        assert newcomer.driver_ok("GetNameOwner", "s", (DRIVER,)) == (DRIVER,)
        assert_still_served(bus, witness)
    finally:
        for peer in stalled:
            peer.close()


# -- after authentication ------------------------------------------------------

def test_garbage_after_hello(bus: Bus, witness: Peer) -> None:
    with registered_peer(bus) as bad:
        bad.send(b"\xde\xad\xbe\xef" * 64)
        bad.wait_closed()
        assert bad.unique_name is not None
        assert_forgotten(witness, bad.unique_name)
    assert_still_served(bus, witness)


def test_garbage_after_begin_before_hello(bus: Bus, witness: Peer) -> None:
    with rw.RawPeer(bus.socket_path) as bad:
        bad.authenticate()
        bad.send(b"\xde\xad\xbe\xef" * 64)
        assert bad.wait_closed() == b""
    assert_still_served(bus, witness)


def test_truncated_message_then_close(bus: Bus, witness: Peer) -> None:
    bad = registered_peer(bus)
    call = rw.method_call(bad.next_serial(), "GetId")
    bad.send(call[:len(call) - 3])
    bad.close()
    assert bad.unique_name is not None
    assert_forgotten(witness, bad.unique_name)
    assert_still_served(bus, witness)


def test_truncated_message_then_half_close(bus: Bus, witness: Peer) -> None:
    with registered_peer(bus) as bad:
        call = rw.method_call(bad.next_serial(), "GetId")
        bad.send(call[:20])
        bad.sock.shutdown(socket.SHUT_WR)  # the bus sees EOF mid-message
        bad.wait_closed()
        assert bad.unique_name is not None
        assert_forgotten(witness, bad.unique_name)
    assert_still_served(bus, witness)


def test_method_call_before_hello(bus: Bus, witness: Peer) -> None:
    with rw.RawPeer(bus.socket_path) as early:
        early.authenticate()
        early.send(rw.method_call(1, "RequestName", "su", ("com.example.Sneaky", 0)))
        if bus.kind == "dbus-daemon":
            # dbus-daemon answers AccessDenied and keeps the connection (until
            # its auth timeout), so the peer may still say Hello.
            reply = early.read_reply(1)
            assert reply.msg_type == rw.ERROR
            assert reply.error_name == "org.freedesktop.DBus.Error.AccessDenied"
            assert early.hello().startswith(":")
        else:
            # bootbus does what the specification says: "it will be
            # disconnected from the bus".
            assert early.wait_closed() == b""
    assert witness.driver_ok("NameHasOwner", "s", ("com.example.Sneaky",)) == (False,)
    assert_still_served(bus, witness)


@pytest.mark.parametrize("where", ["body", "header-fields"])
def test_header_announcing_2gib(bus: Bus, witness: Peer, where: str) -> None:
    with registered_peer(bus) as bad:
        if where == "body":
            msg = rw.build_message(rw.METHOD_CALL, 2, call_header(signature="s"),
                                   body_length=2**31)
        else:
            msg = bytearray(rw.build_message(rw.METHOD_CALL, 2, call_header()))
            struct.pack_into("<I", msg, 12, 2**31)
        bad.send(bytes(msg) + b"\0" * 4096)
        bad.wait_closed()
        assert bad.unique_name is not None
        assert_forgotten(witness, bad.unique_name)
    assert_still_served(bus, witness)


@pytest.mark.parametrize("endian_byte", [b"X", b"\0", b"b"])
def test_bad_endianness_byte(bus: Bus, witness: Peer, endian_byte: bytes) -> None:
    with registered_peer(bus) as bad:
        bad.send(rw.build_message(rw.METHOD_CALL, 2, call_header(), endian_byte=endian_byte))
        bad.wait_closed()
        assert bad.unique_name is not None
        assert_forgotten(witness, bad.unique_name)
    assert_still_served(bus, witness)


def test_bad_protocol_version(bus: Bus, witness: Peer) -> None:
    """The spec: a major protocol version mismatch must disconnect."""
    with registered_peer(bus) as bad:
        bad.send(rw.build_message(rw.METHOD_CALL, 2, call_header(), version=2))
        bad.wait_closed()
        assert bad.unique_name is not None
        assert_forgotten(witness, bad.unique_name)
    assert_still_served(bus, witness)


@pytest.mark.parametrize("fields", [
    {"member": None},
    {"path": None},
    {"path": "/org/freedesktop/DBus/Local"},
    {"interface": "org.freedesktop.DBus.Local"},
], ids=["no-member", "no-path", "local-path", "local-interface"])
def test_invalid_or_reserved_header(bus: Bus, witness: Peer, fields: dict[str, object]) -> None:
    with registered_peer(bus) as bad:
        bad.send(rw.build_message(rw.METHOD_CALL, 2, call_header(**fields)))
        bad.wait_closed()
        assert bad.unique_name is not None
        assert_forgotten(witness, bad.unique_name)
    assert_still_served(bus, witness)


def test_big_endian_peer_is_served(bus: Bus) -> None:
    with registered_peer(bus) as peer:
        peer.send(rw.build_message(rw.METHOD_CALL, 9, call_header(member="GetNameOwner",
                                                                   signature="s"),
                                   rw.marshal_body("s", (rw.DRIVER,), ">"), endian_byte=b"B"))
        reply = peer.read_reply(9)
    assert reply.msg_type == rw.METHOD_RETURN
    assert reply.fields[rw.REPLY_SERIAL] == 9
    assert reply.args() == [rw.DRIVER]


INVALID_UTF8_STRING = b"\x03\x00\x00\x00\xff\xfe\xfd\x00"


def test_invalid_utf8_to_the_driver(bus: Bus, witness: Peer) -> None:
    with registered_peer(bus) as bad:
        bad.send(rw.build_message(rw.METHOD_CALL, 2, call_header(member="NameHasOwner",
                                                                 signature="s"),
                                  INVALID_UTF8_STRING))
        bad.wait_closed()  # both validate every body and hang up on the sender
    assert_still_served(bus, witness)


def test_invalid_utf8_broadcast_does_not_hurt_subscribers(bus: Bus, witness: Peer) -> None:
    """A broadcast with an invalid string must not reach a libdbus subscriber:
    libdbus validates what it receives and drops its own connection if a bus
    hands it an invalid message, so one bad peer would cut off every client."""
    subscriber = dbus.bus.BusConnection(bus.address)
    try:
        subscriber.add_match_string("type='signal',interface='com.example.Bad'")
        assert subscriber.name_has_owner(DRIVER)  # the match is in place
        with registered_peer(bus) as bad:
            bad.send(rw.build_message(rw.SIGNAL, 2, {
                rw.PATH: "/x", rw.INTERFACE: "com.example.Bad", rw.MEMBER: "S",
                rw.SIGNATURE: "s"}, INVALID_UTF8_STRING))
            try:  # dbus-daemon hangs up on the sender; dropping the signal would do too
                bad.call("GetId")
            except ConnectionError:
                pass
        # The subscriber must still be connected and served.
        assert subscriber.name_has_owner(DRIVER)
        assert subscriber.get_unique_name() in subscriber.list_names()
    finally:
        subscriber.close()
    assert_still_served(bus, witness)
