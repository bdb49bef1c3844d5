"""The journald bridge: step-log records into the journal, late if need be.

Owns the encoder for journald's native protocol (pure: fields in, datagram
bytes out), the AF_UNIX datagram transport to journald's socket (path
injectable; an entry too large for one datagram goes as a sealed memfd with
SCM_RIGHTS), and `JournalBridge`, the step log's `RecordSink`. The bridge
delivers each record once and in order: what was logged while journald was
away (before it started, while it restarted, while its queue was full) is
replayed from the step-log file as soon as it is reachable again. The replay
cursor, the seq of the last record handed to journald, lives in the runtime
directory (`journal-cursor`), so a re-exec neither repeats nor skips records.
Every entry carries the record's own clocks (BOOTBUS_REALTIME_USEC,
BOOTBUS_MONOTONIC_USEC) besides the time journald received it.

Why the native protocol and not systemd-python's `journal.send()`: libsystemd
always sends to the fixed /run/systemd/journal/socket over a blocking socket
it keeps to itself. With our own socket the path is injectable (tests run a
fake or a real journald in a private directory), the socket is non-blocking
(a busy journald means "replay later", never a stalled bus), and connect and
send failures are ours to see, which is how a journald restart is noticed.
It also spares the initramfs a C extension, and the protocol is small and
documented (systemd.io/JOURNAL_NATIVE_PROTOCOL); tests/test_journal.py checks
our datagrams against libsystemd's and against the real systemd-journald.

Restarts: a journald restart shows up as a failed send (ECONNREFUSED: the
socket we were connected to is gone); the bridge reconnects at once, or every
`retry_usec` until journald is back, replays from the cursor, and logs
"journald restarted" (with whether the socket inode changed; inode numbers
are reused, so that alone cannot be relied on).
A datagram journald accepted into its queue but never read before dying is
lost; under systemd the socket belongs to pid 1 and outlives journald, so
that only happens with a journald started by hand.

Never: blocks, sleeps, reads a clock directly, raises out of `deliver()` or
`poll()`, or sends a record twice or out of order (the one exception: a crash
between a send and the cursor write repeats that record after restart).
"""

from __future__ import annotations

import array
import collections
import errno
import fcntl
import os
import socket
import struct
from collections.abc import Callable, Iterable

from .steplog import (
    LOG_DAEMON_FACILITY,
    LOG_INFO,
    LOG_WARNING,
    Note,
    Record,
    RecordFilter,
    SystemClock,
    read_records,
)

TYPE_CHECKING = False  # typing's, without importing typing (see bootbus.plain)
if TYPE_CHECKING:
    from .steplog import Clock

JOURNAL_SOCKET_PATH = "/run/systemd/journal/socket"
JOURNAL_CURSOR_FILENAME = "journal-cursor"
SYSLOG_IDENTIFIER = "bootbus"
# journald's own limit on field names (journal_field_valid()).
JOURNAL_FIELD_NAME_MAX = 64
# How often to look for journald while it is away.
JOURNAL_RETRY_USEC = 1_000_000
# How long to wait before retrying after journald's queue was full (EAGAIN).
JOURNAL_BACKOFF_USEC = 20_000
# Records sent per deliver()/poll() call, so a replay never hogs the event loop.
REPLAY_BATCH_MAX = 256
# Records queued in memory while journald is slow; beyond this the queue is
# dropped and rebuilt from the step-log file, which is bounded anyway.
PENDING_MAX = 4096

# Fields the bridge sets itself; a record field of the same name is renamed.
BRIDGE_FIELDS = frozenset(
    {
        "MESSAGE",
        "PRIORITY",
        "SYSLOG_FACILITY",
        "BOOTBUS_SEQ",
        "BOOTBUS_REALTIME_USEC",
        "BOOTBUS_MONOTONIC_USEC",
        "BOOTBUS_PHASE",
        "BOOTBUS_REPLAYED",
    }
)
RENAMED_FIELD_PREFIX = "BOOTBUS_FIELD_"

# journald's field name characters; spelled out, as the string module costs ~0.5 ms
# of a cold start
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_CURSOR_WIDTH = 20
# errno values that mean "journald is not there (any more)".
_GONE = frozenset(
    {
        errno.ENOENT,
        errno.ECONNREFUSED,
        errno.ENOTCONN,
        errno.ECONNRESET,
        errno.EPIPE,
        errno.EDESTADDRREQ,
    }
)
_BUSY = frozenset({errno.EAGAIN, errno.EWOULDBLOCK})
# Sent as a memfd instead (what libsystemd does for the same errors).
_TOO_BIG = frozenset({errno.EMSGSIZE, errno.ENOBUFS})


# -- the protocol (pure) --------------------------------------------------------


def journal_field_name(name: str) -> str | None:
    """`name` as a field journald accepts from a client, or None if nothing is left.

    Upper-cased, other characters become '_'; a leading '_' (journald's
    trusted fields, which clients cannot set) or digit gets a BOOTBUS prefix,
    so a bus client's `_COMM` arrives as BOOTBUS_COMM.
    """
    cleaned = "".join(c if c in _NAME_CHARS else "_" for c in name.upper())
    if not cleaned.strip("_"):
        return None
    if cleaned[0] == "_":
        cleaned = "BOOTBUS" + cleaned
    elif cleaned[0].isdigit():
        cleaned = "BOOTBUS_" + cleaned
    if cleaned in BRIDGE_FIELDS:
        cleaned = RENAMED_FIELD_PREFIX + cleaned
    return cleaned[:JOURNAL_FIELD_NAME_MAX]


def record_fields(record: Record, *, replayed: bool) -> list[tuple[str, str]]:
    """The journal entry for `record`: what journalctl will show.

    A record field SYSLOG_IDENTIFIER replaces "bootbus" (a bus client logging
    under its own name); any other name the bridge sets is renamed with
    RENAMED_FIELD_PREFIX rather than overriding it.
    """
    identifier = SYSLOG_IDENTIFIER
    extra: list[tuple[str, str]] = []
    for key, value in record.fields.items():
        name = journal_field_name(key)
        if name == "SYSLOG_IDENTIFIER" and value:
            identifier = value
        elif name is not None:
            extra.append((name, value))
    fields = [
        ("MESSAGE", record.message),
        ("PRIORITY", str(record.priority)),
        ("SYSLOG_FACILITY", str(LOG_DAEMON_FACILITY)),
        ("SYSLOG_IDENTIFIER", identifier),
        ("BOOTBUS_SEQ", str(record.seq)),
        ("BOOTBUS_REALTIME_USEC", str(record.realtime_usec)),
        ("BOOTBUS_MONOTONIC_USEC", str(record.monotonic_usec)),
        ("BOOTBUS_PHASE", record.phase),
    ]
    if replayed:
        fields.append(("BOOTBUS_REPLAYED", "1"))
    return fields + extra


def encode_entry(fields: Iterable[tuple[str, str | bytes]]) -> bytes:
    """One native-protocol entry: `NAME=value\\n`, or for a value holding a
    newline, `NAME\\n` + its length as 64-bit little-endian + value + `\\n`."""
    out = bytearray()
    for name, value in fields:
        data = value.encode("utf-8", "replace") if isinstance(value, str) else value
        if b"\n" in data:
            out += name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name.encode() + b"=" + data + b"\n"
    return bytes(out)


# -- the transport ------------------------------------------------------------


class JournalSocket:
    """A non-blocking datagram socket connected to journald's socket."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.identity: tuple[int, int] | None = None
        self._sock = socket.socket(
            socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
        )

    def connect(self) -> None:
        """Raises OSError when nothing is bound at the path (ENOENT, ECONNREFUSED)."""
        st = os.stat(self.path)
        self._sock.connect(self.path)
        self.identity = (st.st_dev, st.st_ino)

    def send(self, payload: bytes) -> None:
        """Raises OSError; EAGAIN means journald's queue is full."""
        try:
            self._sock.send(payload)
        except OSError as e:
            if e.errno not in _TOO_BIG:
                raise
            self._send_memfd(payload)

    def _send_memfd(self, payload: bytes) -> None:
        fd = os.memfd_create("bootbus-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
            rights = array.array("i", [fd]).tobytes()
            self._sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
        finally:
            os.close(fd)

    def close(self) -> None:
        self._sock.close()


# -- the bridge ---------------------------------------------------------------


class JournalBridge:
    """The step log's sink: each record into journald once, in order.

    States: away (no socket; look again every `retry_usec`), behind
    (connected, records waiting in `_pending` or still only in the file) and
    caught up (new records are sent as they are logged). `_pending is None`
    means "reload from the step-log file", which is what happens on every
    (re)connect, so whatever journald missed is replayed from the cursor.
    """

    def __init__(
        self,
        runtime_dir: str | os.PathLike[str],
        *,
        socket_path: str = JOURNAL_SOCKET_PATH,
        clock: Clock | None = None,
        retry_usec: int = JOURNAL_RETRY_USEC,
        backoff_usec: int = JOURNAL_BACKOFF_USEC,
        batch_max: int = REPLAY_BATCH_MAX,
        transport: Callable[[str], JournalSocket] = JournalSocket,
    ) -> None:
        self._transport = transport
        self.runtime_dir = os.fspath(runtime_dir)
        self.socket_path = socket_path
        self._clock = clock or SystemClock()
        self._retry_usec = retry_usec
        self._backoff_usec = backoff_usec
        self._batch_max = batch_max
        self._cursor_path = os.path.join(self.runtime_dir, JOURNAL_CURSOR_FILENAME)
        self._cursor_fd: int | None = None
        self.cursor = self._load_cursor()
        self._sock: JournalSocket | None = None
        self._last_identity: tuple[int, int] | None = None
        self._pending: collections.deque[Record] | None = None
        self._next_attempt_usec = 0
        self._notes: list[Note] = []
        self.sent = 0
        self.replayed = 0
        self.lost = 0
        self.dropped = 0
        self._dropping = False
        self.restarts = 0

    # -- RecordSink ----------------------------------------------------------

    @property
    def reachable(self) -> bool:
        return self._sock is not None

    def attach(self, last_seq: int) -> list[Note]:
        """Reconcile with the step log: a cursor beyond its last record is stale."""
        if self.cursor > last_seq:
            self._notes.append(
                Note(
                    LOG_WARNING,
                    "journal cursor was ahead of the step log; reset",
                    {"CURSOR": str(self.cursor)},
                )
            )
            self.cursor = last_seq
            self._save_cursor()
        return self._take_notes()

    def deliver(self, record: Record) -> list[Note]:
        if record.seq <= self.cursor:
            return self._take_notes()
        if self._sock is not None and self._pending is not None:
            caught_up = not self._pending and record.seq == self.cursor + 1
            if caught_up and self._send(record, replayed=False):
                self._save_cursor()
                return self._take_notes()
            if self._pending is not None:  # behind, or journald busy: keep it in order
                self._queue(record)
        return self._pump(live=record)

    def poll(self) -> list[Note]:
        return self._pump(live=None)

    def next_deadline_usec(self) -> int | None:
        if self._sock is not None and self._pending is not None and not self._pending:
            return None
        return self._next_attempt_usec

    def close(self) -> None:
        """Before re-exec or exit: the cursor is already on disk; drop the sockets."""
        self._disconnect()
        if self._cursor_fd is not None:
            os.close(self._cursor_fd)
            self._cursor_fd = None

    # -- connecting and replaying ----------------------------------------------

    def _pump(self, live: Record | None) -> list[Note]:
        now = self._clock.monotonic_usec()
        if now < self._next_attempt_usec:
            return self._take_notes()
        for _attempt in range(2):  # a failed send may mean "restarted": reconnect once
            if self._sock is None and not self._connect(now):
                break
            if self._replay(live):
                break
            if self._sock is not None:  # still connected: busy, or the batch is done
                break
        return self._take_notes()

    def _connect(self, now: int) -> bool:
        try:
            sock = self._transport(self.socket_path)  # EMFILE here must not end the bus
        except OSError:
            self._next_attempt_usec = now + self._retry_usec
            return False
        try:
            sock.connect()
        except OSError:
            sock.close()
            self._next_attempt_usec = now + self._retry_usec
            return False
        if self._last_identity is not None:  # we had lost it: a send failed
            self.restarts += 1
            changed = "1" if sock.identity != self._last_identity else "0"
            fields = {"JOURNAL_SOCKET": self.socket_path, "JOURNAL_SOCKET_REPLACED": changed}
            self._notes.append(Note(LOG_INFO, "journald restarted", fields))
        self._last_identity = sock.identity
        self._sock = sock
        self._pending = None
        return True

    def _disconnect(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._pending = None

    def _queue(self, record: Record) -> None:
        assert self._pending is not None
        if len(self._pending) >= PENDING_MAX:
            self._pending = None  # rebuilt from the file at the next replay
        else:
            self._pending.append(record)

    def _load_pending(self, live: Record | None) -> collections.deque[Record]:
        pending = collections.deque(
            read_records(self.runtime_dir, RecordFilter(after_seq=self.cursor))
        )
        last = pending[-1].seq if pending else self.cursor
        if live is not None and live.seq > last:  # its write to the file failed
            pending.append(live)
        if pending and pending[0].seq > self.cursor + 1:
            gap = pending[0].seq - self.cursor - 1
            self.lost += gap
            self._notes.append(
                Note(
                    LOG_WARNING,
                    f"{gap} step-log records rotated away before journald took them",
                    {"LOST": str(gap)},
                )
            )
        return pending

    def _replay(self, live: Record | None) -> bool:
        """Send up to one batch of pending records; True when caught up."""
        if self._pending is None:
            self._pending = self._load_pending(live)
        pending = self._pending
        before = self.cursor
        for _ in range(self._batch_max):
            if not pending:
                break
            record = pending[0]
            replayed = live is None or record.seq != live.seq
            if not self._send(record, replayed=replayed):
                break
            pending.popleft()
        if self.cursor != before:
            self._save_cursor()
        if self._sock is not None and pending:
            self._next_attempt_usec = max(self._next_attempt_usec, self._clock.monotonic_usec())
        return self._sock is not None and not pending

    def _send(self, record: Record, *, replayed: bool) -> bool:
        assert self._sock is not None
        payload = encode_entry(record_fields(record, replayed=replayed))
        try:
            self._sock.send(payload)
        except OSError as e:
            return self._send_failed(record, e)
        self.cursor = record.seq
        self.sent += 1
        self._dropping = False
        if replayed:
            self.replayed += 1
        return True

    def _send_failed(self, record: Record, e: OSError) -> bool:
        now = self._clock.monotonic_usec()
        if e.errno in _BUSY:
            self._next_attempt_usec = now + self._backoff_usec
        elif e.errno in _GONE:
            self._disconnect()
            self._next_attempt_usec = now
        else:  # journald will never take this one: skip it rather than stall
            self.dropped += 1
            self.cursor = record.seq
            self._save_cursor()
            if not self._dropping:  # one note per streak, or the notes would be refused too
                self._dropping = True
                self._notes.append(
                    Note(
                        LOG_WARNING,
                        f"journald refused record {record.seq}: {e.strerror}",
                        {"ERRNO": str(e.errno)},
                    )
                )
            return True
        return False

    def _take_notes(self) -> list[Note]:
        notes, self._notes = self._notes, []
        return notes

    # -- the cursor ------------------------------------------------------------

    def _load_cursor(self) -> int:
        try:
            with open(self._cursor_path, "rb") as f:
                text = f.read(_CURSOR_WIDTH + 1).strip()
        except OSError:
            return 0
        return int(text) if text.isdigit() else 0

    def _save_cursor(self) -> None:
        """One fixed-width pwrite: cheap, and never half-replaced by a crash."""
        try:
            if self._cursor_fd is None:
                self._cursor_fd = os.open(
                    self._cursor_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640
                )
            os.pwrite(self._cursor_fd, b"%0*d\n" % (_CURSOR_WIDTH, self.cursor), 0)
        except OSError:
            pass
