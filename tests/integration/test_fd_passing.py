"""Unix fds cross the bus: in a method call, in a reply, several at once."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from jeepney import Message, new_method_return
from jeepney.fds import FileDescriptor

from .buses import Bus
from .peers import Peer, Service, error_name

SERVICE = "com.example.Fds"
IFACE = "com.example.Fds"


@contextmanager
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    try:
        yield r, w
    finally:
        for fd in (r, w):
            try:
                os.close(fd)
            except OSError:
                pass  # already closed by the test on purpose


@contextmanager
def fd_service(bus: Bus, *, enable_fds: bool = True) -> Iterator[Service]:
    """A service whose Write(h..., s) writes s to each fd it receives, then
    replies with the read end of a fresh pipe holding "reply:" + s."""
    reply_fds: list[int] = []  # closed once the service has sent them

    def write_and_pipe(msg: Message) -> Message:
        *fds, text = msg.body
        for fd in fds:
            with fd.to_file("wb") as f:
                f.write(text.encode())
        r, w = os.pipe()
        os.write(w, b"reply:" + text.encode())
        os.close(w)
        reply_fds.append(r)
        return new_method_return(msg, "h", (r,))

    try:
        with Service(bus.address, {"Write": write_and_pipe}, name=SERVICE,
                     enable_fds=enable_fds) as service:
            yield service
    finally:
        for fd in reply_fds:
            os.close(fd)


def read_all(fd: int) -> bytes:
    out = b""
    while chunk := os.read(fd, 65536):
        out += chunk
    return out


def test_fd_in_call_and_in_reply(bus: Bus, connect: Callable[..., Peer]) -> None:
    caller = connect(enable_fds=True)
    with fd_service(bus), \
            pipe() as (r, w):
        reply = caller.call(SERVICE, "/fds", IFACE, "Write", "hs", (w, "across the bus"))
        os.close(w)  # the service's copy was closed after writing: EOF follows
        assert read_all(r) == b"across the bus"
    assert error_name(reply) is None, reply.body
    (returned,) = reply.body
    assert isinstance(returned, FileDescriptor)
    with returned.to_file("rb") as f:
        assert f.read() == b"reply:across the bus"


def test_three_fds_in_one_message(bus: Bus, connect: Callable[..., Peer]) -> None:
    caller = connect(enable_fds=True)
    with fd_service(bus), \
            pipe() as (r1, w1), pipe() as (r2, w2), pipe() as (r3, w3):
        reply = caller.call(SERVICE, "/fds", IFACE, "Write", "hhhs", (w1, w2, w3, "x3"))
        for w in (w1, w2, w3):
            os.close(w)
        assert [read_all(r) for r in (r1, r2, r3)] == [b"x3"] * 3
    (returned,) = reply.body
    returned.close()


def test_fd_to_a_peer_without_fd_support(bus: Bus, connect: Callable[..., Peer]) -> None:
    """A peer that did not negotiate fd passing must never be handed one: the
    bus refuses to deliver and answers the sender with NotSupported."""
    caller = connect(enable_fds=True)
    with fd_service(bus, enable_fds=False) as service, \
            pipe() as (_r, w):
        reply = caller.call(SERVICE, "/fds", IFACE, "Write", "hs", (w, "never"))
    assert error_name(reply) == "org.freedesktop.DBus.Error.NotSupported", reply.body
    assert service.calls == []
