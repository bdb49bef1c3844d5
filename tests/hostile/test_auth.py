"""Hostile peers before and during authentication: garbage, lies about the
uid, and auth lines that never end or never stop coming.

Each attacker must be answered with an error or a hang-up; the daemon must
keep serving the witness and give back what the attacker made it hold.
"""

from __future__ import annotations

import os

from integration import rawwire as rw

from .conftest import Target
from .peers import assert_disconnected, assert_served_promptly, registered

# The SASL bounds bootbus documents (bootbus/wire/sasl.py), restated here so a
# change to them is a visible change to this test.
MAX_AUTH_LINE = 16 * 1024
MAX_AUTH_COMMANDS = 64
# Peers holding a half auth line each, all at once.
HALF_LINE_PEERS = 20


def test_garbage_before_nul(target: Target) -> None:
    with rw.RawPeer(target.bus.socket_path) as bad:
        bad.send(b"GET / HTTP/1.1\r\nHost: bus\r\n\r\n" + os.urandom(4096))
        assert assert_disconnected(bad) == b""
    target.assert_recovered()


def test_binary_garbage_after_nul(target: Target) -> None:
    """Random bytes after the NUL: lines of junk get ERROR, and the peer is
    hung up on at the latest when a line or the command count runs over."""
    with rw.RawPeer(target.bus.socket_path) as bad:
        junk = bytes(b for b in os.urandom(200_000) if b not in (0x0D, 0x0A))
        bad.send(b"\0" + junk)
        sent = assert_disconnected(bad)
        assert b"OK" not in sent
    target.assert_recovered()


def test_wrong_uid_external_then_begin(target: Target) -> None:
    with rw.RawPeer(target.bus.socket_path) as liar:
        reply = liar.auth_external(uid=4242)
        assert reply.split()[0] == "REJECTED"
        liar.send(b"BEGIN\r\n" + rw.method_call(1, "Hello"))
        assert assert_disconnected(liar) == b""
    target.assert_recovered()


def test_wrong_uid_external_retried_forever(target: Target) -> None:
    with rw.RawPeer(target.bus.socket_path) as liar:
        line = b"AUTH EXTERNAL " + b"0".hex().encode() * 0 + str(4242).encode().hex().encode()
        liar.send(b"\0" + (line + b"\r\n") * (MAX_AUTH_COMMANDS * 4))
        received = assert_disconnected(liar)
        assert received.count(b"REJECTED") <= MAX_AUTH_COMMANDS
        assert b"OK" not in received
    target.assert_recovered()


def test_endless_auth_line(target: Target) -> None:
    """A line that never ends: hung up on once it passes the line bound."""
    with rw.RawPeer(target.bus.socket_path) as bad:
        bad.send(b"\0AUTH EXTERNAL ")
        try:
            for _ in range(64):  # 4 MiB, far past the bound, in 64 KiB pieces
                bad.send(b"3" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert assert_disconnected(bad) == b""
    target.assert_recovered()


def test_many_short_auth_lines(target: Target) -> None:
    with rw.RawPeer(target.bus.socket_path) as bad:
        try:
            bad.send(b"\0" + b"X\r\n" * 100_000)
        except (BrokenPipeError, ConnectionResetError):
            pass
        received = assert_disconnected(bad)
        assert received.count(b"ERROR") <= MAX_AUTH_COMMANDS
    target.assert_recovered()


def test_half_auth_lines_left_hanging(target: Target) -> None:
    """Peers that each hold a line just under the bound are served by the auth
    timeout, not by memory: the witness and a newcomer are served meanwhile."""
    hanging = [rw.RawPeer(target.bus.socket_path) for _ in range(HALF_LINE_PEERS)]
    try:
        for peer in hanging:
            peer.send(b"\0AUTH EXTERNAL " + b"3" * (MAX_AUTH_LINE - 64))
        assert_served_promptly(target.witness)
        with registered(target.bus) as newcomer:
            assert newcomer.call("GetId").msg_type == rw.METHOD_RETURN
        held_kib = HALF_LINE_PEERS * MAX_AUTH_LINE // 1024
        # They are held, but not copied many times over.
        grown = target.before.rss_kib
        from .procstat import rss_kib
        assert rss_kib(target.pid) - grown < 4 * held_kib + 1024
    finally:
        for peer in hanging:
            peer.close()
    target.assert_recovered()


def test_fds_during_authentication(target: Target) -> None:
    import socket
    with rw.RawPeer(target.bus.socket_path) as bad:
        r, w = os.pipe()
        try:
            bad.sock.sendmsg([b"\0AUTH EXTERNAL "], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                      bytes(memoryview(
                                                          __import__("array").array(
                                                              "i", [r, w] * 100))))])
        finally:
            os.close(r)
            os.close(w)
        assert assert_disconnected(bad) == b""
    target.assert_recovered()
