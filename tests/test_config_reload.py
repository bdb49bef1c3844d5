"""--config FILE at run time: the policy is enforced, SIGHUP and ReloadConfig reload it,
and a file that does not load keeps the old policy."""

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bootbus.client import CallError, Client

REPO = Path(__file__).resolve().parent.parent
BUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")
CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:tmpdir=/tmp</listen>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    {extra}
  </policy>
</busconfig>
"""
DENY = '<deny own="com.example.Denied"/>'


def _own(address: str, name: str) -> int:
    with Client(address) as client:
        (result,) = client.call(*BUS, "RequestName", "su", (name, 0))
        return int(result)


def _wait(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def _denied(address: str) -> bool:
    try:
        _own(address, "com.example.Denied")
    except CallError as exc:
        assert exc.name == "org.freedesktop.DBus.Error.AccessDenied"
        return True
    return False


def test_policy_enforced_and_reloaded() -> None:
    with tempfile.TemporaryDirectory(prefix="bb-conf-") as tmp:
        conf = Path(tmp) / "bus.conf"
        conf.write_text(CONFIG.format(extra=DENY))
        address = f"unix:path={tmp}/sock"
        proc = subprocess.Popen([sys.executable, "-m", "bootbus", "--config", str(conf),
                                 "--address", address, "--runtime-dir", f"{tmp}/rt",
                                 "--print-address"],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proc.stdout is not None and proc.stdout.readline()
            assert _denied(address)
            assert _own(address, "com.example.Allowed") == 1

            conf.write_text(CONFIG.format(extra=""))  # SIGHUP: the deny is gone
            proc.send_signal(signal.SIGHUP)
            _wait(lambda: not _denied(address))

            conf.write_text(CONFIG.format(extra=DENY))  # ReloadConfig: the deny is back
            with Client(address) as client:
                client.call(*BUS, "ReloadConfig")
            assert _denied(address)

            conf.write_text("<busconfig><policy")  # broken: the old policy stays
            with Client(address) as client, pytest.raises(CallError) as exc:
                client.call(*BUS, "ReloadConfig")
            assert exc.value.name == "org.freedesktop.DBus.Error.Failed"
            assert "reload failed" in exc.value.text
            proc.send_signal(signal.SIGHUP)
            time.sleep(0.3)
            assert _denied(address)
            assert proc.poll() is None
        finally:
            proc.terminate()
            _out, err = proc.communicate(timeout=10)
        assert b"configuration reload failed, keeping the old one" in err
