"""root= to a Devices1 filter, and `bootbusctl wait-root` against a real daemon."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bootbus.rootdev import root_filter, root_path
from daemonproc import running_daemon

REPO = Path(__file__).resolve().parent.parent
PYTHON = "/usr/bin/python3"


@pytest.mark.parametrize(("spec", "path"), [
    ("/dev/vda", "/dev/vda"),
    ("block:/dev/vda2", "/dev/vda2"),
    ("LABEL=bootbus-root", "/dev/disk/by-label/bootbus-root"),
    ("block:LABEL=my root/a", "/dev/disk/by-label/my\\x20root\\x2fa"),  # as dracut escapes
    ("PARTLABEL=EFI system", "/dev/disk/by-partlabel/EFI\\x20system"),
    ("UUID=0b5e3c1a-aaaa", "/dev/disk/by-uuid/0b5e3c1a-aaaa"),
    ("PARTUUID=1234-02", "/dev/disk/by-partuuid/1234-02"),
    ("/dev/mapper/vg-root", "/dev/mapper/vg-root"),
])
def test_root_path_is_the_path_dracut_waits_for(spec: str, path: str) -> None:
    assert root_path(spec) == path


def test_a_kernel_name_is_a_devname_a_deeper_path_one_of_the_devlinks() -> None:
    assert root_filter("/dev/vda") == {"SUBSYSTEM": "block", "DEVNAME": "/dev/vda"}
    assert root_filter("block:/dev/nvme0n1p2") == {"SUBSYSTEM": "block",
                                                   "DEVNAME": "/dev/nvme0n1p2"}
    assert root_filter("UUID=0b5e") == {"SUBSYSTEM": "block",
                                        "DEVLINKS": "/dev/disk/by-uuid/0b5e"}
    assert root_filter("/dev/mapper/vg-root") == {"SUBSYSTEM": "block",
                                                  "DEVLINKS": "/dev/mapper/vg-root"}


@pytest.mark.parametrize("spec", ["", "nfs:10.0.0.1:/srv/root", "/dev/nfs", "zfs:pool/root",
                                  "live:CDLABEL=x", "tmpfs", "/dev/", "/dev/../etc/x",
                                  "/dev/disk//x", "block:", "LABEL="])
def test_forms_that_name_no_block_device_give_none(spec: str) -> None:
    assert root_filter(spec) is None


# -- bootbusctl wait-root ------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("rootwait")
    with running_daemon(tmp) as (_proc, address):
        yield address, tmp / "rt"


def ctl(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "bootbus.ctl", "--address", address, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=30, check=False)


def step_log(runtime_dir: Path) -> list[dict[str, Any]]:
    out = subprocess.run([PYTHON, "-m", "bootbus.ctl", "--runtime-dir", str(runtime_dir), "log",
                          "--json"], cwd=REPO, capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def a_block_device() -> str:
    names = sorted(os.listdir("/sys/class/block"))
    assert names, "this machine has no block device at all"
    return names[0]


def test_wait_root_finds_a_present_device_through_the_bus(daemon: tuple[str, Path]) -> None:
    address, runtime_dir = daemon
    name = a_block_device()
    done = ctl(address, "wait-root", "--timeout", "10", f"block:/dev/{name}")
    assert done.returncode == 0, done.stderr
    devpath = done.stdout.strip()
    assert devpath.endswith(f"/{name}") and os.path.exists(f"/sys{devpath}")
    records = step_log(runtime_dir)
    # the daemon's own record of the answer, and the client's record naming the root
    bus_side = [r for r in records if "device wait answered" in r["message"]
                and r["fields"]["DEVNAME"] == f"/dev/{name}"]
    assert bus_side and bus_side[-1]["fields"]["DEVPATH"] == devpath
    client_side = [r for r in records if r["fields"].get("BOOTBUS_ROOT") == f"block:/dev/{name}"]
    assert len(client_side) == 1 and client_side[0]["priority"] == 6
    assert "found through the bus" in client_side[0]["message"]
    assert client_side[0]["fields"]["DEVPATH"] == devpath


def test_wait_root_times_out_with_exit_4_and_a_warning(daemon: tuple[str, Path]) -> None:
    address, runtime_dir = daemon
    done = ctl(address, "wait-root", "--timeout", "0.2", "UUID=bootbus-no-such-uuid")
    assert done.returncode == 4
    assert "DEVLINKS=/dev/disk/by-uuid/bootbus-no-such-uuid" in done.stderr
    warned = [r for r in step_log(runtime_dir)
              if r["fields"].get("BOOTBUS_ROOT") == "UUID=bootbus-no-such-uuid"]
    assert [r["priority"] for r in warned] == [4]


def test_wait_root_refuses_a_root_that_is_no_block_device(daemon: tuple[str, Path]) -> None:
    done = ctl(daemon[0], "wait-root", "nfs:10.0.0.1:/srv/root")
    assert done.returncode == 5 and "names no block device" in done.stderr


def test_wait_root_without_a_bus_fails_with_the_bus_exit_code(tmp_path: Path) -> None:
    done = ctl(f"unix:path={tmp_path}/none", "wait-root", "--timeout", "1", "/dev/vda")
    assert done.returncode not in (0, 4, 5) and done.stderr
