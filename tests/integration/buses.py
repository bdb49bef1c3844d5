"""Start and stop the buses under test: bootbus and the reference dbus-daemon.

This module owns the daemon processes of the integration ring: it starts one
on a fresh socket in a private temporary directory, reads the address the
daemon prints once it accepts connections, and on teardown checks that the
daemon was still alive (a daemon that died during a test is a failure of that
test), stops it with SIGTERM and waits for it.

It must never reuse a daemon between tests, never talk to the system or
session bus of the machine, and never wait on a process without a timeout.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"

BUS_KINDS = ("bootbus", "dbus-daemon")
BUSES_ENV = "BOOTBUS_TEST_BUSES"

# How long a daemon may take to print its address, and to exit on SIGTERM.
STARTUP_TIMEOUT_S = 10.0
SHUTDOWN_TIMEOUT_S = 5.0
# How much of a daemon's stderr a failure message quotes.
LOG_TAIL_CHARS = 4000

DBUS_DAEMON_CONFIG = """\
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class BusError(Exception):
    """A bus under test failed to start, died, or failed to stop."""


def selected_bus_kinds() -> list[str]:
    """The buses named by $BOOTBUS_TEST_BUSES (default: all of them)."""
    raw = os.environ.get(BUSES_ENV, ",".join(BUS_KINDS))
    kinds = [k.strip() for k in raw.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in BUS_KINDS]
    if unknown:
        raise BusError(f"{BUSES_ENV} names unknown buses {unknown}; known: {list(BUS_KINDS)}")
    return kinds


@dataclass
class Bus:
    """One running bus daemon, private to one test."""

    kind: str
    address: str
    socket_path: str
    tmpdir: Path
    process: subprocess.Popen[bytes]
    stderr_path: Path
    stdout_rest: list[bytes] = field(default_factory=list)

    @property
    def is_bootbus(self) -> bool:
        return self.kind == "bootbus"

    def log_tail(self) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return "<no stderr log>"
        return text[-LOG_TAIL_CHARS:]

    def assert_alive(self) -> None:
        """Fail if the daemon has exited: the bus must never die of a peer."""
        code = self.process.poll()
        if code is not None:
            raise BusError(
                f"{self.kind} died during the test (exit status {code}); stderr:\n"
                f"{self.log_tail()}"
            )


def _command(kind: str, tmpdir: Path, socket_path: str,
             extra: tuple[str, ...] = ()) -> list[str]:
    if kind == "bootbus":
        return [
            PYTHON, "-m", "bootbus",
            "--address", f"unix:path={socket_path}",
            "--print-address",
            "--runtime-dir", str(tmpdir / "rt"),
            *extra,
        ]
    config = tmpdir / "bus.conf"
    config.write_text(DBUS_DAEMON_CONFIG.format(socket=socket_path))
    return ["dbus-daemon", "--nofork", "--print-address", f"--config-file={config}"]


def _read_line(stream: IO[bytes], deadline: float) -> tuple[bytes, bytes]:
    """Read one line from a pipe without blocking past the deadline; return it and the rest."""
    fd = stream.fileno()
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                raise BusError(f"no address line within {STARTUP_TIMEOUT_S}s (got {buf!r})")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise BusError(f"daemon closed stdout before printing its address ({buf!r})")
            buf += chunk
    line, _, rest = buf.partition(b"\n")
    return line, rest


def _drain(stream: IO[bytes], sink: list[bytes]) -> None:
    """Keep reading stdout so a chatty daemon never blocks on a full pipe."""
    with stream:
        while chunk := os.read(stream.fileno(), 65536):
            sink.append(chunk)


def start_bus(kind: str, extra_args: tuple[str, ...] = ()) -> Bus:
    """Start a fresh daemon of the given kind; return once it accepts connections.

    ``extra_args`` go to bootbus's command line (e.g. ``--config FILE``)."""
    tmpdir = Path(tempfile.mkdtemp(prefix="bb-it-"))  # short: sun_path is 108 bytes
    socket_path = str(tmpdir / "sock")
    stderr_path = tmpdir / "stderr.log"
    # Bytecode caching is left as the caller set it: a cold compile per test
    # would measure the compiler, not bootbus's start-up.
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            _command(kind, tmpdir, socket_path, extra_args),
            cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
            env=env,
        )
    assert process.stdout is not None
    bus = Bus(kind, "", socket_path, tmpdir, process, stderr_path)
    try:
        line, rest = _read_line(process.stdout, time.monotonic() + STARTUP_TIMEOUT_S)
    except BusError as exc:
        stop_bus(bus, check=False)
        raise BusError(f"{kind} failed to start: {exc}; stderr:\n{bus.log_tail()}") from None
    bus.address = line.decode().strip()
    bus.stdout_rest.append(rest)
    if f"unix:path={socket_path}" not in bus.address:
        stop_bus(bus, check=False)
        raise BusError(f"{kind} printed {bus.address!r}, expected it to listen on {socket_path}")
    threading.Thread(target=_drain, args=(process.stdout, bus.stdout_rest), daemon=True).start()
    return bus


def stop_bus(bus: Bus, *, check: bool = True) -> None:
    """SIGTERM the daemon and wait; with check, fail if it had died or won't stop."""
    problems: list[str] = []
    code = bus.process.poll()
    if code is not None:
        problems.append(f"{bus.kind} had already exited with status {code} before teardown")
    else:
        bus.process.send_signal(signal.SIGTERM)
        try:
            code = bus.process.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            bus.process.kill()
            bus.process.wait(timeout=SHUTDOWN_TIMEOUT_S)
            problems.append(f"{bus.kind} did not exit within {SHUTDOWN_TIMEOUT_S}s of SIGTERM")
        else:
            if code not in (0, -signal.SIGTERM):
                problems.append(f"{bus.kind} exited with status {code} on SIGTERM")
    log = bus.log_tail()
    if bus.is_bootbus and "Traceback" in log:
        problems.append("bootbus logged a Python traceback")
    shutil.rmtree(bus.tmpdir, ignore_errors=True)
    if check and problems:
        raise BusError("; ".join(problems) + f"; stderr:\n{log}")
