"""Floods: connections from another user, a signal storm at a peer that never
reads, and a peer that never reads the replies to its own calls.

The flooding user is a forked child that dropped to uid 65534 ('nobody'); a
third uid (65533) and root must still get new connections served while it
holds its flood. Queues are capped at bootbus's 128 MiB per peer, past which
the slow reader is disconnected; the daemon must then give the memory back.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from integration import rawwire as rw

from .conftest import REPEAT_RSS_TOLERANCE_KIB, Target
from .peers import (
    NOBODY,
    THIRD_UID,
    ForeignUser,
    assert_disconnected,
    assert_served_promptly,
    registered,
)
from .procstat import PeakSampler

# bootbus's per-user bounds (bootbus/io/server.py), restated so that a change
# to them is a visible change to this test.
MAX_INCOMPLETE_PER_USER = 32
MAX_CONNECTIONS_PER_USER = 2048
MAX_OUTGOING_BYTES_PER_PEER = 128 * 1024 * 1024
# The flood: connections that never finish authenticating, and more
# authenticated connections than the per-user total.
INCOMPLETE_FLOOD = 200
COMPLETE_FLOOD = MAX_CONNECTIONS_PER_USER + 40
# The storm: signals of this size, enough of them to pass the queue cap.
STORM_SIGNAL_BYTES = 4 * 1024 * 1024
STORM_SIGNALS = MAX_OUTGOING_BYTES_PER_PEER // STORM_SIGNAL_BYTES + 8
# Memory a 128 MiB episode may leave in the daemon once the reader is gone,
# and what it may hold at the peak beyond the cap itself.
STORM_RSS_TOLERANCE_KIB = 4 * 1024
# 2,048 authenticated connections leave 3.5-4.5 MiB in Python's object allocator
# (arenas pinned by a few survivors; measured over ten runs, with gc.collect and
# malloc_trim after the flood). That is a one-off high-water mark, not a leak: the
# repeat of the episode (assert_repeatable) must add next to nothing on top.
COMPLETE_FLOOD_RSS_TOLERANCE_KIB = 6 * 1024
# The same after ~128 MiB of small replies (3.6 KiB each): freed small objects
# fragment Python's heap (malloc_trim does not help: measured +5.7 MiB after a
# 112 MiB episode, with and without it), so this bound is looser. Five rounds
# in a row measured +4.5, +5.6, +4.5, +4.6, +4.6 MiB over the warm baseline:
# no trend, but up to 3 MiB of noise between two rounds.
UNREAD_RSS_TOLERANCE_KIB = 8 * 1024
UNREAD_REPEAT_TOLERANCE_KIB = 4 * 1024
STORM_PEAK_SLACK_KIB = 64 * 1024
# Replies the non-reading caller asks for (Introspect of the driver is a few KiB).
# Connections one user makes one after the other (each closed before the next).
RECONNECTS = 3 * MAX_INCOMPLETE_PER_USER
UNREAD_CALL_BATCH = 2000
UNREAD_CALLS_MAX = 60_000


def assert_repeatable(target: Target, episode: Callable[[Target], None],
                      first_tolerance_kib: int,
                      repeat_tolerance_kib: int = REPEAT_RSS_TOLERANCE_KIB) -> None:
    """Run a big attack twice on one daemon.

    After the first, the daemon must be within first_tolerance_kib of its
    warmed-up baseline (the allocator may keep its high-water mark); after the
    second, within repeat_tolerance_kib of what the first left: anything
    more grows with every attack, which is a leak.
    """
    episode(target)
    target.assert_recovered(first_tolerance_kib)
    target.rebaseline()
    episode(target)
    target.assert_recovered(repeat_tolerance_kib)


def closed_by_peer(sock: socket.socket) -> bool:
    """True if the bus hung up on this connection (EOF or reset is readable)."""
    ready, _, _ = select.select([sock], [], [], 0)
    if not ready:
        return False
    try:
        return sock.recv(4096, socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except ConnectionResetError:
        return True


def bystander_served(path: str) -> Callable[[Callable[[dict[str, Any]], None]], None]:
    """An attack that is no attack: register, call, report how long it took."""
    def run(report: Callable[[dict[str, Any]], None]) -> None:
        start = time.monotonic()
        peer = rw.RawPeer(path)
        peer.authenticate()
        name = peer.hello()
        ok = peer.call("GetConnectionUnixUser", "s", (name,)).args()
        report({"took": time.monotonic() - start, "uid": ok[0]})
    return run


def assert_bystanders_served(target: Target) -> None:
    """Root and a third user both get a new connection served promptly."""
    start = time.monotonic()
    with registered(target.bus) as newcomer:
        assert newcomer.call("GetId").msg_type == rw.METHOD_RETURN
    assert time.monotonic() - start < 1.0
    with ForeignUser(THIRD_UID, bystander_served(target.bus.socket_path)) as third:
        got = third.wait_report()
    assert got["uid"] == THIRD_UID and got["took"] < 1.0, got
    assert_served_promptly(target.witness)


def incomplete_flood(path: str) -> Callable[[Callable[[dict[str, Any]], None]], None]:
    def run(report: Callable[[dict[str, Any]], None]) -> None:
        socks = []
        for i in range(INCOMPLETE_FLOOD):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5.0)
            sock.connect(path)
            if i % 2:
                try:
                    sock.sendall(b"\0AUTH EXTERN")  # half a line, then nothing
                except (BrokenPipeError, ConnectionResetError):
                    pass  # over the quota, and the bus was quicker to close it
            socks.append(sock)
        time.sleep(0.5)
        report({"open": sum(not closed_by_peer(s) for s in socks)})
        for sock in socks:
            sock.close()
    return run


def incomplete_flood_episode(target: Target) -> None:
    with ForeignUser(NOBODY, incomplete_flood(target.bus.socket_path)) as flood:
        got = flood.wait_report()
        assert got["open"] == MAX_INCOMPLETE_PER_USER, got
        assert_bystanders_served(target)


def test_incomplete_connection_flood_from_another_user(fresh_target: Target) -> None:
    assert_repeatable(fresh_target, incomplete_flood_episode, STORM_RSS_TOLERANCE_KIB)


def reconnect_often(path: str) -> Callable[[Callable[[dict[str, Any]], None]], None]:
    def run(report: Callable[[dict[str, Any]], None]) -> None:
        served = 0
        for _ in range(RECONNECTS):
            try:
                with rw.RawPeer(path) as peer:
                    peer.authenticate()
                    peer.hello()
                    served += 1
            except (ConnectionError, OSError):
                pass
        report({"served": served})
    return run


def test_user_reconnects_more_than_the_incomplete_quota(target: Target) -> None:
    """One connection at a time, many times: the quota is on connections
    still authenticating, not on how many a user ever made."""
    with ForeignUser(NOBODY, reconnect_often(target.bus.socket_path)) as user:
        assert user.wait_report() == {"served": RECONNECTS}
    target.assert_recovered()


def complete_flood(path: str) -> Callable[[Callable[[dict[str, Any]], None]], None]:
    def run(report: Callable[[dict[str, Any]], None]) -> None:
        peers, refused = [], 0
        for _ in range(COMPLETE_FLOOD):
            peer = rw.RawPeer(path)
            try:
                peer.authenticate()
                peer.hello()
            except (ConnectionError, OSError):
                refused += 1
                peer.close()
                continue
            peers.append(peer)
        report({"served": len(peers), "refused": refused})
        for peer in peers:
            peer.close()
    return run


def complete_flood_episode(target: Target) -> None:
    with (PeakSampler(target.pid) as peak,
          ForeignUser(NOBODY, complete_flood(target.bus.socket_path)) as flood):
        got = flood.wait_report()
        assert got == {"served": MAX_CONNECTIONS_PER_USER,
                       "refused": COMPLETE_FLOOD - MAX_CONNECTIONS_PER_USER}
        assert_bystanders_served(target)
    print(f"{MAX_CONNECTIONS_PER_USER} peers: peak {peak.peak_rss_kib - target.before.rss_kib}"
          " KiB over baseline")


def test_connection_flood_past_the_per_user_total(fresh_target: Target) -> None:
    assert_repeatable(fresh_target, complete_flood_episode, COMPLETE_FLOOD_RSS_TOLERANCE_KIB)


def storm_signal(serial: int) -> bytes:
    payload = b"\x5a" * STORM_SIGNAL_BYTES
    body = struct.pack("<I", len(payload)) + payload
    return rw.build_message(rw.SIGNAL, serial, {
        rw.PATH: "/storm", rw.INTERFACE: "com.example.Storm", rw.MEMBER: "Gust",
        rw.SIGNATURE: "ay"}, body)


def storm_episode(target: Target) -> None:
    reader = registered(target.bus)
    reader.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.call("AddMatch", "s", ("type='signal',interface='com.example.Storm'",))
    try:
        with registered(target.bus) as storm, PeakSampler(target.pid) as peak:
            for _ in range(STORM_SIGNALS):
                storm.send(storm_signal(storm.next_serial()))
            assert storm.call("GetId").msg_type == rw.METHOD_RETURN  # all routed by now
            assert_served_promptly(target.witness)
            owned = target.witness.call("NameHasOwner", "s", (reader.unique_name,))
            assert owned.args() == [False], "the slow reader was not disconnected"
            assert storm.call("GetId").msg_type == rw.METHOD_RETURN  # the sender is fine
        assert_disconnected(reader, timeout=10.0)
    finally:
        reader.close()
    over = peak.peak_rss_kib - target.before.rss_kib
    print(f"storm: peak {over} KiB over baseline")
    assert over <= MAX_OUTGOING_BYTES_PER_PEER // 1024 + STORM_PEAK_SLACK_KIB


def test_slow_reader_under_a_signal_storm(fresh_target: Target) -> None:
    assert_repeatable(fresh_target, storm_episode, STORM_RSS_TOLERANCE_KIB)


def unread_replies_episode(target: Target) -> None:
    caller = registered(target.bus)
    caller.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    assert caller.unique_name is not None
    name = caller.unique_name
    try:
        with PeakSampler(target.pid) as peak:
            sent = 0
            try:
                while sent < UNREAD_CALLS_MAX:
                    batch = b"".join(
                        rw.method_call(caller.next_serial(), "Introspect",
                                       interface="org.freedesktop.DBus.Introspectable")
                        for _ in range(UNREAD_CALL_BATCH))
                    caller.send(batch)
                    sent += UNREAD_CALL_BATCH
                    over = peak.peak_rss_kib - target.before.rss_kib
                    assert over <= MAX_OUTGOING_BYTES_PER_PEER // 1024 + STORM_PEAK_SLACK_KIB, (
                        f"{over} KiB over baseline after {sent} unread replies")
                    if target.witness.call("NameHasOwner", "s", (name,)).args() == [False]:
                        break
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert_served_promptly(target.witness)
        gone = target.witness.call("NameHasOwner", "s", (name,)).args()
        assert gone == [False], f"still connected after {sent} unread replies"
        print(f"unread replies: disconnected after {sent} calls, peak "
              f"{peak.peak_rss_kib - target.before.rss_kib} KiB over")
    finally:
        caller.close()


def test_peer_that_never_reads_its_replies(fresh_target: Target) -> None:
    """Replies are queued for their caller like anything else: past the cap,
    the caller that does not read them is disconnected. (Its own daemon: a
    failure here leaves the daemon hundreds of MiB larger.)"""
    assert_repeatable(fresh_target, unread_replies_episode, UNREAD_RSS_TOLERANCE_KIB,
                      UNREAD_REPEAT_TOLERANCE_KIB)
