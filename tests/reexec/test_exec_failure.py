"""An exec that fails after the preflight passed: the image keeps serving, as it was.

These run in the test process itself, with an interpreter path that cannot
exist, so execve always fails and returns: reexec.execute must give back the
fds' flags, the root and the working directory; the supervisor must answer
the callers with the reason, undo the pivot it had recorded, call its
on_exec_failed hooks and leave no fd behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bootbus.bus import driver
from bootbus.bus.router import Bus
from bootbus.io import reexec
from bootbus.io.server import Server
from bootbus.io.supervisor import ERR_FAILED, Supervisor
from bootbus.wire import message as m

MISSING = "/nonexistent-bootbus-test/python3"


def _fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def test_execute_failure_restores_fd_flags() -> None:
    r, w = os.pipe()
    try:
        os.set_inheritable(w, True)
        error = reexec.execute(reexec.ExecPlan(MISSING, ["x"], {}), [r, w])
        assert isinstance(error, FileNotFoundError)
        assert not os.get_inheritable(r)  # flipped for the exec, flipped back
        assert os.get_inheritable(w)  # was inheritable before: left so
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chroot")
def test_execute_failure_in_new_root_comes_back(tmp_path: Path) -> None:
    (tmp_path / "usr" / "bin").mkdir(parents=True)  # a root without python3
    root = os.stat("/")
    cwd = os.getcwd()
    fds = _fds()
    new_root = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        error = reexec.execute(reexec.ExecPlan("/usr/bin/python3", ["x"], {}, new_root), [])
    finally:
        os.close(new_root)
    assert isinstance(error, FileNotFoundError)
    back = os.stat("/")
    assert (back.st_dev, back.st_ino) == (root.st_dev, root.st_ino)
    assert os.getcwd() == cwd
    assert _fds() == fds


def _active_peer(bus: Bus) -> int:
    peer = bus.add_peer(0, os.getpid())
    bus.authenticated(peer, True)
    bus.assign_unique_name(peer)
    return peer.id


def test_supervisor_exec_failure_keeps_serving(tmp_path: Path) -> None:
    bus = Bus(bus_id="0" * 32, uid=os.geteuid())
    bus.driver = driver.handle
    server = Server(bus, [])
    supervisor = Supervisor(bus, server, [], ["--runtime-dir", str(tmp_path)], phase="root")
    supervisor.install()
    failures: list[str] = []
    supervisor.on_exec_failed.append(failures.append)
    caller = _active_peer(bus)
    target = reexec.plan(-1, supervisor.daemon_args, [])
    target.interpreter = MISSING  # the preflight passed; the exec itself fails
    supervisor.exec_target = target
    supervisor.exec_phase = "root"
    supervisor._waiting.append((caller, 42))  # a Reexec caller
    fds = _fds()
    try:
        supervisor._exec()  # what tick() runs once the preflight passed
        assert _fds() == fds  # the memfd is closed
        assert supervisor.exec_target is None and not supervisor._in_progress()
        assert supervisor.phase == "root" and supervisor.pivots == []
        assert supervisor.generation == 1
        assert len(failures) == 1 and MISSING in failures[0]
        (frame,) = bus.peers[caller].outq  # the caller is told why
        reply = m.parse(b"".join(bytes(b) for b in frame.bufs))
        assert reply.type == m.ERROR and reply.error_name == ERR_FAILED
        assert reply.reply_serial == 42
        assert "exec of" in reply.args()[0] and "No such file" in reply.args()[0]
    finally:
        server.epoll.close()
