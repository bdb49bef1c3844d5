"""The journald bridge: native protocol, replay once and in order, restarts.

A fake journald (a datagram socket at an injected path with its own parser of
the native protocol) checks the bridge in-process, without sleeps. As root
with unshare, the same is checked against libsystemd's encoder and against
the real systemd-journald running in a private mount namespace.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import functools
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bootbus.io.journal as journal_mod
from bootbus.io.journal import (
    JOURNAL_BACKOFF_USEC,
    JOURNAL_CURSOR_FILENAME,
    JOURNAL_RETRY_USEC,
    JournalBridge,
    JournalSocket,
    encode_entry,
    journal_field_name,
    record_fields,
)
from bootbus.io.steplog import LOG_ERR, LOG_INFO, LOG_NOTICE, Record, StepLog, read_records
from fakes import FakeClock

# -- an independent parser of the native protocol -----------------------------


def parse_native(data: bytes) -> list[tuple[str, bytes]]:
    """NAME=value lines, or NAME, newline, u64le length, value, newline."""
    fields: list[tuple[str, bytes]] = []
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        line = data[pos:end]
        if b"=" in line:
            name, _, value = line.partition(b"=")
            pos = end + 1
        else:
            name = line
            (size,) = struct.unpack_from("<Q", data, end + 1)
            start = end + 1 + 8
            value = data[start : start + size]
            assert (
                data[start + size : start + size + 1] == b"\n"
            ), "binary field must end in a newline"
            pos = start + size + 1
        assert name and name.upper() == name and not name.startswith(b"_"), name
        fields.append((name.decode(), value))
    return fields


class FakeJournald:
    """Binds the injected path; `receive()` drains and parses what arrived."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.memfds_seen = 0
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        self.sock.bind(str(path))

    def receive(self) -> list[dict[str, str]]:
        entries: list[dict[str, str]] = []
        while True:
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(4 * 4))
            except BlockingIOError:
                return entries
            fds = [
                fd
                for level, kind, raw in ancdata
                for fd in array.array("i", raw[: len(raw) - len(raw) % 4])
            ]
            if fds:
                assert data == b"" and len(fds) == 1, "an fd comes alone with an empty payload"
                data = self._read_memfd(fds[0])
            entries.append({name: value.decode() for name, value in parse_native(data)})

    def _read_memfd(self, fd: int) -> bytes:
        try:
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
            assert (
                seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SHRINK
            ), "journald wants it sealed"
            self.memfds_seen += 1
            return os.pread(fd, os.fstat(fd).st_size, 0)
        finally:
            os.close(fd)

    def stop(self) -> None:
        self.sock.close()


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock(monotonic=3_000_000)
        self.runtime = tmp_path / "rt"
        self.runtime.mkdir()
        self.socket_path = tmp_path / "journal-socket"
        self.kmsg = tmp_path / "kmsg"
        self.kmsg.touch()
        self.bridge = JournalBridge(
            self.runtime, socket_path=str(self.socket_path), clock=self.clock
        )
        self.log = self.open_log()
        self.received: list[dict[str, str]] = []

    def open_log(self) -> StepLog:
        return StepLog(
            self.runtime,
            clock=self.clock,
            phase="initramfs",
            kmsg_path=str(self.kmsg),
            sink=self.bridge,
            pid=77,
        )

    def reexec(self) -> None:
        """What a re-exec keeps: the runtime directory, nothing in memory."""
        self.log.close()
        self.bridge.close()
        self.bridge = JournalBridge(
            self.runtime, socket_path=str(self.socket_path), clock=self.clock
        )
        self.log = self.open_log()

    def close(self) -> None:
        self.log.close()
        self.bridge.close()

    def catch_up(self, journald: FakeJournald) -> list[dict[str, str]]:
        """Let time pass until the bridge has nothing left to do; what journald got."""
        got: list[dict[str, str]] = []
        for _ in range(10_000):
            got += journald.receive()
            deadline = self.bridge.next_deadline_usec()
            if deadline is None:
                break
            self.clock.monotonic = max(self.clock.monotonic, deadline)
            self.log.poll()
        else:
            raise AssertionError("the bridge never caught up")
        return got + journald.receive()


@pytest.fixture
def s(tmp_path: Path) -> Iterator[Setup]:
    setup = Setup(tmp_path)
    yield setup
    setup.close()


def seqs(entries: list[dict[str, str]]) -> list[int]:
    return [int(e["BOOTBUS_SEQ"]) for e in entries]


# -- the protocol ---------------------------------------------------------------


def test_encode_entry_text_and_binary_forms() -> None:
    assert encode_entry([("MESSAGE", "hello"), ("PRIORITY", "6")]) == b"MESSAGE=hello\nPRIORITY=6\n"
    assert encode_entry([("MESSAGE", "two\nlines"), ("X", b"=\x00")]) == (
        b"MESSAGE\n" + (9).to_bytes(8, "little") + b"two\nlines\n" + b"X==\x00\n"
    )
    assert encode_entry([("EMPTY", "")]) == b"EMPTY=\n"


field_names = st.from_regex(r"[A-Z][A-Z0-9_]{0,63}", fullmatch=True)
field_values = st.text() | st.binary()


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.tuples(field_names, field_values), max_size=20))
def test_encode_entry_parses_back(fields: list[tuple[str, str | bytes]]) -> None:
    expected = [(n, v.encode("utf-8", "replace") if isinstance(v, str) else v) for n, v in fields]
    assert parse_native(encode_entry(fields)) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("PEER_PID", "PEER_PID"),
        ("peer-pid", "PEER_PID"),
        ("_COMM", "BOOTBUS_COMM"),
        ("__X", "BOOTBUS__X"),
        ("1ST", "BOOTBUS_1ST"),
        ("MESSAGE", "BOOTBUS_FIELD_MESSAGE"),
        ("bootbus_seq", "BOOTBUS_FIELD_BOOTBUS_SEQ"),
        ("é", None),
        ("___", None),
        ("A" * 100, "A" * 64),
    ],
)
def test_journal_field_names(name: str, expected: str | None) -> None:
    assert journal_field_name(name) == expected


def test_record_fields_carry_the_original_clocks() -> None:
    record = Record(
        9,
        1_600_000_000_123_456,
        42_000,
        "initramfs",
        LOG_ERR,
        "m",
        {"_COMM": "cryptsetup", "PRIORITY": "0"},
    )
    fields = dict(record_fields(record, replayed=True))
    assert fields == {
        "MESSAGE": "m",
        "PRIORITY": "3",
        "SYSLOG_FACILITY": "3",
        "SYSLOG_IDENTIFIER": "bootbus",
        "BOOTBUS_SEQ": "9",
        "BOOTBUS_REALTIME_USEC": "1600000000123456",
        "BOOTBUS_MONOTONIC_USEC": "42000",
        "BOOTBUS_PHASE": "initramfs",
        "BOOTBUS_REPLAYED": "1",
        "BOOTBUS_COMM": "cryptsetup",
        "BOOTBUS_FIELD_PRIORITY": "0",
    }
    own = Record(1, 1, 1, "p", LOG_INFO, "m", {"SYSLOG_IDENTIFIER": "early-tool"})
    assert dict(record_fields(own, replayed=False))["SYSLOG_IDENTIFIER"] == "early-tool"
    assert "BOOTBUS_REPLAYED" not in dict(record_fields(own, replayed=False))


def test_large_entry_goes_as_a_sealed_memfd(tmp_path: Path) -> None:
    journald = FakeJournald(tmp_path / "socket")
    sock = JournalSocket(str(journald.path))
    sock.connect()
    big = "x" * 600_000  # beyond any datagram the kernel takes
    sock.send(encode_entry([("MESSAGE", big), ("BLOB", "a\nb")]))
    sock.send(encode_entry([("MESSAGE", "small")]))
    got = journald.receive()
    assert got == [{"MESSAGE": big, "BLOB": "a\nb"}, {"MESSAGE": "small"}]
    assert journald.memfds_seen == 1
    sock.close()
    journald.stop()


# -- replay ----------------------------------------------------------------------


def test_records_from_before_journald_arrive_once_in_order_with_original_clocks(s: Setup) -> None:
    early = [s.log.info(f"early {i}", STEP=str(i)) for i in range(4)]
    s.clock.advance(1234)
    early.append(s.log.log(LOG_NOTICE, "multi\nline", {"_COMM": "early-tool"}))
    assert not s.bridge.reachable
    assert len(s.kmsg.read_bytes().splitlines()) == 5, "with no journald, kmsg gets everything"

    journald = FakeJournald(s.socket_path)
    assert s.bridge.next_deadline_usec() == s.clock.monotonic - 1234 + JOURNAL_RETRY_USEC
    s.log.poll()  # not due yet: nothing happens before the retry interval
    assert journald.receive() == []
    got = s.catch_up(journald)

    assert seqs(got) == [1, 2, 3, 4, 5]
    for entry, record in zip(got, early):
        assert entry["MESSAGE"] == record.message
        assert entry["BOOTBUS_REALTIME_USEC"] == str(record.realtime_usec)
        assert entry["BOOTBUS_MONOTONIC_USEC"] == str(record.monotonic_usec)
        assert entry["BOOTBUS_PHASE"] == "initramfs"
        assert entry["BOOTBUS_REPLAYED"] == "1"
    assert got[4]["BOOTBUS_COMM"] == "early-tool"
    assert got[0]["STEP"] == "0"
    assert s.bridge.reachable and s.bridge.cursor == 5

    s.log.set_phase("root")
    live = s.log.info("live")
    got = journald.receive()
    assert seqs(got) == [6, 7]
    assert got[1]["MESSAGE"] == "live" and "BOOTBUS_REPLAYED" not in got[1]
    assert got[1]["BOOTBUS_REALTIME_USEC"] == str(live.realtime_usec)
    assert len(s.kmsg.read_bytes().splitlines()) == 5, "info goes only to journald once it is there"
    s.log.poll()
    assert journald.receive() == [], "nothing is sent twice"
    journald.stop()


def test_journald_restart_replays_what_it_missed(s: Setup) -> None:
    journald = FakeJournald(s.socket_path)
    s.log.info("a")
    s.log.info("b")
    assert seqs(journald.receive()) == [1, 2]

    journald.stop()  # journald dies; its socket file stays behind
    s.log.info("c")  # the send fails: journald is gone
    assert not s.bridge.reachable
    s.log.info("d")
    s.log.error("e")
    assert b"bootbus[77]: c" in s.kmsg.read_bytes()

    journald = FakeJournald(s.socket_path)  # a new journald, a new socket inode
    got = s.catch_up(journald)
    assert seqs(got) == [3, 4, 5, 6]
    assert [e["MESSAGE"] for e in got] == ["c", "d", "e", "journald restarted"]
    assert all(e["BOOTBUS_REPLAYED"] == "1" for e in got[:3])
    assert s.bridge.restarts == 1

    # A restart while idle: the next send fails, and the bridge reconnects at once.
    journald.stop()
    journald = FakeJournald(s.socket_path)
    s.log.info("f")
    got = journald.receive()
    assert [(e["BOOTBUS_SEQ"], e["MESSAGE"]) for e in got] == [
        ("7", "f"),
        ("8", "journald restarted"),
    ]
    assert s.bridge.restarts == 2
    journald.stop()


def test_cursor_survives_reexec_and_crash(s: Setup) -> None:
    journald = FakeJournald(s.socket_path)
    for i in range(3):
        s.log.info(f"first life {i}")
    assert seqs(journald.receive()) == [1, 2, 3]
    journald.stop()
    s.log.info("while journald is away")
    s.reexec()
    assert (s.runtime / JOURNAL_CURSOR_FILENAME).read_text().strip() == "00000000000000000003"
    s.log.info("second life")

    journald = FakeJournald(s.socket_path)
    got = s.catch_up(journald)
    # This process never saw journald go away, so it reports no restart.
    assert [e["MESSAGE"] for e in got] == ["while journald is away", "second life"]
    assert seqs(got) == [4, 5]

    # kill -9: no close(), the new process finds the cursor already written.
    s.log.close()  # (only to keep the test's fds tidy; nothing is flushed by it)
    s.bridge.close()
    s.bridge = JournalBridge(s.runtime, socket_path=str(s.socket_path), clock=s.clock)
    s.log = s.open_log()
    s.log.info("third life")
    got = s.catch_up(journald)
    assert [e["MESSAGE"] for e in got] == ["third life"]
    journald.stop()


def test_busy_journald_gets_everything_in_order(s: Setup) -> None:
    journald = FakeJournald(s.socket_path)
    for i in range(60):  # journald is not reading: its queue fills (EAGAIN)
        s.log.info(f"burst {i}")
    assert s.bridge.cursor < 60
    deadline = s.bridge.next_deadline_usec()
    assert deadline is not None and deadline - s.clock.monotonic <= JOURNAL_BACKOFF_USEC
    got = s.catch_up(journald)
    assert seqs(got) == list(range(1, 61))
    assert [e["MESSAGE"] for e in got] == [f"burst {i}" for i in range(60)]
    journald.stop()


def test_pending_overflow_falls_back_to_the_file(s: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_mod, "PENDING_MAX", 5)
    journald = FakeJournald(s.socket_path)
    for i in range(100):
        s.log.info(f"r{i}")
    got = s.catch_up(journald)
    assert seqs(got) == list(range(1, 101))
    journald.stop()


class PoisonedSocket(JournalSocket):
    """A real socket whose send() fails as a journald would for an entry it cannot take."""

    refused: tuple[bytes, ...] = (b"poison",)

    def send(self, payload: bytes) -> None:
        if any(word in payload for word in self.refused):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        super().send(payload)


class VeryPoisonedSocket(PoisonedSocket):
    refused = (b"poison", b"refused")  # the bridge's own note is refused as well


@pytest.mark.parametrize("transport", [PoisonedSocket, VeryPoisonedSocket])
def test_an_entry_journald_refuses_is_skipped_not_retried_forever(
    s: Setup, transport: type[PoisonedSocket]
) -> None:
    s.bridge.close()
    s.bridge = JournalBridge(
        s.runtime, socket_path=str(s.socket_path), clock=s.clock, transport=transport
    )
    s.log.close()
    s.log = s.open_log()
    journald = FakeJournald(s.socket_path)
    s.log.info("before")
    s.log.info("poison 1")
    s.log.info("poison 2")
    s.log.info("after")
    got = [e["MESSAGE"] for e in journald.receive()]
    if transport is PoisonedSocket:
        assert got == [
            "before",
            "journald refused record 2: Invalid argument",
            "journald refused record 4: Invalid argument",
            "after",
        ]
        assert s.bridge.dropped == 2
    else:  # one note per streak of refusals: a refused note does not beget another
        assert got == ["before", "after"]
        assert s.bridge.dropped == 3  # poison 1, its note, poison 2 (same streak: no note)
    assert s.bridge.cursor == s.log.last_seq
    journald.stop()


def test_records_rotated_away_are_reported_lost(s: Setup) -> None:
    s.log.close()
    s.log = StepLog(
        s.runtime, clock=s.clock, kmsg_path=None, sink=s.bridge, max_bytes=2 * 16 * 1024, pid=77
    )
    for i in range(400):
        s.log.info(f"{i:04d} " + "z" * 300)
    journald = FakeJournald(s.socket_path)
    got = s.catch_up(journald)
    kept = [r.seq for r in read_records(s.runtime) if r.seq <= 400]
    assert seqs(got)[: len(kept)] == kept
    lost_note = got[len(kept)]
    assert lost_note["MESSAGE"].endswith("step-log records rotated away before journald took them")
    assert int(lost_note["LOST"]) == kept[0] - 1 == s.bridge.lost
    journald.stop()


# -- against libsystemd and the real journald (root + namespaces) ----------------


@functools.cache
def _namespaces_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to make a private mount namespace"
    if shutil.which("unshare") is None:
        return "needs unshare (util-linux)"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return f"unshare -m does not work here: {probe.stderr.decode().strip()}"
    return None


needs_namespaces = pytest.mark.skipif(
    _namespaces_reason() is not None, reason=str(_namespaces_reason())
)


@pytest.mark.root
@needs_namespaces
def test_datagrams_match_libsystemd(tmp_path: Path) -> None:
    """systemd-python (libsystemd's sd_journal_sendv) and our encoder agree."""
    pytest.importorskip("systemd.journal", reason="python3-systemd is not installed")
    jdir = tmp_path / "journal"
    jdir.mkdir()
    journald = FakeJournald(jdir / "socket")
    sender = tmp_path / "send.py"
    sender.write_text(
        "from systemd import journal\n"
        'journal.send("two\\nlines", PRIORITY="5", CODE_FILE="f", CODE_LINE=1, CODE_FUNC="g",\n'
        '             BOOTBUS_X="=y", EMPTY="")\n'
    )
    script = f"""
set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/journal
mount --bind {jdir} /run/systemd/journal
exec /usr/bin/python3 {sender}
"""
    subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], check=True)
    (theirs,) = journald.receive()
    ours_bytes = encode_entry(
        [
            ("MESSAGE", "two\nlines"),
            ("PRIORITY", "5"),
            ("CODE_FILE", "f"),
            ("CODE_LINE", "1"),
            ("CODE_FUNC", "g"),
            ("BOOTBUS_X", "=y"),
            ("EMPTY", ""),
        ]
    )
    ours = {name: value.decode() for name, value in parse_native(ours_bytes)}
    ours["SYSLOG_IDENTIFIER"] = "python3"  # libsystemd adds program_invocation_short_name
    assert theirs == ours
    journald.stop()


class RealJournald:
    """systemd-journald in a private mount namespace; its sockets and files in tmp dirs."""

    def __init__(self, tmp_path: Path) -> None:
        self.run_dir = tmp_path / "jrun"
        self.log_dir = tmp_path / "jlog"
        self.run_dir.mkdir()
        self.log_dir.mkdir()
        self.socket_path = self.run_dir / "socket"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        notify_path = self.run_dir.parent / "journald-notify"
        with contextlib.suppress(FileNotFoundError):
            notify_path.unlink()
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        notify.settimeout(20)
        script = f"""
set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/journal /run/log/journal
mount --bind {self.run_dir} /run/systemd/journal
mount -t tmpfs tmpfs /var/log
mkdir -p /var/log/journal
mount --bind {self.log_dir} /var/log/journal
touch /run/systemd/journal/flushed
exec /lib/systemd/systemd-journald
"""
        env = {**os.environ, "NOTIFY_SOCKET": str(notify_path)}
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            env=env,
            stderr=subprocess.PIPE,
        )
        try:
            while b"READY=1" not in notify.recv(4096):
                pass
        finally:
            notify.close()

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        self.proc = None

    def sync(self) -> None:
        """io.systemd.Journal.Synchronize: returns once journald has written what it was sent."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as varlink:
            varlink.settimeout(20)
            varlink.connect(str(self.run_dir / "io.systemd.journal"))
            varlink.sendall(b'{"method":"io.systemd.Journal.Synchronize","parameters":{}}\0')
            reply = b""
            while not reply.endswith(b"\0"):
                chunk = varlink.recv(4096)
                assert chunk, "journald closed the varlink connection"
                reply += chunk
        assert b"error" not in reply, reply

    def entries(self) -> list[dict[str, object]]:
        (machine_dir,) = [p.parent for p in self.log_dir.glob("*/system.journal")]
        out = subprocess.run(
            [
                "journalctl",
                "-D",
                str(machine_dir),
                "-o",
                "json",
                "--no-pager",
                f"_PID={os.getpid()}",
            ],
            check=True,
            capture_output=True,
        ).stdout
        return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def real_journald(tmp_path: Path) -> Iterator[RealJournald]:
    reason = _namespaces_reason()
    if reason is not None:
        pytest.skip(reason)
    if not os.access("/lib/systemd/systemd-journald", os.X_OK):
        pytest.skip("needs /lib/systemd/systemd-journald (package systemd)")
    journald = RealJournald(tmp_path)
    yield journald
    if journald.proc is not None:
        journald.stop()


@pytest.mark.root
def test_real_journald_gets_early_records_once_in_order(
    tmp_path: Path, real_journald: RealJournald
) -> None:
    runtime = tmp_path / "rt"
    runtime.mkdir()
    bridge = JournalBridge(runtime, socket_path=str(real_journald.socket_path), retry_usec=0)
    log = StepLog(runtime, phase="initramfs", kmsg_path=str(tmp_path / "kmsg"), sink=bridge)

    def catch_up() -> None:
        for _ in range(1000):
            log.poll()
            if bridge.next_deadline_usec() is None:
                break
            real_journald.sync()  # journald drains its queue; no sleeping
        real_journald.sync()

    records = [log.info(f"before journald {i}") for i in range(3)]
    records.append(log.log(LOG_ERR, "an error\nwith a second line", {"_COMM": "early-tool"}))
    real_journald.start()
    catch_up()
    log.set_phase("root")
    records.append(log.info("journald is up"))
    catch_up()

    entries = real_journald.entries()
    assert [int(str(e["BOOTBUS_SEQ"])) for e in entries] == [1, 2, 3, 4, 5, 6]
    for entry, record in zip(entries[:4], records[:4]):
        assert entry["MESSAGE"] == record.message
        assert entry["BOOTBUS_REALTIME_USEC"] == str(record.realtime_usec)
        assert entry["BOOTBUS_MONOTONIC_USEC"] == str(record.monotonic_usec)
        assert entry["BOOTBUS_REPLAYED"] == "1"
        assert entry["SYSLOG_IDENTIFIER"] == "bootbus"
        assert entry["_TRANSPORT"] == "journal"
        assert int(str(entry["__REALTIME_TIMESTAMP"])) > record.realtime_usec
    assert entries[3]["PRIORITY"] == "3" and entries[3]["BOOTBUS_COMM"] == "early-tool"
    assert entries[5]["MESSAGE"] == "journald is up" and "BOOTBUS_REPLAYED" not in entries[5]

    real_journald.stop()
    log.info("while journald restarts")
    real_journald.start()
    catch_up()
    entries = real_journald.entries()
    assert [e["MESSAGE"] for e in entries[6:]] == ["while journald restarts", "journald restarted"]
    assert [int(str(e["BOOTBUS_SEQ"])) for e in entries] == list(range(1, 9))
    log.close()
    bridge.close()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
