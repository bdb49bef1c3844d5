"""Server._flush against a socket that takes a few bytes at a time: every byte goes out
once and in order, fds go with the first byte of their message, the queue's byte and
fd counts return to zero, and the peer is watched for writability exactly while
something is left."""

from __future__ import annotations

import os
import select
import socket

import pytest

from bootbus.bus.peer import OutFrame, SharedFds
from bootbus.bus.router import Bus
from bootbus.io.server import Server


class TrickleSocket:
    """Takes ``budgets[i]`` bytes on the i-th write, then is full (EAGAIN) until told."""

    def __init__(self, budgets: list[int]) -> None:
        self._real, self._other = socket.socketpair()
        self.budgets = budgets
        self.written = b""
        self.fds_at: list[tuple[int, int]] = []  # (offset of the write, fd count)

    def fileno(self) -> int:
        return self._real.fileno()

    def setblocking(self, flag: bool) -> None:
        self._real.setblocking(flag)

    def _take(self, bufs: list[bytes | memoryview], fds: int) -> int:
        if not self.budgets:
            raise BlockingIOError
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


@pytest.mark.parametrize("budgets", [[1000], [12, 3, 100], [1] * 64, [9, 1, 10, 10, 10]])
def test_a_trickling_socket_gets_every_byte_once_and_fds_with_their_first(
        budgets: list[int]) -> None:
    bus = Bus(bus_id="0" * 32)
    server = Server(bus, [])
    peer = bus.add_peer(0, os.getpid())
    bus.authenticated(peer, True)
    bus.assign_unique_name(peer)
    sock = TrickleSocket(list(budgets))
    conn = server.adopt(sock, peer)  # type: ignore[arg-type]
    read_end, write_end = os.pipe()
    shared = SharedFds([read_end])
    shared.refs = 1
    frames = [OutFrame([b"a" * 10], None, 10), OutFrame([b"b" * 5, b"c" * 5], None, 10),
              OutFrame([b"d" * 6], shared, 6), OutFrame([b"e" * 7], None, 7)]
    expected = b"a" * 10 + b"b" * 5 + b"c" * 5 + b"d" * 6 + b"e" * 7
    peer.outq.extend(frames)
    peer.out_bytes = peer.user.out_bytes = len(expected)
    peer.out_fds = peer.user.out_fds = 1
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
