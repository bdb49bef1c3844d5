"""bootbus from the initramfs through switch_root to the shutdown pivot, in namespaces.

Each test runs nsinit.py as PID 1 of a private mount and PID namespace
(``unshare --mount --pid --fork``): it builds an initramfs root and a real
root on tmpfs (/usr a read-only overlay of this machine's /usr, bootbus
copied into /usr/lib/bootbus of each), starts bootbus in the initramfs,
connects peers, switches root the way one dracut flavour does, then moves
the bus into /run/initramfs as at shutdown. nsinit.py reports facts; this
module asserts them:

  * the same daemon (PID, bus id, unique names) serves throughout, its
    generation and pivot count rising by one per pivot, in the right phase;
  * a call left unanswered before the switch, and one sent while the root
    switched, are answered after it; every broadcast tick, including those
    sent while the bus was re-executing, reached the service's match rule
    once and in order; new clients find the bus in the new root;
  * after each pivot, nothing in /proc/PID/{root,cwd,exe}, map_files or
    fdinfo refers to a mount of the root it left; root and cwd are the new
    root, the interpreter comes from the new root's /usr, argv[0] is
    '@bootbus' (spared by systemd-shutdown), and the real root's /usr can
    be unmounted (not lazily) once the bus is in /run/initramfs.

Needs root and unshare (CI has both); skips with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from . import harness

NSINIT = Path(__file__).resolve().parent / "nsinit.py"
SCENARIO_TIMEOUT_S = 90

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for mount and PID namespaces"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)"),
]


def run_scenario(scenario: str) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bbns-"))
    try:
        # BOOTBUS_NS_SOURCE: run the daemon from another tree (to see these tests catch a bug)
        source = Path(os.environ.get("BOOTBUS_NS_SOURCE", harness.REPO))
        for layer in ("initrd", "root", "shutdown"):
            shutil.copytree(source / "bootbus",
                            work / "layers" / layer / "lib" / "bootbus" / "bootbus")
        (work / "initrd").mkdir()
        proc = subprocess.run(
            ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation",
             "private", harness.PYTHON, str(NSINIT), str(harness.REPO), str(work), scenario],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=SCENARIO_TIMEOUT_S,
            cwd="/", check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = proc.stdout.decode(errors="replace").strip().splitlines()
    assert lines, f"nsinit printed nothing (exit {proc.returncode}): {proc.stderr.decode()}"
    facts: dict[str, Any] = json.loads(lines[-1])
    assert "error" not in facts, f"{facts['traceback']}\nbootbus log:\n{facts['log']}"
    return facts


def check_pivot(facts: dict[str, Any], stage: str, phase: str, generation: int,
                answered: list[int]) -> None:
    before, after = facts["before"], facts[stage]
    status = after["status"]
    context = f"{stage}: {json.dumps(after, indent=1)}\nlog:\n{facts['log']}"
    assert after["daemon_alive"], context
    assert status["PID"] == before["status"]["PID"] == after["daemon_pid"], context
    assert status["Phase"] == phase, context
    assert status["Generation"] == generation, context
    assert status["Pivots"] == generation - 1, context
    assert status["BusId"] == after["bus_id"] == before["bus_id"], context
    assert set(before["names"].values()) <= set(after["names"]), context
    assert after["service_owner"] == after["fresh_sees_service"] == before["names"]["service"]
    assert after["answered"] == answered, context
    assert after["old_root_refs"] == {}, context
    assert after["root_is_new_root"] and after["cwd_is_new_root"], context
    assert after["exe_from_new_usr"], context
    assert after["argv0"] == "@bootbus", context


def _holds_a_root(refs: dict[str, int]) -> bool:
    """The references a daemon running in a root has to it (the check is not vacuous)."""
    return {"root", "cwd", "exe"} <= refs.keys() and any(k.startswith("map ") for k in refs)


def check_boot(facts: dict[str, Any]) -> None:
    assert facts["before"]["status"]["Phase"] == "initramfs"
    assert _holds_a_root(facts["before"]["old_root_refs"]), facts["before"]
    assert _holds_a_root(facts["switch_root"]["refs_before_shutdown"]), facts["switch_root"]
    assert facts["deleted_files"] > 0
    check_pivot(facts, "switch_root", "root", 2, [1, 2, 3])
    check_pivot(facts, "shutdown", "shutdown", 3, [4, 5])
    assert facts["ticks_seen"] == list(range(1, facts["ticks_sent"] + 1))
    assert facts["real_usr_unmounted"] == "yes", facts["log"]
    log = facts["log"]
    assert "re-exec aborted" not in log and "Traceback" not in log, log
    assert log.count("restored generation") == 2, log


@pytest.mark.timeout(SCENARIO_TIMEOUT_S + 10)
def test_busybox_switch_root_follows_pid1() -> None:
    """dracut's shell init: pivot prepared in pre-pivot, initramfs deleted before the chroot."""
    facts = run_scenario("busybox")
    check_boot(facts)
    assert "PID 1 changed root, following it into /sysroot" in facts["log"]


@pytest.mark.timeout(SCENARIO_TIMEOUT_S + 10)
def test_busybox_switch_root_unprepared() -> None:
    """Nobody prepared the pivot: the bus finds PID 1's new root through /proc/1/root."""
    facts = run_scenario("busybox-unprepared")
    check_boot(facts)
    assert "PID 1 changed root, following it into /proc/1/root" in facts["log"]


@pytest.mark.timeout(SCENARIO_TIMEOUT_S + 10)
def test_systemd_switch_root_explicit_completion() -> None:
    """systemd in the initrd: prepared, switched, then `bootbusctl pivot` completes it.

    The bus also follows PID 1 by itself (it checks every 0.5 s); whichever
    starts first, the explicit caller is answered by that one re-exec.
    """
    facts = run_scenario("systemd-explicit")
    check_boot(facts)
    log = facts["log"]
    explicit = "re-exec requested (phase root, root /sysroot)" in log
    followed = "PID 1 changed root, following it into /sysroot" in log
    assert explicit != followed, log  # exactly one re-exec into the real root
    assert log.count("re-exec requested") == 2, log  # that one, and the shutdown pivot


@pytest.mark.timeout(SCENARIO_TIMEOUT_S + 10)
def test_systemd_switch_root_automatic() -> None:
    """systemd in the initrd, and no unit completes the pivot: the bus does it itself."""
    facts = run_scenario("systemd-auto")
    check_boot(facts)
    assert "PID 1 changed root, following it into /sysroot" in facts["log"]
    # bootbus-pivot.service completing it afterwards succeeds and changes nothing
    assert facts["late_completion_generation"] == 2
