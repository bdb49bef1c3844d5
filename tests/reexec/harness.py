"""A bootbus daemon private to one test, and what a test reads of it from /proc.

This module owns starting ``/usr/bin/python3 -m bootbus`` on a fresh socket
(from the checkout, or from a copy of the package a test may break), keeping
its stderr in a file the test can search, calling its supervisor with
bootbus's small client, and reading the daemon's VmRSS and fds.

It must never talk to the machine's buses, never wait without a timeout, and
never leave the daemon running: :meth:`Daemon.stop` kills what SIGTERM did not
stop, and fails if the daemon had died or logged a traceback.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootbus.client import CallError, Client

REPO = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"  # what bootbus ships with; never the test runner's interpreter
STARTUP_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
REEXEC_TIMEOUT_S = 30.0  # preflight + exec + restore, on a loaded 2-core machine
LOG_WAIT_S = 5.0

SERVICE = "org.bootbus"
PATH = "/org/bootbus/Supervisor1"
IFACE = "org.bootbus.Supervisor1"
DBUS = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"


class DaemonError(Exception):
    """The daemon failed to start, died, or misbehaved outside a test's assertions."""


def copy_package(dest: Path) -> Path:
    """Copy bootbus (sources only, no bytecode) under ``dest``; return the new root."""
    shutil.copytree(REPO / "bootbus", dest / "bootbus",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


@dataclass
class Daemon:
    tmpdir: Path
    socket_path: str
    process: subprocess.Popen[bytes]
    stderr_path: Path
    address: str = ""
    stdout: bytes = b""
    extra: list[Any] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        """stderr: the daemon echoes every step there (and to the step log)."""
        return read_text(self.stderr_path)

    def steplog(self) -> str:
        return steplog_messages(self.tmpdir / "rt")

    def wait_log(self, needle: str, count: int = 1, timeout: float = LOG_WAIT_S) -> str:
        """Wait until stderr holds ``needle`` ``count`` times; return the log."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()
            if text.count(needle) >= count:
                return text
            if time.monotonic() > deadline:
                raise DaemonError(f"{needle!r} not logged {count}x within {timeout}s:\n{text}")
            time.sleep(0.02)

    def client(self, timeout: float = 5.0) -> Client:
        return Client(self.address, timeout=timeout)

    def supervisor(self, member: str, signature: str = "", args: tuple[Any, ...] = (),
                   client: Client | None = None, timeout: float = REEXEC_TIMEOUT_S) -> list[Any]:
        if client is not None:
            return client.call(SERVICE, PATH, IFACE, member, signature, args, timeout=timeout)
        with self.client() as c:
            return c.call(SERVICE, PATH, IFACE, member, signature, args, timeout=timeout)

    def status(self, client: Client | None = None) -> dict[str, Any]:
        (status,) = self.supervisor("GetStatus", client=client, timeout=5.0)
        return {key: value[1] for key, value in status.items()}

    def assert_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise DaemonError(f"bootbus died (exit {code}); stderr:\n{self.log()[-4000:]}")

    def stop(self, check: bool = True) -> None:
        problems = []
        if self.process.poll() is not None:
            problems.append(f"bootbus had exited with {self.process.returncode} before stop")
        else:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
                problems.append("bootbus did not stop on SIGTERM")
        log = self.log()
        if "Traceback" in log:
            problems.append("bootbus logged a traceback")
        if self.process.stdout is not None:
            self.process.stdout.close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        if check and problems:
            raise DaemonError("; ".join(problems) + f"\nstderr:\n{log[-4000:]}")


def start(pythonpath: Path = REPO, env: dict[str, str] | None = None,
          args: tuple[str, ...] = ()) -> Daemon:
    """Start bootbus from ``pythonpath`` (with extra ``args``); return once it prints its
    address."""
    tmpdir = Path(tempfile.mkdtemp(prefix="bb-rx-"))  # short: sun_path is 108 bytes
    socket_path = str(tmpdir / "sock")
    stderr_path = tmpdir / "stderr.log"
    full_env = dict(os.environ, PYTHONPATH=str(pythonpath), **(env or {}))
    full_env.pop("BOOTBUS_LISTENERS", None)
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [PYTHON, "-m", "bootbus", "--address", f"unix:path={socket_path}",
             "--print-address", "--runtime-dir", str(tmpdir / "rt"), *args],
            cwd=tmpdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
            env=full_env)
    daemon = Daemon(tmpdir, socket_path, process, stderr_path)
    try:
        daemon.address = _first_line(daemon).strip()
    except DaemonError:
        daemon.stop(check=False)
        raise
    return daemon


def _first_line(daemon: Daemon) -> str:
    assert daemon.process.stdout is not None
    fd = daemon.process.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                raise DaemonError(f"no address within {STARTUP_TIMEOUT_S}s: {daemon.log()}")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise DaemonError(f"bootbus exited before printing its address: {daemon.log()}")
            buf += chunk
    line, _, rest = buf.partition(b"\n")
    daemon.stdout = rest
    return line.decode()


@contextmanager
def running(pythonpath: Path = REPO, env: dict[str, str] | None = None,
            args: tuple[str, ...] = ()) -> Iterator[Daemon]:
    daemon = start(pythonpath, env, args)
    try:
        yield daemon
    finally:
        daemon.stop()


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def steplog_messages(runtime_dir: Path) -> str:
    """The step log's records as '<priority>message' lines, like stderr's."""
    lines = []
    for line in read_text(runtime_dir / "steplog.jsonl").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a record being written
        lines.append(f"<{record.get('priority')}>{record.get('message')}\n")
    return "".join(lines)


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise DaemonError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> dict[int, str]:
    """The daemon's fds and what they point at (socket:[ino], pipe:[ino], paths)."""
    result = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            result[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except FileNotFoundError:
            continue
    return result


def call_error(exc: BaseException) -> str:
    return exc.name if isinstance(exc, CallError) else type(exc).__name__
