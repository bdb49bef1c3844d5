"""A broken upgrade never drops the bus: the preflight catches it first.

The daemon runs from a copy of the package; the test then breaks the copy
on disk, as a bad upgrade would, and asks for a re-exec. The preflight (the
target interpreter importing the target code) fails, so the running image
keeps serving: same PID, same generation, every connection alive, the reason
on stderr and in the error the callers get. Once the copy is fixed, the
same daemon re-executes into it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bootbus.client import CallError

from . import harness

BROKEN_IMPORT = "import time\ntime.sleep({delay})\nraise ImportError('broken on purpose')\n"
FAILED = "org.bootbus.Error.Failed"


def _break(root: Path, module: str, text: str) -> str:
    """Run `text` first when `module` is imported (after its __future__ import, if any)."""
    path = root / "bootbus" / module
    original = path.read_text()
    future = "from __future__ import annotations\n"
    head, found, rest = original.partition(future)
    path.write_text(head + future + text + rest if found else text + original)
    return original


def _assert_still_serving(daemon: harness.Daemon, control: harness.Client,
                          bus_id: str) -> None:
    status = daemon.status(control)
    assert status["Generation"] == 1 and status["PID"] == daemon.pid
    assert control.call(harness.DBUS, harness.DBUS_PATH, harness.DBUS, "GetId") == [bus_id]
    with daemon.client() as fresh:  # and new clients still connect
        assert fresh.call(harness.DBUS, harness.DBUS_PATH, harness.DBUS, "GetId") == [bus_id]


@pytest.mark.timeout(60)
def test_preflight_import_failure_keeps_serving(tmp_path: Path) -> None:
    root = harness.copy_package(tmp_path)
    with harness.running(root, {"PYTHONDONTWRITEBYTECODE": "1"}) as daemon, \
            daemon.client() as control, daemon.client() as other, daemon.client() as third:
        (bus_id,) = control.call(harness.DBUS, harness.DBUS_PATH, harness.DBUS, "GetId")
        original = _break(root, "bus/match.py", BROKEN_IMPORT.format(delay=1.0))

        # two callers ask; the preflight runs in the background while the bus serves
        first = control.call_async(harness.SERVICE, harness.PATH, harness.IFACE, "Reexec")
        second = other.call_async(harness.SERVICE, harness.PATH, harness.IFACE, "Reexec")
        started = time.monotonic()
        assert third.call(harness.DBUS, harness.DBUS_PATH, harness.DBUS, "GetId",
                          timeout=5) == [bus_id]
        assert time.monotonic() - started < 0.9  # answered before the preflight could end
        # a different re-exec (a pivot) while this one runs is refused at once
        with pytest.raises(CallError) as refused:
            daemon.supervisor("Pivot", "sb", ("/", False), client=third, timeout=5)
        assert refused.value.name == FAILED and "in progress" in refused.value.text

        for client, serial in ((control, first), (other, second)):
            reply = client.wait_reply(serial, timeout=harness.REEXEC_TIMEOUT_S)
            assert reply.error_name == FAILED
            (text,) = reply.args()
            assert "preflight failed (exit 1)" in text and "broken on purpose" in text
        log = daemon.wait_log("re-exec aborted")
        assert "<3>bootbus: re-exec aborted, this image keeps serving: preflight failed " \
               "(exit 1)" in log
        assert "ImportError: broken on purpose" in log
        _assert_still_serving(daemon, control, bus_id)

        # fixed on disk: the same daemon upgrades into it
        (root / "bootbus" / "bus" / "match.py").write_text(original)
        assert daemon.supervisor("Reexec", client=control) == []
        status = daemon.status(control)
        assert status["Generation"] == 2 and status["PID"] == daemon.pid
        assert other.call(harness.DBUS, harness.DBUS_PATH, harness.DBUS, "GetId") == [bus_id]


@pytest.mark.timeout(60)
def test_preflight_refuses_snapshot_version(tmp_path: Path) -> None:
    """New code that imports but reads another major version of the snapshot."""
    root = harness.copy_package(tmp_path)
    with harness.running(root, {"PYTHONDONTWRITEBYTECODE": "1"}) as daemon, \
            daemon.client() as control:
        (bus_id,) = control.call(harness.DBUS, harness.DBUS_PATH, harness.DBUS, "GetId")
        path = root / "bootbus" / "state" / "snapshot.py"
        text = path.read_text()
        assert "\nVERSION = (1, " in text
        path.write_text(text.replace("\nVERSION = (1, ", "\nVERSION = (2, "))
        with pytest.raises(CallError) as failed:
            daemon.supervisor("Reexec", client=control)
        assert failed.value.name == FAILED
        assert "cannot restore snapshot format 1." in failed.value.text
        assert "preflight failed" in daemon.wait_log("re-exec aborted")
        _assert_still_serving(daemon, control, bus_id)
