"""Server._flush against a socket that takes a few bytes at a time: every byte goes out
once and in order, fds go with the first byte of their message, the queue's byte and
fd counts return to zero, and the peer is watched for writability exactly while
something is left."""

from __future__ import annotations

import os
import select
import socket

import pytest

from bootbus.bus.peer import OutFrame, Peer, SharedFds
from bootbus.bus.router import Bus
from bootbus.io.server import IOV_MAX, Connection, Server


class TrickleSocket:
    """Takes ``budgets[i]`` bytes on the i-th write, then is full (EAGAIN) until told."""

    def __init__(self, budgets: list[int]) -> None:
        self._real, self._other = socket.socketpair()
        self.budgets = budgets
        self.written = b""
        self.fds_at: list[tuple[int, int]] = []  # (offset of the write, fd count)
        self.buffers: list[int] = []  # buffers offered per write
        self.error: OSError | None = None  # raised by the next write

    def fileno(self) -> int:
        return self._real.fileno()

    def setblocking(self, flag: bool) -> None:
        self._real.setblocking(flag)

    def _take(self, bufs: list[bytes | memoryview], fds: int) -> int:
        if self.error is not None:
            raise self.error
        if not self.budgets:
            raise BlockingIOError
        self.buffers.append(len(bufs))
        data = b"".join(bytes(buf) for buf in bufs)[:self.budgets.pop(0)]
        if fds:
            self.fds_at.append((len(self.written), fds))
        self.written += data
        return len(data)

    def send(self, data: bytes) -> int:
        return self._take([data], 0)

    def sendmsg(self, bufs: list[bytes | memoryview],
                anc: list[tuple[int, int, bytes]] = ()) -> int:  # type: ignore[assignment]
        return self._take(bufs, sum(len(item[2]) // 4 for item in anc))

    def close(self) -> None:
        self._real.close()
        self._other.close()


def _serving(budgets: list[int]) -> tuple[Server, Peer, TrickleSocket, Connection]:
    bus = Bus(bus_id="0" * 32)
    server = Server(bus, [])
    peer = bus.add_peer(0, os.getpid())
    bus.authenticated(peer, True)
    bus.assign_unique_name(peer)
    sock = TrickleSocket(list(budgets))
    return server, peer, sock, server.adopt(sock, peer)  # type: ignore[arg-type]


def _queue(peer: Peer, frames: list[OutFrame]) -> bytes:
    peer.outq.extend(frames)
    size = sum(frame.size for frame in frames)
    fds = sum(len(frame.fds.fds) for frame in frames if frame.fds is not None)
    peer.out_bytes = peer.user.out_bytes = size
    peer.out_fds = peer.user.out_fds = fds
    return b"".join(bytes(buf) for frame in frames for buf in frame.bufs)


@pytest.mark.parametrize("budgets", [[1000], [12, 3, 100], [1] * 64, [9, 1, 10, 10, 10]])
def test_a_trickling_socket_gets_every_byte_once_and_fds_with_their_first(
        budgets: list[int]) -> None:
    server, peer, sock, conn = _serving(budgets)
    read_end, write_end = os.pipe()
    shared = SharedFds([read_end])
    shared.refs = 1
    expected = _queue(peer, [OutFrame([b"a" * 10], None, 10),
                             OutFrame([b"b" * 5, b"c" * 5], None, 10),
                             OutFrame([b"d" * 6], shared, 6), OutFrame([b"e" * 7], None, 7)])
    try:
        for _ in range(len(budgets) + len(expected)):  # (each wakeup writes a byte at least)
            server._flush(conn)
            assert bool(conn.events & select.EPOLLOUT) == bool(peer.outq)
            if not peer.outq:
                break
            if not sock.budgets:  # the socket drained: one byte per wakeup from here
                sock.budgets.append(1)
        assert sock.written == expected
        assert sock.fds_at == [(expected.index(b"d"), 1)]
        assert (peer.out_bytes, peer.out_fds, peer.user.out_bytes, peer.user.out_fds) == (
            0, 0, 0, 0)
        assert not conn.events & select.EPOLLOUT
        with pytest.raises(OSError):
            os.fstat(read_end)  # sent to its only recipient: closed
    finally:
        os.close(write_end)
        sock.close()
        server.epoll.close()


def test_a_lone_frame_with_fds_goes_with_them_and_a_shared_fd_stays_for_the_others() -> None:
    server, peer, sock, conn = _serving([1000])
    read_end, write_end = os.pipe()
    shared = SharedFds([read_end])
    shared.refs = 2  # another recipient's copy is still queued
    try:
        _queue(peer, [OutFrame([b"f" * 8], shared, 8)])  # one frame, one buffer, fds
        server._flush(conn)
        assert sock.written == b"f" * 8 and sock.fds_at == [(0, 1)]
        assert (peer.out_fds, peer.user.out_fds, shared.refs) == (0, 0, 1)
        os.fstat(read_end)  # still open: the other copy needs it
    finally:
        os.close(read_end)
        os.close(write_end)
        sock.close()
        server.epoll.close()


def test_one_write_offers_at_most_iov_max_buffers() -> None:
    server, peer, sock, conn = _serving([1 << 20] * 4)
    try:
        expected = _queue(peer, [OutFrame([b"x", b"y"], None, 2) for _ in range(IOV_MAX)])
        server._flush(conn)
        assert sock.written == expected and not peer.outq
        assert max(sock.buffers) <= IOV_MAX and len(sock.buffers) >= 2
    finally:
        sock.close()
        server.epoll.close()


def test_a_write_error_disconnects_the_peer_and_says_why() -> None:
    server, peer, sock, conn = _serving([1000])
    gone: list[tuple[Peer, str]] = []
    server.on_disconnect.append(lambda who, why: gone.append((who, why)))
    _queue(peer, [OutFrame([b"z" * 4], None, 4)])
    sock.error = BrokenPipeError(32, "Broken pipe")
    try:
        server._flush(conn)
        assert gone == [(peer, "write failed: Broken pipe")]
        assert peer.id not in server.by_peer
    finally:
        sock.close()
        server.epoll.close()
