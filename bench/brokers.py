"""Starting and stopping the brokers under test on private sockets.

Owns: the three ways to launch a bus (bootbus, dbus-daemon, dbus-broker),
their generated configuration, the readiness probe (connect, SASL EXTERNAL,
Hello) that also times startup, and finding the process whose CPU and memory
are measured. For dbus-broker that is the `dbus-broker` process spawned by
`dbus-broker-launch`, never the launcher.

dbus-broker-launch wants a socket-activated listener and a journal socket,
so it runs in a private mount namespace (`unshare -m`) where a tmpfs covers
/run/systemd and our own datagram socket is bound over
/run/systemd/journal; the listener arrives as fd 3 with LISTEN_FDS=1 and
LISTEN_PID set to the launcher's own pid.

It must never touch the host's buses or /run: everything lives in one
temporary directory, and every process it starts is stopped by pid.
"""

from __future__ import annotations

import collections
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import procfs

REPO = Path(__file__).resolve().parent.parent
PYCACHE = REPO / "bench" / "build" / "pycache"  # bootbus bytecode (git-ignored)
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.0005  # connect retry while the socket does not exist yet
JOURNAL_LINES_KEPT = 50  # dbus-broker log lines kept for error reports
FD_FLOOR = 10  # fds handed to the dbus-broker shell (bash: dash only knows 0-9) start here
LISTEN_BACKLOG = 4096

# Generous limits so no broker refuses 1,000 clients or deep queues; the
# same file configures dbus-daemon and dbus-broker-launch.
CONFIG_TEMPLATE = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
{listen}  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
    <allow own="*"/>
  </policy>
  <limit name="max_incoming_bytes">1000000000</limit>
  <limit name="max_outgoing_bytes">1000000000</limit>
  <limit name="max_message_size">1000000000</limit>
  <limit name="max_completed_connections">100000</limit>
  <limit name="max_incomplete_connections">10000</limit>
  <limit name="max_connections_per_user">100000</limit>
  <limit name="max_names_per_connection">50000</limit>
  <limit name="max_match_rules_per_connection">50000</limit>
  <limit name="max_replies_per_connection">50000</limit>
</busconfig>
"""


class BrokerError(RuntimeError):
    """A broker failed to start, answer or stop."""


# ---------------------------------------------------------------- probe


def _field(code: int, sig: bytes, value: bytes, offset: int) -> bytes:
    """One header field (code, variant) starting at `offset` (8-aligned)."""
    out = bytes([code, 1]) + sig + b"\0"
    if sig == b"g":
        return out + bytes([len(value)]) + value + b"\0"
    return out + struct.pack("<I", len(value)) + value + b"\0"


def hello_message() -> bytes:
    """The Hello method call, little-endian, serial 1."""
    fields = b""
    for code, sig, value in (
        (1, b"o", b"/org/freedesktop/DBus"),
        (2, b"s", b"org.freedesktop.DBus"),
        (3, b"s", b"Hello"),
        (6, b"s", b"org.freedesktop.DBus"),
    ):
        fields += b"\0" * (-len(fields) % 8)
        fields += _field(code, sig, value, len(fields))
    header = b"l\x01\x00\x01" + struct.pack("<III", 0, 1, len(fields)) + fields
    return header + b"\0" * (-len(header) % 8)


HELLO = hello_message()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise BrokerError("bus closed the connection during the probe")
        data += chunk
    return data


def probe_hello(path: str, timeout: float) -> None:
    """Connect, authenticate with EXTERNAL and wait for the Hello reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        uid = str(os.getuid()).encode().hex().encode()
        sock.sendall(b"\0AUTH EXTERNAL " + uid + b"\r\n")
        line = b""
        while not line.endswith(b"\r\n"):
            line += _recv_exact(sock, 1)
        if not line.startswith(b"OK "):
            raise BrokerError(f"SASL EXTERNAL rejected: {line!r}")
        sock.sendall(b"BEGIN\r\n" + HELLO)
        fixed = _recv_exact(sock, 16)
        if fixed[0:1] != b"l":
            raise BrokerError("probe expects a little-endian Hello reply")
        body_len, _serial, fields_len = struct.unpack("<III", fixed[4:16])
        rest = fields_len + (-(16 + fields_len) % 8) + body_len
        _recv_exact(sock, rest)
        if fixed[1] != 2:
            raise BrokerError(f"Hello answered with message type {fixed[1]}")


def wait_for_hello(path: str, proc: subprocess.Popen[bytes], log: Path) -> float:
    """Poll until a Hello is answered on `path`; returns the monotonic time."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            probe_hello(path, timeout=START_TIMEOUT_S)
            return time.monotonic()
        except (FileNotFoundError, ConnectionRefusedError):
            pass
        if proc.poll() is not None:
            raise BrokerError(f"exited with {proc.returncode} before answering Hello: {tail(log)}")
        if time.monotonic() > deadline:
            raise BrokerError(f"no Hello answered within {START_TIMEOUT_S:.0f} s: {tail(log)}")
        time.sleep(POLL_INTERVAL_S)


def tail(log: Path, lines: int = 8) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def clean_env() -> dict[str, str]:
    """Our environment minus anything that would point a broker elsewhere."""
    env = dict(os.environ)
    for key in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
                "DBUS_SESSION_BUS_ADDRESS", "DBUS_SYSTEM_BUS_ADDRESS", "DBUS_STARTER_ADDRESS"):
        env.pop(key, None)
    return env


# ---------------------------------------------------------------- running brokers


@dataclass
class Running:
    """One started broker: where to reach it and which pid to measure."""

    name: str
    path: str  # socket path
    proc: subprocess.Popen[bytes]
    pid: int  # the process measured
    startup_s: float  # exec to first Hello answered
    log: Path
    extra_pids: list[int] = field(default_factory=list)  # stopped after proc
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"unix:path={self.path}"

    def check_alive(self) -> None:
        if self.proc.poll() is not None or not procfs.alive(self.pid):
            raise BrokerError(f"{self.name} is no longer running: {tail(self.log)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.extra_pids:
            _stop_pid(pid)
        for close in self.cleanup:
            close()


def _stop_pid(pid: int) -> None:
    """Stop a process we started but do not wait() on (a launcher's child)."""
    deadline = time.monotonic() + STOP_TIMEOUT_S
    sig = signal.SIGTERM
    while procfs.alive(pid):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
        time.sleep(0.01)


class Broker(Protocol):
    name: str

    def unavailable(self) -> str | None:
        """Why this broker cannot run here, or None."""

    def version(self) -> str: ...

    def cpu_note(self) -> str: ...

    def start(self, workdir: Path) -> Running: ...


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, check=False, capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


class Bootbus:
    name = "bootbus"

    def __init__(self, python: str) -> None:
        self.python = python
        self._compiled = False

    def _precompile(self, env: dict[str, str]) -> None:
        """Bytecode for bootbus in bench/build/pycache, as an installed package has it:
        startup then measures bootbus, not the compiler, and the repo stays clean."""
        if self._compiled:
            return
        result = subprocess.run([self.python, "-m", "compileall", "-q", str(REPO / "bootbus")],
                                check=False, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise BrokerError(f"compileall failed: {result.stdout}{result.stderr}")
        self._compiled = True

    def unavailable(self) -> str | None:
        if not (REPO / "bootbus" / "__main__.py").exists():
            return f"{REPO / 'bootbus' / '__main__.py'} does not exist yet"
        if not Path(self.python).exists():
            return f"{self.python} is missing"
        return None

    def version(self) -> str:
        rev = _first_line(["git", "-C", str(REPO), "describe", "--always", "--dirty"])
        return f"bootbus {rev}"

    def cpu_note(self) -> str:
        return "the bootbus process (all threads), bytecode precompiled"

    def start(self, workdir: Path) -> Running:
        path = str(workdir / "bus.sock")
        runtime = workdir / "runtime"
        runtime.mkdir()
        log = workdir / "broker.log"
        env = clean_env()
        env["PYTHONPATH"] = str(REPO)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        self._precompile(env)
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # read the bytecode above, write nothing
        argv = [self.python, "-m", "bootbus", "--address", f"unix:path={path}",
                "--print-address", "--runtime-dir", str(runtime)]
        with log.open("wb") as out:
            t0 = time.monotonic()
            proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            t1 = wait_for_hello(path, proc, log)
        except BaseException:
            _kill(proc)
            raise
        return Running(self.name, path, proc, proc.pid, t1 - t0, log)


class DbusDaemon:
    name = "dbus-daemon"

    def unavailable(self) -> str | None:
        return None if shutil.which("dbus-daemon") else "dbus-daemon is not installed"

    def version(self) -> str:
        return _first_line(["dbus-daemon", "--version"])

    def cpu_note(self) -> str:
        return "the dbus-daemon process"

    def start(self, workdir: Path) -> Running:
        path = str(workdir / "bus.sock")
        config = workdir / "bus.conf"
        config.write_text(CONFIG_TEMPLATE.format(listen=f"  <listen>unix:path={path}</listen>\n"))
        log = workdir / "broker.log"
        argv = ["dbus-daemon", f"--config-file={config}", "--nofork", "--nopidfile"]
        with log.open("wb") as out:
            t0 = time.monotonic()
            proc = subprocess.Popen(argv, env=clean_env(), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            t1 = wait_for_hello(path, proc, log)
        except BaseException:
            _kill(proc)
            raise
        return Running(self.name, path, proc, proc.pid, t1 - t0, log)


class Journal:
    """A datagram socket standing in for journald; keeps the last messages."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(directory / "socket"))
        self.lines: collections.deque[str] = collections.deque(maxlen=JOURNAL_LINES_KEPT)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                return
            if not data:  # close() shut the socket down
                return
            for entry in data.split(b"\n"):
                if entry.startswith(b"MESSAGE="):
                    self.lines.append(entry[8:].decode(errors="replace"))


    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class DbusBroker:
    name = "dbus-broker"

    def unavailable(self) -> str | None:
        for tool in ("dbus-broker-launch", "dbus-broker", "unshare", "mount", "bash"):
            if not shutil.which(tool):
                return f"{tool} is not installed"
        if os.geteuid() != 0:
            return "dbus-broker-launch runs in a private mount namespace, which needs root"
        probe = subprocess.run(["unshare", "-m", "true"], check=False, capture_output=True,
                               text=True)
        if probe.returncode != 0:
            return f"unshare -m failed: {probe.stderr.strip()}"
        return None

    def version(self) -> str:
        return _first_line(["dbus-broker", "--version"])

    def cpu_note(self) -> str:
        return "the dbus-broker process only, not dbus-broker-launch"

    def start(self, workdir: Path) -> Running:
        path = str(workdir / "bus.sock")
        config = workdir / "bus.conf"
        config.write_text(CONFIG_TEMPLATE.format(listen=""))
        log = workdir / "broker.log"
        journal = Journal(workdir / "journal")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(LISTEN_BACKLOG)
        listen_fd = fcntl.fcntl(listener.fileno(), fcntl.F_DUPFD_CLOEXEC, FD_FLOOR)
        ready_r, ready_w = os.pipe()
        ready_w_high = fcntl.fcntl(ready_w, fcntl.F_DUPFD_CLOEXEC, FD_FLOOR)
        os.close(ready_w)
        script = self._script(workdir / "journal", config, listen_fd, ready_w_high)
        env = clean_env()
        env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={path}"  # the launcher's own connection
        try:
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    ["unshare", "-m", "--propagation", "private", "bash", "-c", script],
                    env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    pass_fds=(listen_fd, ready_w_high))
        finally:
            os.close(listen_fd)
            os.close(ready_w_high)
        try:
            if not os.read(ready_r, 1):  # the shell is about to exec the launcher
                raise BrokerError(f"namespace setup failed: {tail(log)}")
            t0 = time.monotonic()
            t1 = wait_for_hello(path, proc, log)
            pid = self._broker_pid(proc.pid)
        except BaseException:
            _kill(proc)
            listener.close()
            journal.close()
            raise
        finally:
            os.close(ready_r)
        return Running(self.name, path, proc, pid, t1 - t0, log, [pid],
                       [listener.close, journal.close])

    @staticmethod
    def _script(journal_dir: Path, config: Path, listen_fd: int, ready_fd: int) -> str:
        return f"""set -e
if [ -d /run/systemd ]; then mount -t tmpfs -o mode=0755 tmpfs /run/systemd
else mount -t tmpfs -o mode=0755 tmpfs /run; mkdir /run/systemd; fi
mkdir /run/systemd/journal
mount --bind '{journal_dir}' /run/systemd/journal
export LISTEN_FDS=1 LISTEN_PID=$$
printf x >&{ready_fd}
exec dbus-broker-launch --scope user --config-file '{config}' 3<&{listen_fd} {listen_fd}<&- {ready_fd}>&-
"""

    @staticmethod
    def _broker_pid(launcher: int) -> int:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            for child in procfs.children(launcher):
                try:
                    if procfs.comm(child) == "dbus-broker":
                        return child
                except FileNotFoundError:
                    continue
            time.sleep(0.01)
        raise BrokerError("dbus-broker-launch did not spawn dbus-broker")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def all_brokers(python: str) -> list[Broker]:
    """Every broker the benchmark knows, in table order."""
    return [Bootbus(python), DbusDaemon(), DbusBroker()]
