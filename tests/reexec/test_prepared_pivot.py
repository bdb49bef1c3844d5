"""A pivot prepared before a plain re-exec is still prepared after it.

The prepared root is an O_PATH fd: it crosses the exec as a supervisor_fd
record of the snapshot (format 1.2). Prepared into "/" (any root with a
/usr/bin/python3 would do), re-executed, then completed with Pivot("", false):
that can only work if the fd made it across.
"""

from __future__ import annotations

import os

import pytest

from bootbus.client import CallError

from . import harness


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: completing a pivot chroots")
@pytest.mark.timeout(60)
def test_prepared_pivot_survives_reexec() -> None:
    with harness.running() as daemon, daemon.client() as control:
        with pytest.raises(CallError) as nothing:  # nothing prepared yet
            daemon.supervisor("Pivot", "sb", ("", False), client=control)
        assert "no pivot was prepared" in nothing.value.text
        assert daemon.supervisor("Pivot", "sb", ("/", True), client=control) == []
        assert daemon.supervisor("Reexec", client=control) == []
        assert daemon.status(control)["Generation"] == 2
        if "device monitor listening" in daemon.log():
            # libudev holds a transient fd of "/" while the new image enumerates devices
            daemon.wait_log("devices re-enumerated after the re-exec")
        held = [fd for fd, target in harness.open_fds(daemon.pid).items() if target == "/"]
        assert len(held) == 1, harness.open_fds(daemon.pid)  # the prepared root, and only it
        assert daemon.supervisor("Pivot", "sb", ("", False), client=control) == []
        status = daemon.status(control)
        assert status["Generation"] == 3 and status["Pivots"] == 1
        assert status["PID"] == daemon.pid
        if "device monitor listening" in daemon.log():
            # the new image's enumeration thread holds "/" for a moment, as above
            daemon.wait_log("devices re-enumerated after the re-exec", 2)
        assert "/" not in harness.open_fds(daemon.pid).values()  # used up by the pivot
