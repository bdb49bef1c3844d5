"""End to end: the daemon's sd_notify messages across start, re-exec and stop."""

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from bootbus.client import Client

REPO = Path(__file__).resolve().parent.parent


def _datagrams(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def _wait_for(sock: socket.socket, seen: list[str], needle: str, timeout: float = 10.0) -> None:
    sock.settimeout(timeout)
    while not any(needle in d for d in seen):
        seen.append(sock.recv(4096).decode())
    sock.setblocking(False)
    seen.extend(_datagrams(sock))


def test_ready_status_reloading_and_stopping() -> None:
    with tempfile.TemporaryDirectory(prefix="bb-notify-") as tmp:
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(os.path.join(tmp, "notify"))
        env = {**os.environ, "NOTIFY_SOCKET": os.path.join(tmp, "notify"),
               "JOURNAL_STREAM": "0:0"}
        address = f"unix:path={tmp}/sock"
        proc = subprocess.Popen([sys.executable, "-m", "bootbus", "--address", address,
                                 "--runtime-dir", f"{tmp}/rt", "--print-address"],
                                cwd=REPO, env=env, stdout=subprocess.PIPE)
        seen: list[str] = []
        try:
            assert proc.stdout is not None and proc.stdout.readline()
            _wait_for(notify, seen, "READY=1")
            assert any("STATUS=phase " in d for d in seen), seen
            with Client(address) as client:
                client.call("org.bootbus", "/org/bootbus/Supervisor1",
                            "org.bootbus.Supervisor1", "Reexec", timeout=60)
            _wait_for(notify, seen, "READY=1")
            reloading = [i for i, d in enumerate(seen) if "RELOADING=1" in d]
            ready = [i for i, d in enumerate(seen) if "READY=1" in d]
            assert reloading and "MONOTONIC_USEC=" in seen[reloading[0]], seen
            assert ready[0] < reloading[0] < ready[-1], seen  # READY, RELOADING, READY again
        finally:
            proc.terminate()
            proc.communicate(timeout=10)
            notify.setblocking(False)
            seen.extend(_datagrams(notify))
            notify.close()
        assert any("STOPPING=1" in d for d in seen), seen
