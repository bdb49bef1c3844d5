"""The open-file limit: raised for the daemon once it serves, lowered for its children.

The daemon starts with a soft limit of 256 (hard 4096), as a shell or an initramfs
might hand it; it must raise the soft limit to the hard one (as root, both to
WANTED_NOFILE), log it, and start an activated service with a soft limit that
select() can live with.
"""

from __future__ import annotations

import ast
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bootbus.client import BUS, BUS_PATH, CallError, Client
from bootbus.io import rlimit
from daemonproc import running_daemon

REPO = Path(__file__).resolve().parent.parent
LOW = (256, 4096)  # what the daemon is started with
WAIT_S = 10.0
SERVICE = "org.bootbus.test.Limits"


CAP_SYS_RESOURCE = 24


def _may_raise_hard() -> bool:
    """Root may raise a hard limit only with CAP_SYS_RESOURCE (containers drop it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return os.geteuid() == 0 and bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return False


def _expected_hard() -> int:
    return max(LOW[1], rlimit.WANTED_NOFILE) if _may_raise_hard() else LOW[1]


def _start_low() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, LOW)


def _wait_for(path: Path, needle: str) -> str:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        text = path.read_text()
        if needle in text:
            return text
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} not in {path}:\n{path.read_text()}")


def _limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open-file limit in /proc/{pid}/limits")


def test_raise_nofile_raises_the_soft_limit_and_never_lowers() -> None:
    code = ("import resource; from bootbus.io import rlimit; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, {LOW}); "
            "first = rlimit.raise_nofile(); second = rlimit.raise_nofile(); "
            "print(repr((first, second, resource.getrlimit(resource.RLIMIT_NOFILE))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    hard = _expected_hard()
    # raised once from what it found, then nothing left to raise
    assert ast.literal_eval(out) == ((LOW[0], hard), None, (hard, hard))


def test_the_daemon_raises_its_limit_and_its_children_start_lower(tmp_path: Path) -> None:
    services = tmp_path / "services"
    services.mkdir()
    (services / f"{SERVICE}.service").write_text(
        f"[D-BUS Service]\nName={SERVICE}\n"
        "Exec=/bin/sh -c 'echo \"child nofile $(ulimit -Sn) $(ulimit -Hn)\"; exit 3'\n")
    log = tmp_path / "stderr"
    with open(log, "w") as err, running_daemon(tmp_path, "--service-dir", str(services),
                                               stderr=err, preexec_fn=_start_low) as started:
        proc, address = started
        hard = _expected_hard()
        _wait_for(log, f"open-file limit raised from {LOW[0]} to {hard}")
        assert _limits(proc.pid) == (hard, hard)
        with Client(address) as client, pytest.raises(CallError, match="exited with status 3"):
            client.call(BUS, BUS_PATH, BUS, "StartServiceByName", "su", (SERVICE, 0))
        _wait_for(log, f"child nofile {rlimit.SELECT_NOFILE} {hard}")
