"""The step log: every step bootbus takes, as a structured record.

Owns the `Record` type and its one-line JSON form; `StepLog`, which numbers
each record and writes it to three places: a size-bounded append-only file in
the runtime directory (`steplog.jsonl`, rotated once to `steplog.jsonl.1`, so
both together stay within `STEPLOG_MAX_BYTES`), the kernel log (rate-limited,
see `KmsgWriter`) and a `RecordSink` (the journald bridge in `journal.py`).
Also owns reading the files back for `bootbusctl log` (`read_records`,
`LogTail`).

The file is the source of truth: a record is appended with one `write()` of
one line before anything else sees it, so the bridge replays from the file and
a crash mid-write leaves at most one torn last line, which readers skip and
the next writer terminates. Sequence numbers continue across re-exec (they are
recovered from the file's tail).

Never: sleeps, reads a clock or the environment directly (clock, paths and pid
are injected), blocks on anything but a local `write()`, or lets a failing
destination raise out of `log()`: logging must not take the bus down.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Iterator, Mapping

from ..plain import FrozenFields

TYPE_CHECKING = False  # typing's, without importing typing (see bootbus.plain)
if TYPE_CHECKING:
    from typing import Protocol

# syslog priorities (RFC 5424 severities), as journald and /dev/kmsg use them.
LOG_EMERG = 0
LOG_ALERT = 1
LOG_CRIT = 2
LOG_ERR = 3
LOG_WARNING = 4
LOG_NOTICE = 5
LOG_INFO = 6
LOG_DEBUG = 7
PRIORITY_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
LOG_DAEMON_FACILITY = 3

STEPLOG_FILENAME = "steplog.jsonl"
ROTATED_SUFFIX = ".1"
# Both files together never exceed this; each holds at most half of it.
STEPLOG_MAX_BYTES = 1024 * 1024
# One encoded record line (newline included); longer values are clipped.
RECORD_MAX_BYTES = 16 * 1024
RECORD_FIELDS_MAX = 64
FIELD_NAME_MAX = 64
# Records at or above this severity are kept in StepLog.last_errors.
LAST_ERRORS_PRIORITY = LOG_ERR
LAST_ERRORS_MAX = 16

KMSG_PATH = "/dev/kmsg"
# The kernel's own default limit for /dev/kmsg writers (printk.devkmsg=ratelimit)
# is 10 lines per 5 s per open file; writing faster only loses lines silently.
KMSG_BURST = 10
KMSG_REFILL_PER_SECOND = 2
# Tokens below this are kept for warnings and worse.
KMSG_RESERVE_FOR_WARNINGS = 3
# The kernel rejects longer writes (LOG_LINE_MAX is 1024 minus a prefix).
KMSG_LINE_MAX_BYTES = 900

_FILE_MODE = 0o640
_CLIP_MARK = "…"


class StepLogError(ValueError):
    """A record that cannot be logged (bad priority, bad field name)."""


class RecordError(ValueError):
    """A line that is not a valid record."""


if TYPE_CHECKING:  # a type only: typing's Protocol is not imported at run time
    class Clock(Protocol):
        def realtime_usec(self) -> int:
            ...

        def monotonic_usec(self) -> int:
            ...


class SystemClock:
    """CLOCK_REALTIME and CLOCK_MONOTONIC in microseconds, as journald records them."""

    def realtime_usec(self) -> int:
        return time.clock_gettime_ns(time.CLOCK_REALTIME) // 1000

    def monotonic_usec(self) -> int:
        return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


# A record's line is written out here rather than by json, whose import (~2.5 ms with
# re, which its decoder needs) a cold start would pay before its first record; the
# strings are quoted by the C function json's encoder itself uses for ensure_ascii,
# so the line is byte for byte what json.dumps(..., separators=(",", ":")) gives.
try:
    from _json import encode_basestring_ascii as _quote
except ImportError:  # pragma: no cover - a CPython built without _json
    from json.encoder import py_encode_basestring_ascii as _quote


class Record(FrozenFields):
    """One step; read-only, equal to a record with the same values."""

    __slots__ = _fields = ("seq", "realtime_usec", "monotonic_usec", "phase", "priority",
                           "message", "fields")

    seq: int
    realtime_usec: int
    monotonic_usec: int
    phase: str
    priority: int
    message: str
    fields: dict[str, str]

    def __init__(self, seq: int, realtime_usec: int, monotonic_usec: int, phase: str,
                 priority: int, message: str, fields: dict[str, str] | None = None) -> None:
        init = object.__setattr__
        init(self, "seq", seq)
        init(self, "realtime_usec", realtime_usec)
        init(self, "monotonic_usec", monotonic_usec)
        init(self, "phase", phase)
        init(self, "priority", priority)
        init(self, "message", message)
        init(self, "fields", {} if fields is None else fields)

    def replace(self, *, phase: str | None = None, message: str | None = None,
                fields: dict[str, str] | None = None) -> Record:
        """A copy with the given values changed (what fit_record clips)."""
        return Record(self.seq, self.realtime_usec, self.monotonic_usec,
                      self.phase if phase is None else phase, self.priority,
                      self.message if message is None else message,
                      self.fields if fields is None else fields)

    def to_line(self) -> bytes:
        """One JSON line; `seq` comes first so readers can skip without parsing."""
        quote = _quote
        fields = ",".join([f"{quote(k)}:{quote(v)}" for k, v in self.fields.items()])
        return (f'{{"seq":{self.seq:d},"realtime_usec":{self.realtime_usec:d},'
                f'"monotonic_usec":{self.monotonic_usec:d},"phase":{quote(self.phase)},'
                f'"priority":{self.priority:d},"message":{quote(self.message)},'
                f'"fields":{{{fields}}}}}\n').encode()

    def to_json_dict(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "realtime_usec": self.realtime_usec,
            "monotonic_usec": self.monotonic_usec,
            "phase": self.phase,
            "priority": self.priority,
            "message": self.message,
            "fields": dict(self.fields),
        }

    @classmethod
    def from_line(cls, line: bytes) -> Record:
        import json  # readers only: the daemon's cold start never parses a record

        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as e:
            raise RecordError(f"not JSON: {e}") from None
        if not isinstance(obj, dict):
            raise RecordError("not a JSON object")
        return cls(
            seq=_int_member(obj, "seq", 1),
            realtime_usec=_int_member(obj, "realtime_usec", 0),
            monotonic_usec=_int_member(obj, "monotonic_usec", 0),
            phase=_str_member(obj, "phase"),
            priority=_priority_member(obj),
            message=_str_member(obj, "message"),
            fields=_fields_member(obj),
        )


def _int_member(obj: dict[str, object], key: str, minimum: int) -> int:
    value = obj.get(key)
    if type(value) is not int or value < minimum:
        raise RecordError(f"{key}: not an integer >= {minimum}")
    return value


def _str_member(obj: dict[str, object], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise RecordError(f"{key}: not a string")
    return value


def _priority_member(obj: dict[str, object]) -> int:
    value = _int_member(obj, "priority", LOG_EMERG)
    if value > LOG_DEBUG:
        raise RecordError("priority: not 0..7")
    return value


def _fields_member(obj: dict[str, object]) -> dict[str, str]:
    value = obj.get("fields", {})
    if not isinstance(value, dict):
        raise RecordError("fields: not an object")
    if not all(isinstance(v, str) for v in value.values()):
        raise RecordError("fields: values must be strings")
    return dict(value)


def seq_of_line(line: bytes) -> int | None:
    """The seq of a record line without a full parse, or None if it has none."""
    prefix = b'{"seq":'
    if not line.startswith(prefix):
        return None
    end = line.find(b",", len(prefix))
    digits = line[len(prefix) : end]
    if end < 0 or not digits.isdigit():
        return None
    return int(digits)


class Note(FrozenFields):
    """Something a sink wants logged about itself (logged after delivery returns)."""

    __slots__ = _fields = ("priority", "message", "fields")

    priority: int
    message: str
    fields: dict[str, str]

    def __init__(self, priority: int, message: str, fields: dict[str, str]) -> None:
        init = object.__setattr__
        init(self, "priority", priority)
        init(self, "message", message)
        init(self, "fields", fields)


if TYPE_CHECKING:  # a type only: typing's Protocol is not imported at run time
    class RecordSink(Protocol):
        """Where records go after the file (the journald bridge)."""

        @property
        def reachable(self) -> bool:
            ...

        def attach(self, last_seq: int) -> list[Note]:
            ...

        def deliver(self, record: Record) -> list[Note]:
            ...

        def poll(self) -> list[Note]:
            ...

        def next_deadline_usec(self) -> int | None:
            ...


class TokenBucket:
    """`burst` tokens, refilled at `per_second`, on an injected monotonic clock."""

    def __init__(self, clock: Clock, burst: int, per_second: float) -> None:
        self._clock = clock
        self.burst = burst
        self._per_usec = per_second / 1_000_000
        self._tokens = float(burst)
        self._last = clock.monotonic_usec()

    @property
    def tokens(self) -> float:
        now = self._clock.monotonic_usec()
        if now > self._last:
            self._tokens = min(
                float(self.burst), self._tokens + (now - self._last) * self._per_usec
            )
        self._last = max(self._last, now)
        return self._tokens

    def take(self, reserve: int = 0) -> bool:
        """Take one token, leaving at least `reserve` behind."""
        if self.tokens < 1 + reserve:
            return False
        self._tokens -= 1
        return True


def kmsg_line(priority: int, pid: int, message: str) -> bytes:
    """`<N>bootbus[pid]: message` as one kernel log line (facility daemon)."""
    prefix = f"<{LOG_DAEMON_FACILITY * 8 + priority}>bootbus[{pid}]: ".encode()
    text = " ".join(message.splitlines()).encode("utf-8", "replace")
    room = KMSG_LINE_MAX_BYTES - len(prefix) - 1
    if len(text) > room:
        text = text[: room - len(_CLIP_MARK.encode())].decode("utf-8", "ignore").encode()
        text += _CLIP_MARK.encode()
    return prefix + text + b"\n"


class KmsgWriter:
    """Rate-limited writer of records to /dev/kmsg (path injectable).

    Lines below warning priority may only use tokens above
    KMSG_RESERVE_FOR_WARNINGS, so a flood of info lines cannot starve the
    warnings. Lines dropped by the limit are counted and announced once
    tokens are back.
    """

    def __init__(
        self,
        path: str | None,
        clock: Clock,
        pid: int,
        burst: int = KMSG_BURST,
        per_second: float = KMSG_REFILL_PER_SECOND,
    ) -> None:
        self._pid = pid
        self._bucket = TokenBucket(clock, burst, per_second)
        self._reserve = min(KMSG_RESERVE_FOR_WARNINGS, burst - 1)
        self.suppressed = 0
        self.write_errors = 0
        self._fd: int | None = None
        if path is not None:
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
            except OSError:
                self._fd = None

    @property
    def enabled(self) -> bool:
        return self._fd is not None

    def write(self, priority: int, message: str) -> bool:
        if self._fd is None:
            return False
        reserve = 0 if priority <= LOG_WARNING else self._reserve
        if self.suppressed and self._bucket.tokens >= 2 + reserve:
            self._bucket.take()
            notice = f"{self.suppressed} messages suppressed by rate limit"
            self.suppressed = 0
            self._write(kmsg_line(LOG_WARNING, self._pid, notice))
        if not self._bucket.take(reserve):
            self.suppressed += 1
            return False
        return self._write(kmsg_line(priority, self._pid, message))

    def _write(self, line: bytes) -> bool:
        assert self._fd is not None
        try:
            os.write(self._fd, line)
        except OSError:
            self.write_errors += 1
            return False
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def steplog_path(runtime_dir: str | os.PathLike[str]) -> str:
    return os.path.join(os.fspath(runtime_dir), STEPLOG_FILENAME)


def _clip(text: str, length: int) -> str:
    return text if len(text) <= length else text[: max(0, length - 1)] + _CLIP_MARK


def fit_record(record: Record, max_bytes: int = RECORD_MAX_BYTES) -> tuple[Record, bytes]:
    """Clip the longest value until the encoded line fits in `max_bytes`."""
    line = record.to_line()
    while len(line) > max_bytes:
        fields = dict(record.fields)
        longest = max(fields, key=lambda k: len(fields[k]), default=None)
        if longest is not None and len(fields[longest]) > len(record.message):
            fields[longest] = _clip(fields[longest], len(fields[longest]) // 2)
            record = record.replace(fields=fields)
        elif len(record.message) > 1:
            record = record.replace(message=_clip(record.message, len(record.message) // 2))
        else:  # only names and the phase are left long: drop fields from the end
            fields.pop(next(reversed(fields)), None)
            record = record.replace(fields=fields, phase=_clip(record.phase, 64))
        line = record.to_line()
    return record, line


def check_fields(fields: Mapping[str, str]) -> dict[str, str]:
    """Validate client-supplied fields: at most RECORD_FIELDS_MAX, names 1..64 chars."""
    if len(fields) > RECORD_FIELDS_MAX:
        raise StepLogError(f"at most {RECORD_FIELDS_MAX} fields per record")
    for name, value in fields.items():
        if not isinstance(name, str) or not 0 < len(name) <= FIELD_NAME_MAX:
            raise StepLogError(f"field name must be 1..{FIELD_NAME_MAX} characters: {name!r}")
        if not isinstance(value, str):
            raise StepLogError(f"field {name} must be a string")
    return dict(fields)


class StepLog:
    """Numbers records and writes each to the file, /dev/kmsg and the sink.

    The daemon calls `log()` at every step, `set_phase()` on boot-phase
    changes, `poll()` whenever `next_deadline_usec()` is reached, and
    `close()` before re-exec or exit.
    """

    def __init__(
        self,
        runtime_dir: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        phase: str = "start",
        kmsg_path: str | None = KMSG_PATH,
        sink: RecordSink | None = None,
        pid: int | None = None,
        max_bytes: int = STEPLOG_MAX_BYTES,
        kmsg_burst: int = KMSG_BURST,
        kmsg_per_second: float = KMSG_REFILL_PER_SECOND,
    ) -> None:
        if max_bytes < 2 * RECORD_MAX_BYTES:
            raise StepLogError(f"max_bytes must be at least {2 * RECORD_MAX_BYTES}")
        self.path = steplog_path(runtime_dir)
        self.phase = phase
        self.sink: RecordSink | None = None
        self.write_errors = 0
        self.last_errors: collections.deque[Record] = collections.deque(maxlen=LAST_ERRORS_MAX)
        self._clock = clock or SystemClock()
        self._segment_bytes = max_bytes // 2
        self._pid = os.getpid() if pid is None else pid
        self.kmsg = KmsgWriter(kmsg_path, self._clock, self._pid, kmsg_burst, kmsg_per_second)
        self._fd: int | None = None
        self._size = 0
        self._open()
        self.last_seq = max(_last_seq_in(self.path), _last_seq_in(self.path + ROTATED_SUFFIX))
        self._notes: collections.deque[Note] = collections.deque()
        self._draining = False
        if sink is not None:
            self.attach_sink(sink)

    # -- writing -------------------------------------------------------------

    def log(self, priority: int, message: str, fields: Mapping[str, str] | None = None) -> Record:
        if type(priority) is not int or not LOG_EMERG <= priority <= LOG_DEBUG:
            raise StepLogError(f"priority must be 0..7, not {priority!r}")
        record = self._emit(priority, message, check_fields(fields or {}))
        self._log_notes()
        return record

    def log_own(self, priority: int, message: str, fields: dict[str, str]) -> Record:
        """`log()` for the daemon's own records: ``fields`` are keyword-argument names
        with str values, built for this call, so neither checked nor copied (a record
        per connection comes and goes through here)."""
        if not LOG_EMERG <= priority <= LOG_DEBUG or len(fields) > RECORD_FIELDS_MAX:
            raise StepLogError(f"priority must be 0..7 and fields at most {RECORD_FIELDS_MAX}")
        record = self._emit(priority, message, fields)
        self._log_notes()
        return record

    def step(self, priority: int, message: str, **fields: object) -> Record:
        """`log()` with keyword fields of any type (str() of each), the daemon's Logger shape."""
        return self.log(priority, message, {k: str(v) for k, v in fields.items()})

    def debug(self, message: str, **fields: str) -> Record:
        return self.log(LOG_DEBUG, message, fields)

    def info(self, message: str, **fields: str) -> Record:
        return self.log(LOG_INFO, message, fields)

    def notice(self, message: str, **fields: str) -> Record:
        return self.log(LOG_NOTICE, message, fields)

    def warning(self, message: str, **fields: str) -> Record:
        return self.log(LOG_WARNING, message, fields)

    def error(self, message: str, **fields: str) -> Record:
        return self.log(LOG_ERR, message, fields)

    def set_phase(self, phase: str, **fields: str) -> Record:
        """Change the boot phase; the change itself is logged in the new phase."""
        previous, self.phase = self.phase, phase
        return self.log(
            LOG_NOTICE, f"boot phase {previous} -> {phase}", {"PREVIOUS_PHASE": previous, **fields}
        )

    def attach_sink(self, sink: RecordSink) -> None:
        """From now on every record also goes to `sink` (records already in
        the file reach it through its own replay)."""
        self.sink = sink
        self._notes.extend(sink.attach(self.last_seq))
        self._log_notes()

    def poll(self) -> None:
        """Let the sink retry (journald appeared? replay pending records)."""
        if self.sink is not None:
            self._notes.extend(self.sink.poll())
            self._log_notes()

    def next_deadline_usec(self) -> int | None:
        """Monotonic time at which `poll()` should run next, or None."""
        return None if self.sink is None else self.sink.next_deadline_usec()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.kmsg.close()

    def _emit(self, priority: int, message: str, fields: dict[str, str]) -> Record:
        self.last_seq += 1
        record = Record(
            seq=self.last_seq,
            realtime_usec=self._clock.realtime_usec(),
            monotonic_usec=self._clock.monotonic_usec(),
            phase=self.phase,
            priority=priority,
            message=message,
            fields=fields,
        )
        record, line = fit_record(record)
        self._append(line)
        if priority <= LAST_ERRORS_PRIORITY:
            self.last_errors.append(record)
        if self.sink is not None:
            self._notes.extend(self.sink.deliver(record))
        if priority <= LOG_WARNING or self.sink is None or not self.sink.reachable:
            self.kmsg.write(priority, message)
        return record

    def _log_notes(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            while self._notes:
                note = self._notes.popleft()
                self._emit(note.priority, note.message, note.fields)
        finally:
            self._draining = False

    # -- the file ------------------------------------------------------------

    def _open(self) -> None:
        try:
            fd = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE
            )
        except OSError:
            self.write_errors += 1
            return
        self._fd = fd
        self._size = os.fstat(fd).st_size
        if self._size and _last_byte(self.path) != b"\n":
            self._write(b"\n")  # terminate a line torn by a crash

    def _append(self, line: bytes) -> None:
        if self._fd is None:
            self._open()
        if self._fd is None:
            return
        if self._size and self._size + len(line) > self._segment_bytes:
            self._rotate()
        self._write(line)

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        try:
            written = os.write(self._fd, data)
        except OSError:
            self.write_errors += 1
            return
        self._size += written
        if written < len(data):
            self.write_errors += 1
            self._write(b"\n")

    def _rotate(self) -> None:
        assert self._fd is not None
        try:
            os.replace(self.path, self.path + ROTATED_SUFFIX)
        except OSError:
            self.write_errors += 1
        os.close(self._fd)
        self._fd = None
        self._open()


def _last_byte(path: str) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def _last_seq_in(path: str) -> int:
    """The seq of the last valid record in `path` (0 if none), from its tail."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 2 * RECORD_MAX_BYTES))
            tail = f.read()
    except OSError:
        return 0
    for line in reversed(tail.split(b"\n")):
        if not line:
            continue
        seq = canonical_seq(line)
        if seq is not None:
            return seq
        try:  # not as to_line writes it (torn, or another writer's): parse it in full
            return Record.from_line(line).seq
        except RecordError:
            continue
    return 0


_DIGIT_BYTES = b"0123456789"
_ESCAPED = frozenset(b'"\\/bfnrt')
_HEX = frozenset(b"0123456789abcdefABCDEF")
# a line as Record.to_line writes it: each key, then its kind of value
_LAYOUT = ((b'{"seq":', "int"), (b',"realtime_usec":', "int"), (b',"monotonic_usec":', "int"),
           (b',"phase":', "str"), (b',"priority":', "int"), (b',"message":', "str"),
           (b',"fields":', "fields"))


def canonical_seq(line: bytes) -> int | None:
    """The seq of a valid record line exactly as `Record.to_line` writes it, found
    without json (a restart reads its last seq before its first record, and json's
    import costs ~2.5 ms of that); None for any other line, valid or not, which
    `Record.from_line` then judges. Never accepts a line from_line would refuse."""
    pos, ints = 0, []
    for key, kind in _LAYOUT:
        if not line.startswith(key, pos):
            return None
        pos += len(key)
        if kind == "int":
            end = pos
            while end < len(line) and line[end] in _DIGIT_BYTES:
                end += 1
            if end == pos or (line[pos] == 0x30 and end - pos > 1):
                return None
            ints.append(int(line[pos:end]))
            pos = end
        elif kind == "str":
            pos = _string_end(line, pos)
        else:
            pos = _fields_end(line, pos)
        if pos < 0:
            return None
    seq, _realtime, _monotonic, priority = ints
    if line[pos:] != b"}" or seq < 1 or priority > LOG_DEBUG:
        return None
    return seq


def _string_end(line: bytes, pos: int) -> int:
    """The index after the JSON string at `pos` (printable ASCII, valid escapes), or -1."""
    if line[pos : pos + 1] != b'"':
        return -1
    pos += 1
    while pos < len(line):
        c = line[pos]
        if c == 0x22:  # the closing quote
            return pos + 1
        if c == 0x5C:  # backslash
            e = line[pos + 1 : pos + 2]
            if not e or e[0] not in _ESCAPED and e != b"u":
                return -1
            if e == b"u":
                if len(line) < pos + 6 or not _HEX.issuperset(line[pos + 2 : pos + 6]):
                    return -1
                pos += 6
            else:
                pos += 2
        elif 0x20 <= c <= 0x7E:
            pos += 1
        else:
            return -1
    return -1


def _fields_end(line: bytes, pos: int) -> int:
    """The index after a JSON object of strings to strings at `pos`, or -1."""
    if line[pos : pos + 1] != b"{":
        return -1
    pos += 1
    if line[pos : pos + 1] == b"}":
        return pos + 1
    while True:
        pos = _string_end(line, pos)
        if pos < 0 or line[pos : pos + 1] != b":":
            return -1
        pos = _string_end(line, pos + 1)
        if pos < 0:
            return -1
        sep = line[pos : pos + 1]
        if sep == b"}":
            return pos + 1
        if sep != b",":
            return -1
        pos += 1


# -- reading -----------------------------------------------------------------


class RecordFilter(FrozenFields):
    """What `bootbusctl log` asks for; the defaults match everything."""

    __slots__ = _fields = ("max_priority", "phases", "since_realtime_usec", "after_seq")

    max_priority: int
    phases: frozenset[str] | None
    since_realtime_usec: int | None
    after_seq: int

    def __init__(self, max_priority: int = LOG_DEBUG, phases: frozenset[str] | None = None,
                 since_realtime_usec: int | None = None, after_seq: int = 0) -> None:
        init = object.__setattr__
        init(self, "max_priority", max_priority)
        init(self, "phases", phases)
        init(self, "since_realtime_usec", since_realtime_usec)
        init(self, "after_seq", after_seq)

    def matches(self, record: Record) -> bool:
        return (
            record.seq > self.after_seq
            and record.priority <= self.max_priority
            and (self.phases is None or record.phase in self.phases)
            and (
                self.since_realtime_usec is None or record.realtime_usec >= self.since_realtime_usec
            )
        )


def _records_after(data: bytes, after_seq: int) -> Iterator[Record]:
    """The valid records in `data` numbered after `after_seq`; torn lines are skipped."""
    for line in data.split(b"\n"):
        seq = seq_of_line(line)
        if seq is None or seq <= after_seq:
            continue
        try:
            yield Record.from_line(line)
        except RecordError:
            continue


def parse_lines(data: bytes, flt: RecordFilter) -> Iterator[Record]:
    """Records in `data` that match, skipping torn or invalid lines."""
    return (r for r in _records_after(data, flt.after_seq) if flt.matches(r))


def read_records(
    runtime_dir: str | os.PathLike[str], flt: RecordFilter | None = None
) -> Iterator[Record]:
    """The records of both files, oldest first, each seq at most once.

    The current file is opened before the rotated one, so a rotation racing
    with the read duplicates (dropped by seq) rather than loses records.
    """
    flt = flt or RecordFilter()
    path = steplog_path(runtime_dir)
    current = _read_whole(path)
    rotated = _read_whole(path + ROTATED_SUFFIX)
    last = flt.after_seq
    for data in (rotated, current):
        for record in parse_lines(data, flt):
            if record.seq > last:
                last = record.seq
                yield record


def _read_whole(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


class LogTail:
    """Follows the step log across rotations (`bootbusctl log --follow`).

    `read_new()` returns the matching records appended since the last call
    (the first call returns the history). It keeps the current file open, so
    after a rotation it finishes the old file before moving to the new one.
    `lost` counts records that rotated away between two calls.
    """

    def __init__(
        self, runtime_dir: str | os.PathLike[str], flt: RecordFilter | None = None
    ) -> None:
        self._path = steplog_path(runtime_dir)
        self._flt = flt or RecordFilter()
        self._last_seq = self._flt.after_seq
        self._file: int | None = None
        self._partial = b""
        self._started = False
        self.lost = 0

    def read_new(self) -> list[Record]:
        out: list[Record] = []
        if not self._started:
            self._started = True
            self._reopen()
            self._take(_read_whole(self._path + ROTATED_SUFFIX), out)
        self._take(self._drain(), out)
        if self._rotated():
            self._reopen()
            self._take(self._drain(), out)
        return out

    def close(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None

    def _take(self, data: bytes, out: list[Record]) -> None:
        for record in _records_after(data, self._last_seq):
            if record.seq <= self._last_seq:  # _last_seq moves while we read
                continue
            if self._last_seq and record.seq > self._last_seq + 1:
                self.lost += record.seq - self._last_seq - 1
            self._last_seq = record.seq
            if self._flt.matches(record):
                out.append(record)

    def _drain(self) -> bytes:
        """Complete lines appended to the open file; a partial line waits."""
        if self._file is None:
            return b""
        chunks = [self._partial]
        while chunk := os.read(self._file, 1 << 16):
            chunks.append(chunk)
        data = b"".join(chunks)
        end = data.rfind(b"\n") + 1
        self._partial = data[end:]
        return data[:end]

    def _rotated(self) -> bool:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            return False
        if self._file is None:
            return True
        mine = os.fstat(self._file)
        return (st.st_dev, st.st_ino) != (mine.st_dev, mine.st_ino)

    def _reopen(self) -> None:
        self.close()
        self._partial = b""
        try:
            self._file = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self._file = None
