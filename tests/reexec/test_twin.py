"""The twin handover: a forked twin serves while the new image starts.

A plain re-exec pauses every client for the new image's interpreter start and
imports; with a twin the pause is snapshot, transfer and restore only (see
bootbus.io.reexec and bench/reexec_pause.py). These tests pin down what must
hold around it: a failed exec leaves no twin and changes nothing; a new image
that dies before taking over leaves the twin serving with every connection;
an older target (no handover in its preflight) or BOOTBUS_REEXEC=direct gets
the direct exec, and the bus survives it just the same.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from bootbus.bus import driver
from bootbus.bus.router import Bus
from bootbus.io import reexec
from bootbus.io.server import Server
from bootbus.io.supervisor import ERR_FAILED, Supervisor
from bootbus.wire import message as m

from . import harness

MISSING = "/nonexistent-bootbus-test/python3"
NAME = "org.bootbus.test.Twin"
DIES_ON_TAKEOVER = "def take_over(*_args, **_kwargs):\n    os._exit(3)\n"
REQUEST_NAME_REPLY_PRIMARY = 1


def _children() -> set[int]:
    pids: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            pids.update(int(p) for p in f.read().split())
    return pids


def test_twin_exec_failure_leaves_no_twin_and_keeps_serving(tmp_path: Path) -> None:
    bus = Bus(bus_id="0" * 32, uid=os.geteuid())
    bus.driver = driver.handle
    server = Server(bus, [])
    supervisor = Supervisor(bus, server, [], ["--runtime-dir", str(tmp_path)], phase="root")
    supervisor.install()
    supervisor.handover = True  # as if the preflight said so
    supervisor._subreaper = True  # keep the test process as it is
    failures: list[str] = []
    supervisor.on_exec_failed.append(failures.append)
    caller = bus.add_peer(0, os.getpid())
    bus.authenticated(caller, True)
    bus.assign_unique_name(caller)
    target = reexec.plan(-1, supervisor.daemon_args, [])
    target.interpreter = MISSING  # the preflight passed; the exec itself fails
    supervisor.exec_target = target
    supervisor.exec_phase = "root"
    supervisor._waiting.append((caller.id, 42))  # a Reexec caller
    fds = {int(n) for n in os.listdir("/proc/self/fd")}
    children = _children()
    try:
        supervisor._exec()  # what tick() runs once the preflight passed
        assert supervisor.twin is None  # we are the parent: the twin was told and reaped
        assert _children() == children
        assert {int(n) for n in os.listdir("/proc/self/fd")} == fds
        assert "--restore-fd" in target.argv and "--handover-fd" not in target.argv
        assert supervisor.exec_target is None and supervisor.phase == "root"
        assert len(failures) == 1 and MISSING in failures[0]
        (frame,) = caller.outq
        reply = m.parse(b"".join(bytes(b) for b in frame.bufs))
        assert reply.type == m.ERROR and reply.error_name == ERR_FAILED
        assert "No such file" in reply.args()[0]
    finally:
        server.epoll.close()


@pytest.mark.timeout(60)
def test_new_image_dying_before_takeover_leaves_the_twin_serving(tmp_path: Path) -> None:
    root = harness.copy_package(tmp_path)
    daemon = harness.start(root, {"PYTHONDONTWRITEBYTECODE": "1"})
    twin = 0
    try:
        with daemon.client() as owner, daemon.client() as control:
            owner.call(harness.DBUS, harness.DBUS_PATH, harness.DBUS, "RequestName", "su",
                       (NAME, 4))
            (bus_id,) = control.call(harness.DBUS, harness.DBUS_PATH, harness.DBUS, "GetId")
            daemon.wait_log("devices enumerated")  # no thread running: the twin is used
            reexec_py = root / "bootbus" / "io" / "reexec.py"
            reexec_py.write_text(reexec_py.read_text() + DIES_ON_TAKEOVER)

            serial = control.call_async(harness.SERVICE, harness.PATH, harness.IFACE, "Reexec")
            reply = control.wait_reply(serial, timeout=harness.REEXEC_TIMEOUT_S)
            assert reply.error_name == "org.bootbus.Error.Failed"
            assert "ended before taking over" in reply.args()[0]
            assert daemon.process.wait(10) == 3  # the bus's PID ran the broken image
            log = daemon.wait_log("serves on from its twin")
            twin = int(re.findall(r"from its twin, pid (\d+)", log)[0])

            # every connection, name and the bus id are as they were: the twin has them
            (names,) = control.call(harness.DBUS, harness.DBUS_PATH, harness.DBUS,
                                    "ListNames")
            assert NAME in names
            assert owner.call(harness.DBUS, harness.DBUS_PATH, harness.DBUS,
                              "GetNameOwner", "s", (NAME,)) == [owner.unique_name]
            assert control.call(harness.DBUS, harness.DBUS_PATH, harness.DBUS,
                                "GetId") == [bus_id]
            with daemon.client() as fresh:  # and it still accepts new clients
                assert fresh.call(harness.DBUS, harness.DBUS_PATH, harness.DBUS,
                                  "GetId") == [bus_id]
            assert daemon.status(control)["Generation"] == 1
    finally:
        if twin:
            os.kill(twin, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while os.path.exists(f"/proc/{twin}") and time.monotonic() < deadline:
                time.sleep(0.05)
        daemon.stop(check=False)
    assert "Traceback" not in daemon.log()


@pytest.mark.timeout(60)
def test_direct_reexec_when_asked(tmp_path: Path) -> None:
    with harness.running(env={"BOOTBUS_REEXEC": "direct"}) as daemon, \
            daemon.client() as owner:
        owner.call(harness.DBUS, harness.DBUS_PATH, harness.DBUS, "RequestName", "su",
                   (NAME, 4))
        daemon.wait_log("devices enumerated")
        assert daemon.supervisor("Reexec") == []
        log = daemon.wait_log("restored generation 2")
        assert "re-executing: generation 2" in log and "handing over" not in log
        assert owner.call(harness.DBUS, harness.DBUS_PATH, harness.DBUS,
                          "GetNameOwner", "s", (NAME,)) == [owner.unique_name]
        assert daemon.status()["PID"] == daemon.pid
