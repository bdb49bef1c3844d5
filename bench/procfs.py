"""What the benchmark reads about a broker from /proc, and CPU pinning.

Owns: CPU time (utime+stime from /proc/PID/stat, and nanosecond on-CPU
and run-queue wait time from /proc/PID/task/*/schedstat), resident memory
(VmRSS from /proc/PID/status), child lookup and CPU affinity of whole
processes. It must never signal or otherwise touch the processes it reads.
"""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# /proc/PID/stat fields after the ")" closing comm: state is index 0,
# utime is field 14 of the full line and stime field 15 (proc(5)).
_UTIME_AFTER_COMM = 11
_STIME_AFTER_COMM = 12


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of every thread of `pid`, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[_UTIME_AFTER_COMM]) + int(fields[_STIME_AFTER_COMM])
    return ticks / CLOCK_TICKS_PER_S


def _schedstat(pid: int) -> tuple[int, int]:
    """(on-CPU ns, runnable-but-waiting ns) summed over the live threads of `pid`."""
    run = wait = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "schedstat").read_text().split()
        except FileNotFoundError:
            continue
        run += int(fields[0])
        wait += int(fields[1])
    return run, wait


def cpu_seconds_fine(pid: int) -> float:
    """On-CPU time from /proc/PID/task/*/schedstat: nanosecond resolution, for
    short spans such as startup where clock ticks read as zero."""
    return _schedstat(pid)[0] / 1e9


def wait_seconds(pid: int) -> float:
    """Time `pid` was runnable but waiting for a CPU: other load on the machine."""
    return _schedstat(pid)[1] / 1e9


def rss_kib(pid: int) -> int:
    """Resident set size of `pid` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def children(pid: int) -> list[int]:
    """Direct children of every thread of `pid`."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def pin(pid: int, cpus: set[int]) -> None:
    """Restrict every thread of `pid` to `cpus`."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except ProcessLookupError:
            continue


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith(("model name", "Model", "cpu model")):
            return line.split(":", 1)[1].strip()
    return "unknown"
