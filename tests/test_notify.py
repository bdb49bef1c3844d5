"""sd_notify against a real datagram socket standing in for the service manager."""

from __future__ import annotations

import array
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootbus.io.notify import STATUS_MAX, Notifier, NotifyError, notify_address


class Manager:
    """The receiving end of $NOTIFY_SOCKET."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        self.sock.bind(address)

    def receive(self) -> tuple[bytes, list[int]]:
        data, ancdata, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(16 * 4))
        fds: list[int] = []
        for level, kind, raw in ancdata:
            assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
            fds.extend(array.array("i", raw[: len(raw) - len(raw) % 4]))
        return data, fds

    def nothing_more(self) -> bool:
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            return True
        return False


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[Manager]:
    m = Manager(str(tmp_path / "notify"))
    yield m
    m.sock.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


def notifier(path: Path, clock: Clock | None = None, env: dict[str, str] | None = None) -> Notifier:
    return Notifier(
        {"NOTIFY_SOCKET": str(path), **(env or {})}, monotonic_usec=clock or Clock(), pid=500
    )


def test_no_notify_socket_is_a_no_op() -> None:
    n = Notifier({}, pid=1)
    assert not n.enabled
    assert n.ready("x") is False and n.stopping() is False and n.watchdog_tick() is False
    assert n.next_deadline_usec() is None and n.errors == 0


@pytest.mark.parametrize("value", ["", "relative/path", "@", "vsock:2:1234"])
def test_unusable_notify_socket_values(value: str) -> None:
    assert notify_address(value) is None
    assert not Notifier({"NOTIFY_SOCKET": value}).enabled


def test_ready_status_reloading_stopping(tmp_path: Path, manager: Manager) -> None:
    clock = Clock()
    n = notifier(tmp_path / "notify", clock)
    assert n.ready("listening on unix:path=/run/bootbus")
    assert manager.receive() == (b"READY=1\nSTATUS=listening on unix:path=/run/bootbus\n", [])
    assert n.status("3 connections,\n5 names")
    assert manager.receive() == (b"STATUS=3 connections, 5 names\n", [])
    clock.now = 77_000_123
    assert n.reloading("re-executing")
    assert manager.receive() == (b"RELOADING=1\nMONOTONIC_USEC=77000123\nSTATUS=re-executing\n", [])
    assert n.ready()
    assert manager.receive() == (b"READY=1\n", [])
    assert n.extend_timeout(30_000_000)
    assert manager.receive() == (b"EXTEND_TIMEOUT_USEC=30000000\n", [])
    assert n.stopping()
    assert manager.receive() == (b"STOPPING=1\n", [])
    assert manager.nothing_more()
    n.close()


def test_status_is_clipped_to_one_bounded_line(tmp_path: Path, manager: Manager) -> None:
    n = notifier(tmp_path / "notify")
    n.status("x" * 10_000)
    data, _ = manager.receive()
    assert data.count(b"\n") == 1 and len(data.decode()) == len("STATUS=\n") + STATUS_MAX
    n.close()


def test_abstract_socket(tmp_path: Path) -> None:
    name = f"bootbus-test-notify-{os.getpid()}-{tmp_path.name}"
    m = Manager("\0" + name)
    n = Notifier({"NOTIFY_SOCKET": "@" + name})
    assert n.ready()
    assert m.receive() == (b"READY=1\n", [])
    n.close()
    m.sock.close()


def test_watchdog_pings_at_half_the_interval(tmp_path: Path, manager: Manager) -> None:
    clock = Clock()
    n = notifier(tmp_path / "notify", clock, {"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "500"})
    assert n.watchdog_interval_usec == 5_000_000
    assert n.next_deadline_usec() == clock.now
    assert n.watchdog_tick()
    assert manager.receive() == (b"WATCHDOG=1\n", [])
    assert n.next_deadline_usec() == clock.now + 5_000_000
    clock.now += 4_999_999
    assert not n.watchdog_tick()
    assert manager.nothing_more()
    clock.now += 1
    assert n.watchdog_tick()
    assert manager.receive() == (b"WATCHDOG=1\n", [])
    n.close()


@pytest.mark.parametrize(
    "env",
    [
        {"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "501"},
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "soon"},
        {},
    ],
)
def test_no_watchdog_for_us(tmp_path: Path, manager: Manager, env: dict[str, str]) -> None:
    n = notifier(tmp_path / "notify", env=env)
    assert n.watchdog_interval_usec is None and n.next_deadline_usec() is None
    assert not n.watchdog_tick()
    assert manager.nothing_more()
    n.close()


def test_fd_store_passes_working_fds(tmp_path: Path, manager: Manager) -> None:
    n = notifier(tmp_path / "notify")
    r, w = os.pipe()
    try:
        assert n.store_fds("listen-0", [r, w])
        data, fds = manager.receive()
        assert data == b"FDSTORE=1\nFDNAME=listen-0\n"
        assert len(fds) == 2
        os.write(fds[1], b"through the store")
        assert os.read(r, 100) == b"through the store"
        for fd in fds:
            os.close(fd)
        assert n.remove_fds("listen-0")
        assert manager.receive() == (b"FDSTOREREMOVE=1\nFDNAME=listen-0\n", [])
    finally:
        os.close(r)
        os.close(w)
        n.close()


@pytest.mark.parametrize("name", ["", "a:b", "tab\there", "x" * 256, "ünï"])
def test_bad_fd_names_are_refused(tmp_path: Path, name: str) -> None:
    n = notifier(tmp_path / "notify")
    with pytest.raises(NotifyError):
        n.store_fds(name, [0])
    with pytest.raises(NotifyError):
        n.remove_fds(name)


def test_missing_manager_socket_counts_an_error(tmp_path: Path) -> None:
    n = notifier(tmp_path / "nobody-listens")
    assert n.enabled
    assert n.ready() is False
    assert n.errors == 1
    n.close()
