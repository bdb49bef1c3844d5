"""dracut/99bootbus/bootbus-rootwait.sh: when it asks the bus, and that it never fails.

The script runs in a private mount namespace whose /run is a fresh tmpfs (it
keeps its state in /run/bootbus), with dracut-lib's getarg/info/warn replaced
by stubs reading a fake command line and a `bootbusctl` stub on PATH that
records its arguments and exits with the code the test chooses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "dracut" / "99bootbus" / "bootbus-rootwait.sh"
HOOK = REPO / "dracut" / "99bootbus" / "bootbus-rootwait-hook.sh"
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="a private /run needs root and unshare(1)")

# dracut-lib.sh's getarg for KEY=, over $CMDLINE; info/warn to stdout, tagged
FAKE_LIB = r"""
getarg() { for _a in $CMDLINE; do case $_a in "$1"*) _v=${_a#"$1"} ;; esac; done; echo "$_v"; }
info() { echo "INFO $*"; }
warn() { echo "WARN $*"; }
"""
CTL_STUB = """#!/bin/sh
echo "$*" >> "$CTL_CALLS"
echo /devices/virtual/block/vda
exit "$CTL_RC"
"""


def run(tmp_path: Path, cmdline: str, rc: int = 0, bus: bool = True,
        done: str | None = None, entry: Path = SCRIPT, twice: bool = False,
        setup_more: str = "") -> tuple[int, str, list[str], str | None]:
    """Exit code, output, the bootbusctl calls and the state file's content afterwards."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "bootbusctl").write_text(CTL_STUB)
    (bin_dir / "bootbusctl").chmod(0o755)
    (bin_dir / "bootbus-rootwait").write_text(f"#!/bin/sh\n. {tmp_path}/lib.sh\n. {SCRIPT}\n")
    (bin_dir / "bootbus-rootwait").chmod(0o755)
    (tmp_path / "lib.sh").write_text(FAKE_LIB)
    calls = tmp_path / "calls"
    calls.unlink(missing_ok=True)
    setup = ["mount -t tmpfs tmpfs /run", "mkdir -p /run/bootbus"]
    if bus:
        setup.append(": > /run/bootbus/initrd-bus")
    if done is not None:
        setup.append(f"echo {done} > /run/bootbus/rootwait")
    if setup_more:
        setup.append(setup_more)
    # a background waiter (the hook's) has finished once the bootbusctl stub's one
    # call is over: wait for its record (at most 10 s) before reading it
    settle = ("for _i in $(seq 100); do [ -e /run/bootbus/rootwait ] && break; "
              "[ -e /run/bootbus/rootwait.since ] || break; sleep 0.1; done;")
    # a second round of dracut's main loop: sourced in a subshell, as check_finished does
    again = f"(. {tmp_path}/lib.sh; . {entry}); echo AGAIN=$?;" if twice else ""
    inner = (" && ".join(setup) + f" && (. {tmp_path}/lib.sh; . {entry}); echo RC=$?; "
             + settle + again +
             " cat /run/bootbus/rootwait 2>/dev/null | sed 's/^/STATE /'")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CMDLINE": cmdline, "CTL_RC": str(rc),
           "CTL_CALLS": str(calls)}
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", inner],
                         capture_output=True, text=True, env=env, timeout=30, check=True).stdout
    code = int(next(line for line in out.splitlines() if line.startswith("RC="))[3:])
    state = next((line[6:] for line in out.splitlines() if line.startswith("STATE ")), None)
    made = calls.read_text().splitlines() if calls.exists() else []
    return code, out, made, state


def test_asks_the_bus_for_root_with_the_timeout_and_records_the_answer(tmp_path: Path) -> None:
    code, out, calls, state = run(tmp_path, "root=UUID=0b5e rd.bootbus.rootwait=7 quiet")
    assert code == 0 and state == "0"
    assert calls == ["--address unix:path=/run/bootbus/bus wait-root --timeout 7 UUID=0b5e"]
    assert "INFO bootbus: root device root=UUID=0b5e found through the bus" in out


def test_default_timeout_is_30_seconds(tmp_path: Path) -> None:
    _code, _out, calls, _state = run(tmp_path, "root=/dev/vda")
    assert calls == ["--address unix:path=/run/bootbus/bus wait-root --timeout 30 /dev/vda"]


@pytest.mark.parametrize(("rc", "said"), [(4, "WARN bootbus: root device root=/dev/vda not found"),
                                          (5, "INFO bootbus: root=/dev/vda is no block device"),
                                          (1, "WARN bootbus: waiting for the root device")])
def test_a_timeout_or_failure_is_said_and_the_boot_goes_on(tmp_path: Path, rc: int,
                                                           said: str) -> None:
    code, out, calls, state = run(tmp_path, "root=/dev/vda", rc=rc)
    assert code == 0 and state == str(rc) and len(calls) == 1
    assert said in out


def test_without_a_serving_bus_nothing_is_asked(tmp_path: Path) -> None:
    code, _out, calls, state = run(tmp_path, "root=/dev/vda", bus=False)
    assert (code, calls, state) == (0, [], "no-bus")  # recorded: the hook waits no more


def test_once_per_boot_and_off_with_zero(tmp_path: Path) -> None:
    code, _out, calls, state = run(tmp_path, "root=/dev/vda", done="0")
    assert (code, calls, state) == (0, [], "0")
    code, out, calls, state = run(tmp_path, "root=/dev/vda rd.bootbus.rootwait=0")
    assert (code, calls, state) == (0, [], "off")
    assert "rd.bootbus.rootwait=0" in out


def test_the_finished_hook_waits_in_the_background_until_the_bus_answers(
        tmp_path: Path) -> None:
    """The first round starts the waiter and is not finished; the loop goes on."""
    code, out, calls, state = run(tmp_path, "root=/dev/vda", rc=4, entry=HOOK,
                                  twice=True)
    assert code == 1  # not finished: dracut's main loop runs its jobs meanwhile
    assert len(calls) == 1 and state == "4"  # the waiter asked the bus and recorded it
    assert "AGAIN=0" in out  # answered (here: timed out): finished, dracut decides


def test_the_finished_hook_is_true_once_answered_or_without_a_bus(tmp_path: Path) -> None:
    code, _out, calls, _state = run(tmp_path, "root=/dev/vda", done="4", entry=HOOK)
    assert code == 0 and calls == []  # already waited: the hook does not run it again
    code, _out, calls, state = run(tmp_path, "root=/dev/vda", bus=False, entry=HOOK)
    assert (code, calls, state) == (0, [], None)


def test_the_finished_hook_gives_up_on_a_waiter_that_never_reports(tmp_path: Path) -> None:
    code, _out, calls, _state = run(
        tmp_path, "root=/dev/vda rd.bootbus.rootwait=5", entry=HOOK,
        setup_more="echo 0 > /run/bootbus/rootwait.since")  # started at boot, long ago
    assert code == 0 and calls == []
