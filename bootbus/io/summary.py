"""The offline summary: what bootbusctl shows when the daemon is dead or wedged.

Owns the summary's shape (versioned, SUMMARY_VERSION), writing it as one JSON
file in the runtime directory (`summary.json`), and reading it back. The
writer coalesces: the daemon calls `mark_dirty()` on every change, and the
summary is built and written at most once per SUMMARY_MIN_INTERVAL_USEC
(`flush_if_due()` at `next_deadline_usec()`), with every list clipped to a
named bound, so a flood of connections costs a bounded amount of work. The
file is replaced atomically: written to a temporary file beside it, then
renamed over it, so a reader sees the old or the new summary, never half.
There is no fsync: the runtime directory is a tmpfs under /run, and what the
summary must survive is the daemon's death, not the kernel's, for which the
rename alone suffices.

The reader marks the result offline when the process that wrote it is gone:
its pid no longer exists, is a zombie, or now belongs to another process
(the process start time from /proc/PID/stat is recorded and compared, since
pids are reused; a re-exec keeps both pid and start time).

Never: builds the summary more often than the interval (except on an explicit
`flush()` before re-exec or exit), raises on a summary from an older or newer
bootbus (unknown keys are ignored, missing ones get defaults), or reads a
clock directly.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..plain import Fields, FrozenFields, as_dict, replace
from .steplog import Record, SystemClock

TYPE_CHECKING = False  # typing's, without importing typing (see bootbus.plain)
if TYPE_CHECKING:
    from typing import TypeVar

    from .steplog import Clock

SUMMARY_FILENAME = "summary.json"
SUMMARY_VERSION = 1
# At most this many writes per second: 1_000_000 / SUMMARY_MIN_INTERVAL_USEC.
SUMMARY_MIN_INTERVAL_USEC = 250_000
SUMMARY_MAX_CONNECTIONS = 1024
SUMMARY_MAX_NAMES = 4096
SUMMARY_MAX_NAMES_PER_CONNECTION = 64
SUMMARY_MAX_QUEUED_OWNERS_LISTED = 16
SUMMARY_MAX_ERRORS = 16
SUMMARY_MAX_ADDRESSES = 16
SUMMARY_MAX_STRING = 1024

STATES = ("starting", "running", "reexecuting", "pivoting", "stopping", "stopped")


class SummaryError(Exception):
    """No summary to read (missing, unreadable, not JSON)."""


class ConnectionSummary(Fields):
    _fields = ("unique_name", "pid", "comm", "uid", "names", "match_count", "queued_bytes",
               "queued_messages")

    def __init__(self, unique_name: str, pid: int | None = None, comm: str = "",
                 uid: int | None = None, names: list[str] | None = None, match_count: int = 0,
                 queued_bytes: int = 0, queued_messages: int = 0) -> None:
        self.unique_name = unique_name
        self.pid = pid
        self.comm = comm
        self.uid = uid
        self.names: list[str] = [] if names is None else names
        self.match_count = match_count
        self.queued_bytes = queued_bytes
        self.queued_messages = queued_messages


class NameSummary(Fields):
    _fields = ("name", "owner", "queue_depth", "queued")

    def __init__(self, name: str, owner: str, queue_depth: int = 0,
                 queued: list[str] | None = None) -> None:
        self.name = name
        self.owner = owner
        # Connections waiting for the name (D-Bus name queue), first ones listed.
        self.queue_depth = queue_depth
        self.queued: list[str] = [] if queued is None else queued


class ErrorSummary(Fields):
    _fields = ("realtime_usec", "message", "seq", "phase", "priority")

    def __init__(self, realtime_usec: int, message: str, seq: int = 0, phase: str = "",
                 priority: int = 3) -> None:
        self.realtime_usec = realtime_usec
        self.message = message
        self.seq = seq
        self.phase = phase
        self.priority = priority

    @classmethod
    def from_record(cls, record: Record) -> ErrorSummary:
        return cls(record.realtime_usec, record.message, record.seq, record.phase, record.priority)


class Summary(Fields):
    """The daemon fills the bus state; the writer stamps the process identity."""

    _fields = ("phase", "state", "generation", "pivots", "started_realtime_usec",
               "started_monotonic_usec", "addresses", "connections", "connection_count",
               "names", "name_count", "last_errors", "version", "pid", "process_start_ticks",
               "written_realtime_usec", "written_monotonic_usec", "write_count")

    def __init__(self, phase: str = "", state: str = "running", generation: int = 0,
                 pivots: int = 0, started_realtime_usec: int = 0,
                 started_monotonic_usec: int = 0, addresses: list[str] | None = None,
                 connections: list[ConnectionSummary] | None = None, connection_count: int = 0,
                 names: list[NameSummary] | None = None, name_count: int = 0,
                 last_errors: list[ErrorSummary] | None = None, version: int = SUMMARY_VERSION,
                 pid: int = 0, process_start_ticks: int | None = None,
                 written_realtime_usec: int = 0, written_monotonic_usec: int = 0,
                 write_count: int = 0) -> None:
        self.phase = phase
        self.state = state
        self.generation = generation  # re-execs so far
        self.pivots = pivots
        self.started_realtime_usec = started_realtime_usec  # first start, kept across re-exec
        self.started_monotonic_usec = started_monotonic_usec
        self.addresses: list[str] = [] if addresses is None else addresses
        self.connections: list[ConnectionSummary] = [] if connections is None else connections
        self.connection_count = connection_count  # all of them, also when the list is clipped
        self.names: list[NameSummary] = [] if names is None else names
        self.name_count = name_count
        self.last_errors: list[ErrorSummary] = [] if last_errors is None else last_errors
        self.version = version
        self.pid = pid
        self.process_start_ticks = process_start_ticks
        self.written_realtime_usec = written_realtime_usec
        self.written_monotonic_usec = written_monotonic_usec
        self.write_count = write_count

    def to_json(self) -> bytes:
        import json  # not with the module: a cold start writes its first summary later

        return json.dumps(as_dict(self), separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


def summary_path(runtime_dir: str | os.PathLike[str]) -> str:
    return os.path.join(os.fspath(runtime_dir), SUMMARY_FILENAME)


# -- bounding -------------------------------------------------------------------


def _s(text: str) -> str:
    return text if len(text) <= SUMMARY_MAX_STRING else text[: SUMMARY_MAX_STRING - 1] + "…"


def clip_summary(summary: Summary) -> Summary:
    """Every list within its bound, the true totals kept in the counts."""
    connections = [
        replace(
            c, comm=_s(c.comm), names=[_s(n) for n in c.names[:SUMMARY_MAX_NAMES_PER_CONNECTION]]
        )
        for c in summary.connections[:SUMMARY_MAX_CONNECTIONS]
    ]
    names = [
        replace(n, name=_s(n.name), queued=n.queued[:SUMMARY_MAX_QUEUED_OWNERS_LISTED])
        for n in summary.names[:SUMMARY_MAX_NAMES]
    ]
    errors = [replace(e, message=_s(e.message)) for e in summary.last_errors[-SUMMARY_MAX_ERRORS:]]
    return replace(
        summary,
        addresses=[_s(a) for a in summary.addresses[:SUMMARY_MAX_ADDRESSES]],
        connections=connections,
        connection_count=max(summary.connection_count, len(summary.connections)),
        names=names,
        name_count=max(summary.name_count, len(summary.names)),
        last_errors=errors,
    )


# -- the process behind a summary ---------------------------------------------------


def proc_stat(pid: int, proc_root: str = "/proc") -> tuple[str, int] | None:
    """(state, start time in clock ticks) of `pid` from /proc/PID/stat, or None."""
    try:
        with open(os.path.join(proc_root, str(pid), "stat"), "rb") as f:
            stat = f.read()
    except OSError:
        return None
    rest = stat[stat.rfind(b")") + 2 :].split()  # comm may hold spaces and ')'
    try:
        return rest[0].decode(), int(rest[19])
    except (IndexError, ValueError):
        return None


# -- writing --------------------------------------------------------------------------


class SummaryWriter:
    """Writes the summary at most once per `min_interval_usec`.

    The daemon calls `mark_dirty()` on every change (connect, disconnect,
    name acquired/lost, match added, phase change, error), `flush_if_due()`
    when `next_deadline_usec()` is reached, and `flush()` right before a
    re-exec, a pivot or exit (with the state set accordingly).
    """

    def __init__(
        self,
        runtime_dir: str | os.PathLike[str],
        build: Callable[[], Summary],
        *,
        clock: Clock | None = None,
        min_interval_usec: int = SUMMARY_MIN_INTERVAL_USEC,
        pid: int | None = None,
        proc_root: str = "/proc",
    ) -> None:
        self.path = summary_path(runtime_dir)
        self._tmp_path = os.path.join(os.fspath(runtime_dir), "." + SUMMARY_FILENAME + ".tmp")
        self._build = build
        self._clock = clock or SystemClock()
        self._interval = min_interval_usec
        self._pid = os.getpid() if pid is None else pid
        stat = proc_stat(self._pid, proc_root)
        self._start_ticks = None if stat is None else stat[1]
        self._dirty = False
        self._last_write_usec: int | None = None
        self._first_due_usec: int | None = None
        self.writes = 0
        self.write_errors = 0

    @property
    def dirty(self) -> bool:
        return self._dirty

    def mark_dirty(self) -> None:
        self._dirty = True

    def write_first_after(self, delay_usec: int) -> None:
        """Mark dirty, with the first write due `delay_usec` from now rather than at once
        (a cold start: its first clients need not wait for json's import and the write)."""
        self._dirty = True
        self._first_due_usec = self._clock.monotonic_usec() + delay_usec

    def next_deadline_usec(self) -> int | None:
        if not self._dirty:
            return None
        if self._last_write_usec is None:
            if self._first_due_usec is not None:
                return self._first_due_usec
            return self._clock.monotonic_usec()
        return self._last_write_usec + self._interval

    def flush_if_due(self) -> bool:
        """Write if dirty and the interval has passed; True if written."""
        deadline = self.next_deadline_usec()
        if deadline is None or self._clock.monotonic_usec() < deadline:
            return False
        return self.flush()

    def flush(self) -> bool:
        """Build and write now. On failure the summary stays dirty for the next deadline."""
        built = self._build()
        now = self._clock.monotonic_usec()
        self._last_write_usec = now
        self._dirty = False
        summary = replace(
            clip_summary(built),
            version=SUMMARY_VERSION,
            pid=self._pid,
            process_start_ticks=self._start_ticks,
            written_realtime_usec=self._clock.realtime_usec(),
            written_monotonic_usec=now,
            write_count=self.writes + 1,
        )
        try:
            self._replace_file(summary.to_json())
        except (OSError, ImportError):  # ImportError: json deferred, our files deleted since
            self.write_errors += 1
            self._dirty = True
            return False
        self.writes += 1
        return True

    def _replace_file(self, data: bytes) -> None:
        fd = os.open(self._tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(self._tmp_path, self.path)


# -- reading --------------------------------------------------------------------------


class SummaryView(FrozenFields):
    __slots__ = _fields = ("summary", "online", "reason")

    summary: Summary
    online: bool
    reason: str  # one line saying why it is (not) online

    def __init__(self, summary: Summary, online: bool, reason: str) -> None:
        init = object.__setattr__
        init(self, "summary", summary)
        init(self, "online", online)
        init(self, "reason", reason)


def read_summary(runtime_dir: str | os.PathLike[str], *, proc_root: str = "/proc") -> SummaryView:
    """The last summary written, marked offline if its writer is gone."""
    import json

    path = summary_path(runtime_dir)
    try:
        with open(path, "rb") as f:
            obj = json.loads(f.read())
    except FileNotFoundError:
        raise SummaryError(
            f"no summary at {path}: bootbus never ran with this runtime directory"
        ) from None
    except (OSError, ValueError) as e:
        raise SummaryError(f"cannot read {path}: {e}") from None
    if not isinstance(obj, dict):
        raise SummaryError(f"{path} is not a JSON object")
    summary = summary_from_json(obj)
    online, reason = writer_alive(summary, proc_root)
    return SummaryView(summary, online, reason)


def writer_alive(summary: Summary, proc_root: str = "/proc") -> tuple[bool, str]:
    if summary.pid <= 0:
        return False, "the summary names no process"
    stat = proc_stat(summary.pid, proc_root)
    if stat is None:
        return False, f"process {summary.pid} is gone"
    state, start_ticks = stat
    if state in ("Z", "X"):
        return False, f"process {summary.pid} has exited"
    if summary.process_start_ticks is not None and start_ticks != summary.process_start_ticks:
        return False, f"pid {summary.pid} now belongs to another process"
    return True, f"process {summary.pid} is running"


if TYPE_CHECKING:
    T = TypeVar("T")


def _get(obj: dict[str, object], key: str, kind: type[T], default: T) -> T:
    value = obj.get(key, default)
    if kind is int and type(value) is not int:  # bool is not an int here
        return default
    return value if isinstance(value, kind) else default


def _opt_int(obj: dict[str, object], key: str) -> int | None:
    value = obj.get(key)
    return value if type(value) is int else None


def _str_list(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _objects(value: object) -> list[dict[str, object]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _connection(o: dict[str, object]) -> ConnectionSummary:
    return ConnectionSummary(
        unique_name=_get(o, "unique_name", str, ""),
        pid=_opt_int(o, "pid"),
        comm=_get(o, "comm", str, ""),
        uid=_opt_int(o, "uid"),
        names=_str_list(o.get("names")),
        match_count=_get(o, "match_count", int, 0),
        queued_bytes=_get(o, "queued_bytes", int, 0),
        queued_messages=_get(o, "queued_messages", int, 0),
    )


def _name(o: dict[str, object]) -> NameSummary:
    return NameSummary(
        name=_get(o, "name", str, ""),
        owner=_get(o, "owner", str, ""),
        queue_depth=_get(o, "queue_depth", int, 0),
        queued=_str_list(o.get("queued")),
    )


def _error(o: dict[str, object]) -> ErrorSummary:
    return ErrorSummary(
        realtime_usec=_get(o, "realtime_usec", int, 0),
        message=_get(o, "message", str, ""),
        seq=_get(o, "seq", int, 0),
        phase=_get(o, "phase", str, ""),
        priority=_get(o, "priority", int, 3),
    )


def summary_from_json(obj: dict[str, object]) -> Summary:
    """Tolerant of version skew: unknown keys ignored, bad or missing ones defaulted."""
    return Summary(
        phase=_get(obj, "phase", str, ""),
        state=_get(obj, "state", str, "running"),
        generation=_get(obj, "generation", int, 0),
        pivots=_get(obj, "pivots", int, 0),
        started_realtime_usec=_get(obj, "started_realtime_usec", int, 0),
        started_monotonic_usec=_get(obj, "started_monotonic_usec", int, 0),
        addresses=_str_list(obj.get("addresses")),
        connections=[_connection(o) for o in _objects(obj.get("connections"))],
        connection_count=_get(obj, "connection_count", int, 0),
        names=[_name(o) for o in _objects(obj.get("names"))],
        name_count=_get(obj, "name_count", int, 0),
        last_errors=[_error(o) for o in _objects(obj.get("last_errors"))],
        version=_get(obj, "version", int, 0),
        pid=_get(obj, "pid", int, 0),
        process_start_ticks=_opt_int(obj, "process_start_ticks"),
        written_realtime_usec=_get(obj, "written_realtime_usec", int, 0),
        written_monotonic_usec=_get(obj, "written_monotonic_usec", int, 0),
        write_count=_get(obj, "write_count", int, 0),
    )
