"""Fd floods: messages that announce fds they do not carry, fds that arrive
without a message to use them, and many fds sent to a peer that never reads.

Each must end in an error or a hang-up for the attacker; the daemon must keep
serving the witness and close every fd it was handed (its open fds return to
the count it had before).
"""

from __future__ import annotations

import array
import os
import resource
import socket
import time

from integration import rawwire as rw

from .conftest import Target
from .peers import assert_disconnected, assert_served_promptly, registered, registered_with_fds
from .procstat import PeakSampler, fd_count

SCM_MAX_FD = 253  # the kernel's bound on fds in one sendmsg
# Messages of SCM_MAX_FD fds each sent to a peer that never reads: together
# they are more fds than the daemon may open (its RLIMIT_NOFILE is checked).
FLOOD_MESSAGES = 600
# Open fds the daemon may hold for one non-reading peer and its sender
# (bootbus's bound on fds queued ahead of a message is 4 x 253).
MAX_HELD_FDS = 4 * SCM_MAX_FD


def send_with_fds(peer: rw.RawPeer, data: bytes, fds: list[int]) -> None:
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
    sent = peer.sock.sendmsg([data], anc)
    if sent < len(data):
        peer.send(data[sent:])


def signal_with_fds(serial: int, count: int, destination: str | None = None) -> bytes:
    fields: dict[int, object] = {rw.PATH: "/x", rw.INTERFACE: "com.example.Fds",
                                 rw.MEMBER: "S", rw.UNIX_FDS: count}
    if destination:
        fields[rw.DESTINATION] = destination
    return rw.build_message(rw.SIGNAL, serial, fields)


def test_more_fds_announced_than_the_bound(target: Target) -> None:
    with registered_with_fds(target.bus) as bad:
        bad.send(signal_with_fds(bad.next_serial(), SCM_MAX_FD + 1))
        assert_disconnected(bad)
    target.assert_recovered()


def test_fds_announced_but_not_sent(target: Target) -> None:
    with registered_with_fds(target.bus) as bad:
        bad.send(signal_with_fds(bad.next_serial(), 10))
        assert_disconnected(bad)
    target.assert_recovered()


def test_fds_without_messages(target: Target) -> None:
    """Fds ride on single bytes of a message that never completes."""
    r, w = os.pipe()
    try:
        with registered_with_fds(target.bus) as bad:
            msg = signal_with_fds(bad.next_serial(), 0)
            try:
                for i in range(min(len(msg) - 1, 12)):
                    send_with_fds(bad, msg[i:i + 1], [r, w] * (SCM_MAX_FD // 2))
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert_disconnected(bad)
    finally:
        os.close(r)
        os.close(w)
    target.assert_recovered()


def test_fds_from_a_peer_that_did_not_negotiate_them(target: Target) -> None:
    """The daemon reads such a peer without ancillary data, so the kernel closes what
    it sends: fds on a message that does not announce them are simply gone, and a
    message that announces some (that never arrived) ends the connection."""
    r, w = os.pipe()
    try:
        with registered(target.bus) as plain:
            for _ in range(20):
                msg = signal_with_fds(plain.next_serial(), 0)
                send_with_fds(plain, msg, [r, w] * (SCM_MAX_FD // 2))
            assert plain.call("GetId").msg_type == rw.METHOD_RETURN  # still served
            assert fd_count(target.pid) <= target.before.fds + 1  # its socket, none of the fds
            send_with_fds(plain, signal_with_fds(plain.next_serial(), 2), [r, w])
            assert_disconnected(plain)
    finally:
        os.close(r)
        os.close(w)
    target.assert_recovered()


def test_fds_to_peers_that_cannot_take_them(target: Target) -> None:
    """Messages full of fds for a peer that did not negotiate fd passing, and
    broadcasts nobody listens to: the daemon closes every one of them."""
    r, w = os.pipe()
    try:
        with registered_with_fds(target.bus) as sender, registered(target.bus) as plain:
            for _ in range(20):
                call = rw.build_message(rw.METHOD_CALL, sender.next_serial(), {
                    rw.PATH: "/x", rw.INTERFACE: "com.example.Fds", rw.MEMBER: "M",
                    rw.DESTINATION: plain.unique_name, rw.UNIX_FDS: SCM_MAX_FD})
                send_with_fds(sender, call, [r] * SCM_MAX_FD)
                reply = sender.read_reply(sender._serial)
                assert reply.msg_type == rw.ERROR
                send_with_fds(sender, signal_with_fds(sender.next_serial(), SCM_MAX_FD),
                              [w] * SCM_MAX_FD)
            assert sender.call("GetId").msg_type == rw.METHOD_RETURN
    finally:
        os.close(r)
        os.close(w)
    target.assert_recovered()


def test_fd_flood_to_a_peer_that_never_reads(fresh_target: Target) -> None:
    """An accomplice that never reads is sent far more fds than the daemon may
    open. The daemon must refuse or hang up before it runs out of fds: a bus
    out of fds can accept no new client. (Its own daemon: it may not survive.)"""
    target = fresh_target
    r, w = os.pipe()
    sink = registered_with_fds(target.bus)
    sink.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    errors = 0
    try:
        with registered_with_fds(target.bus) as sender, PeakSampler(target.pid) as peak:
            sent = 0
            try:
                for sent in range(FLOOD_MESSAGES):
                    msg = signal_with_fds(sender.next_serial(), SCM_MAX_FD, sink.unique_name)
                    send_with_fds(sender, msg, [r] * SCM_MAX_FD)
            except (BrokenPipeError, ConnectionResetError):
                errors += 1
            time.sleep(0.3)
            target.bus.assert_alive()
            with registered(target.bus) as newcomer:  # the daemon can still accept
                assert newcomer.call("GetId").msg_type == rw.METHOD_RETURN
            assert_served_promptly(target.witness)
            owned = target.witness.call("NameHasOwner", "s", (sink.unique_name,))
            assert owned.args() == [False], "the peer that does not read is still connected"
        print(f"peak fds {peak.peak_fds}, before {target.before.fds}, {sent} sent, {errors}")
        assert peak.peak_fds <= target.before.fds + MAX_HELD_FDS, (
            f"the daemon held {peak.peak_fds} fds for one peer that does not read "
            f"(it had {target.before.fds}; bound {MAX_HELD_FDS} more)")
    finally:
        sink.close()
        os.close(r)
        os.close(w)
    target.assert_recovered()


# Head-room above the daemon's open fds when its fd limit is lowered, and the
# connections then opened to use it all up (the rest wait in the backlog).
OUT_OF_FDS_HEADROOM = 24
OUT_OF_FDS_CONNECTIONS = 40
# Long enough for the daemon's once-a-second timers (journal reconnect,
# authentication timeouts) to run while it has no fd to spare.
OUT_OF_FDS_HOLD_S = 2.5
# CPU seconds the daemon may burn while out of fds and idle (not a busy loop).
OUT_OF_FDS_MAX_CPU_S = 0.5


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_daemon_out_of_fds_survives(fresh_target: Target) -> None:
    """Whatever exhausts the daemon's fds (many clients, or H1), the bus must
    live through it without spinning, and serve new clients once fds free up."""
    target = fresh_target
    limit = fd_count(target.pid) + OUT_OF_FDS_HEADROOM
    resource.prlimit(target.pid, resource.RLIMIT_NOFILE, (limit, limit))
    crowd = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
             for _ in range(OUT_OF_FDS_CONNECTIONS)]
    try:
        for sock in crowd:
            sock.settimeout(1.0)
            sock.connect(target.bus.socket_path)
        time.sleep(0.3)
        assert fd_count(target.pid) >= limit - 1, "the daemon did not run out of fds"
        cpu_before = cpu_seconds(target.pid)
        time.sleep(OUT_OF_FDS_HOLD_S)
        target.bus.assert_alive()
        spent = cpu_seconds(target.pid) - cpu_before
        assert spent < OUT_OF_FDS_MAX_CPU_S, (
            f"the daemon burnt {spent:.2f}s of CPU in {OUT_OF_FDS_HOLD_S}s while out of fds")
        assert_served_promptly(target.witness)
    finally:
        for sock in crowd:
            sock.close()
    time.sleep(0.3)
    target.bus.assert_alive()
    with registered(target.bus) as newcomer:
        assert newcomer.call("GetId").msg_type == rw.METHOD_RETURN
    target.assert_recovered()
