"""What a daemon process holds, read from /proc: its resident memory and its fds.

This module owns the measurements of the hostile suite: VmRSS and the number of
open fds of the daemon under attack, and `settle`, which waits (while nudging
the daemon with cheap calls, so that its collector runs as it would in service)
until both are back within a stated tolerance of a baseline.

It must never signal or otherwise touch the measured process beyond reading
/proc, and never wait without a deadline.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

# How long the daemon may take to give memory and fds back after an attack ends.
SETTLE_TIMEOUT_S = 5.0
SETTLE_POLL_S = 0.05


def rss_kib(pid: int) -> int:
    """The process's resident set size (VmRSS), in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}: has it exited?")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass(frozen=True)
class Footprint:
    rss_kib: int
    fds: int

    @classmethod
    def of(cls, pid: int) -> Footprint:
        return cls(rss_kib(pid), fd_count(pid))


def settle(pid: int, baseline: Footprint, rss_tolerance_kib: int,
           nudge: Callable[[], None]) -> Footprint:
    """Wait until the daemon is back within tolerance of baseline; return what it holds.

    The caller asserts on the returned footprint, so a daemon that never gets
    back gives a failure message with its real numbers.
    """
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        nudge()
        now = Footprint.of(pid)
        if (now.rss_kib <= baseline.rss_kib + rss_tolerance_kib
                and now.fds <= baseline.fds) or time.monotonic() > deadline:
            return now
        time.sleep(SETTLE_POLL_S)


class PeakSampler:
    """Samples the process's VmRSS and fd count in a thread; keeps the peaks."""

    INTERVAL_S = 0.02

    def __init__(self, pid: int) -> None:
        import threading
        self.pid = pid
        self.peak_rss_kib = 0
        self.peak_fds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                now = Footprint.of(self.pid)
            except (OSError, AssertionError):
                return  # the process is gone; the test's own checks say so
            self.peak_rss_kib = max(self.peak_rss_kib, now.rss_kib)
            self.peak_fds = max(self.peak_fds, now.fds)
            self._stop.wait(self.INTERVAL_S)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
