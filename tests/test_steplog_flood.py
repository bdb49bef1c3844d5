"""End to end: the daemon's step log stays within its bound under a connection flood."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bootbus.client import Client
from bootbus.io.steplog import STEPLOG_FILENAME, STEPLOG_MAX_BYTES, read_records

REPO = Path(__file__).resolve().parent.parent
CONNECTIONS = 3000  # each logs a connect and a disconnect record: several rotations


def test_step_log_bounded_under_a_flood_of_connections() -> None:
    with tempfile.TemporaryDirectory(prefix="bb-flood-") as tmp:
        sock, rt = os.path.join(tmp, "sock"), os.path.join(tmp, "rt")
        env = {**os.environ, "JOURNAL_STREAM": "0:0"}  # no stderr echo: keep the pipe quiet
        proc = subprocess.Popen([sys.executable, "-m", "bootbus", "--address",
                                 f"unix:path={sock}", "--runtime-dir", rt, "--print-address"],
                                cwd=REPO, stdout=subprocess.PIPE, env=env)
        try:
            assert proc.stdout is not None and proc.stdout.readline()
            address = f"unix:path={sock}"
            for _ in range(CONNECTIONS):
                Client(address).close()
            with Client(address) as last:  # every earlier disconnect has been handled
                last.call("org.freedesktop.DBus", "/org/freedesktop/DBus",
                          "org.freedesktop.DBus", "GetId")
            assert proc.poll() is None, "the daemon died under the flood"
        finally:
            proc.terminate()
            proc.communicate(timeout=10)
        files = [Path(rt) / STEPLOG_FILENAME, Path(rt) / (STEPLOG_FILENAME + ".1")]
        assert files[1].exists(), "the flood must have rotated the log"
        assert sum(f.stat().st_size for f in files) <= STEPLOG_MAX_BYTES
        seqs = [r.seq for r in read_records(rt)]
        assert seqs == list(range(seqs[0], seqs[-1] + 1)), "the newest records, contiguous"
        assert seqs[-1] >= 2 * CONNECTIONS  # nothing was skipped: every step was numbered
