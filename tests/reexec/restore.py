"""Hand a daemon a snapshot and the fds it names, as the previous image would.

This module owns the pieces the snapshot tests share: loading the committed
fixtures and their description, re-signing edited records (the SHA-256
trailer), starting ``python3 -m bootbus --restore-fd N`` through fdexec.py
with every fd at the number the snapshot names and ``BOOTBUS_LISTENERS`` set,
and :class:`Wire`, a raw end of a restored connection read with jeepney's
parser (with the fds that arrive).

It never starts a daemon that outlives the test: :class:`Restoring` is a
context manager that stops it.
"""

from __future__ import annotations

import array
import hashlib
import importlib.util
import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Self

from jeepney.low_level import Message, MessageType, Parser

from . import harness

SNAPSHOTS = harness.REPO / "tests" / "data" / "snapshots"
FDEXEC = Path(__file__).resolve().parent / "fdexec.py"
MEMFD_TARGET = 60  # where the restoring daemon finds the snapshot (above every fixture fd)
WIRE_TIMEOUT_S = 5.0
MAX_FDS = 16


def fixture_module() -> ModuleType:
    """tests/data/snapshots/generate.py, for its FIXTURE description."""
    spec = importlib.util.spec_from_file_location("snapshot_generate", SNAPSHOTS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIXTURE: dict[str, Any] = fixture_module().FIXTURE


def records(data: bytes) -> list[dict[str, Any]]:
    """The records of a snapshot, without the end record."""
    return [json.loads(line) for line in data.splitlines()[:-1]]


def sign(recs: list[dict[str, Any]]) -> bytes:
    """A snapshot of these records with a correct end record."""
    body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in recs).encode()
    end = {"t": "end", "records": len(recs), "sha256": hashlib.sha256(body).hexdigest()}
    return body + json.dumps(end).encode() + b"\n"


class Wire:
    """One raw end of a connection the daemon restored."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(WIRE_TIMEOUT_S)
        self.parser = Parser()
        self.serial = 100
        self.fds: list[int] = []  # every fd received, in order; the test closes them

    def send(self, msg: Message) -> int:
        self.serial += 1
        self.sock.sendall(msg.serialise(serial=self.serial))
        return self.serial

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive(self) -> Message:
        deadline = time.monotonic() + WIRE_TIMEOUT_S
        while True:
            msg = self.parser.get_next_message()
            if msg is not None:
                return msg
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data, anc, _flags, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(4 * MAX_FDS))
            if not data:
                raise ConnectionError("the bus closed this connection")
            fds = []
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.extend(array.array("i", payload[:len(payload) - len(payload) % 4]))
            self.fds.extend(fds)
            self.parser.add_data(data, [_Fd(fd) for fd in fds])

    def receive_until(self, wanted: int) -> list[Message]:
        """``wanted`` messages, skipping NameAcquired/NameOwnerChanged signals of the bus."""
        got: list[Message] = []
        while len(got) < wanted:
            msg = self.receive()
            if msg.header.message_type is MessageType.signal and msg.header.fields.get(
                    6) is None and str(msg.header.fields.get(2)) == "org.freedesktop.DBus":
                continue
            got.append(msg)
        return got

    def closed_by_bus(self) -> bool:
        """True once the bus closed its end (EOF after whatever was queued)."""
        self.sock.settimeout(WIRE_TIMEOUT_S)
        try:
            while self.sock.recv(65536):
                pass
        except OSError:
            return False
        return True


class _Fd:
    """What jeepney's parser holds for a received fd; Wire.fds owns the fd itself."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


class Restoring:
    """A daemon restoring ``snapshot``, with fixture fds backed by real sockets and a pipe.

    ``peers[role]`` is our end of each connection the snapshot names;
    ``pipe_read`` reads the pipe whose write end rides in the snapshot;
    ``address`` is the inherited listener's.
    """

    def __init__(self, snapshot: bytes, listener_only: bool = False) -> None:
        self.tmpdir = Path(tempfile.mkdtemp(prefix="bb-rs-"))
        self.path = str(self.tmpdir / "sock")
        self.address = f"unix:path={self.path}"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(16)
        self.peers: dict[str, Wire] = {}
        theirs: dict[int, int] = {FIXTURE["listener_fd"]: self.listener.fileno()}
        self._close_after_start: list[int] = []
        if not listener_only:
            for role, number in FIXTURE["fds"].items():
                ours, daemons = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                self.peers[role] = Wire(ours)
                theirs[number] = daemons.detach()
            self.pipe_read, pipe_write = os.pipe()
            theirs[FIXTURE["passed_fd"]] = pipe_write
        else:
            self.pipe_read = -1
        memfd = os.memfd_create("fixture")
        os.write(memfd, snapshot)
        os.lseek(memfd, 0, os.SEEK_SET)
        theirs[MEMFD_TARGET] = memfd
        self.stderr_path = self.tmpdir / "stderr.log"
        env = dict(os.environ, PYTHONPATH=str(harness.REPO), BOOTBUS_LISTENERS=json.dumps(
            [[FIXTURE["listener_fd"], self.address, self.path]]))
        mapping = json.dumps({str(k): v for k, v in theirs.items()})
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [harness.PYTHON, str(FDEXEC), mapping, harness.PYTHON, "-m", "bootbus",
                 "--runtime-dir", str(self.tmpdir / "rt"), "--restore-fd", str(MEMFD_TARGET)],
                cwd=self.tmpdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=stderr, env=env, pass_fds=list(theirs.values()))
        for number, fd in theirs.items():
            if number != FIXTURE["listener_fd"]:
                os.close(fd)
        self.listener.close()  # the daemon has it now

    def log(self) -> str:
        return harness.read_text(self.stderr_path)

    def wait_log(self, needle: str, timeout: float = harness.STARTUP_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout
        while needle not in (text := self.log()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise harness.DaemonError(f"{needle!r} not logged (exit {self.process.poll()}):"
                                          f"\n{text}")
            time.sleep(0.02)
        return text

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        daemon = harness.Daemon(self.tmpdir, self.path, self.process, self.stderr_path)
        try:
            daemon.stop()
        finally:
            for wire in self.peers.values():
                wire.sock.close()
                for fd in wire.fds:
                    os.close(fd)
            if self.pipe_read >= 0:
                os.close(self.pipe_read)
