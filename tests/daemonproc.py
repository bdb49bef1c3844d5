"""A bootbus daemon as a child process, for tests that talk to a real one.

Starts `python3 -m bootbus` on a socket in a test's temporary directory, waits for
the address it prints (which it prints once it listens), and stops it with SIGTERM.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
PYTHON = "/usr/bin/python3"
STOP_TIMEOUT_S = 10


@contextlib.contextmanager
def running_daemon(tmp: Path, *args: str, stderr: IO[str] | int = subprocess.DEVNULL,
                   preexec_fn: Callable[[], None] | None = None,
                   ) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The daemon listening on ``unix:path=TMP/sock`` with ``TMP/rt`` as its runtime
    directory and ``args`` added, and that address."""
    address = f"unix:path={tmp}/sock"
    proc = subprocess.Popen(
        [PYTHON, "-m", "bootbus", "--address", address, "--runtime-dir", str(tmp / "rt"),
         *args, "--print-address"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True,
        preexec_fn=preexec_fn)  # noqa: PLW1509 (a test's own process: no threads to fear)
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith(address + ","), f"daemon printed {line!r}"
        yield proc, address
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(STOP_TIMEOUT_S)
        proc.stdout.close()
