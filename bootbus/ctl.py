"""bootbusctl: inspect and steer bootbus from a shell, live or from what it left behind.

Owns: the command line (click), choosing where the answers come from (the live
bus, or the files in the runtime directory when the daemon is dead or wedged),
turning answers into tables or JSON, the monitor's pcap output, and the
simple argument syntax of `call` and `emit`. The bus protocol is
bootbus.client's; the file formats are bootbus.io.steplog's and
bootbus.io.summary's.

Never: writes to the runtime directory, changes bus state except through
the commands that exist for it (call, emit, reexec, pivot), or prints a
traceback for an expected failure (a dead bus, a missing file, a refused
call): those are ClickExceptions with the exit codes below.
"""

from __future__ import annotations

import array
import collections
import dataclasses
import datetime
import json
import os
import subprocess
import re
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import click

from .client import BUS, BUS_PATH, READ_SIZE, CallError, Client
from .daemon import default_runtime_dir
from .io.steplog import (LOG_DEBUG, LOG_ERR, LOG_INFO, LOG_WARNING, PRIORITY_NAMES,
                         STEPLOG_FILENAME, LogTail, Record, RecordFilter, read_records,
                         steplog_path)
from .plain import Fields, as_dict
from .io.summary import (SUMMARY_FILENAME, Summary, SummaryError, SummaryView, read_summary,
                         summary_path)
from .rootdev import root_filter
from .wire import message as m
from .wire import names as wire_names
from .wire.address import parse_addresses
from .wire.errors import AddressError, MarshalError, SignatureError
from .wire.limits import MAX_MESSAGE_SIZE, MAX_UNIX_FDS_PER_MESSAGE
from .wire.marshal import marshal
from .wire.signature import split_signature

SERVICE = "org.bootbus"
PATH = "/org/bootbus/Supervisor1"
IFACE = "org.bootbus.Supervisor1"
PEER_IFACE = "org.freedesktop.DBus.Peer"
MONITORING_IFACE = "org.freedesktop.DBus.Monitoring"
UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
NAME_HAS_NO_OWNER = "org.freedesktop.DBus.Error.NameHasNoOwner"

EXIT_OK = 0
EXIT_BUS = 1  # cannot talk to the bus, or a call failed
EXIT_USAGE = 2  # click's own code for usage errors
EXIT_OFFLINE_UNAVAILABLE = 3  # no live bus and no usable files in the runtime directory

DEFAULT_TIMEOUT = 5.0  # seconds to wait for the bus to accept us or answer a call
REEXEC_TIMEOUT = 120.0  # preflight + exec + restore; the bus keeps serving meanwhile
CALL_BATCH = 256  # calls in flight at once when asking about every name
LAST_ERRORS_SHOWN = 5
FOLLOW_POLL_SECONDS = 0.25  # how often `log --follow` looks for new records

# The pcap format dbus-monitor --pcap writes (dbus/tools/dbus-print-message.c and
# dbus-monitor.c): classic libpcap, host byte order, one D-Bus message per record.
PCAP_MAGIC = 0xA1B2C3D4
PCAP_VERSION = (2, 4)
PCAP_SNAPLEN = MAX_MESSAGE_SIZE  # 1 << 27, DBUS_MAXIMUM_MESSAGE_LENGTH
LINKTYPE_DBUS = 231
_PCAP_HEADER = struct.Struct("=IHHiIII")
_PCAP_RECORD = struct.Struct("=IIII")

_PRIORITY_ALIASES = {"warn": 4, "error": 3, "panic": 0}
_SINCE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SINCE_RELATIVE = re.compile(r"-(\d+(?:\.\d+)?)([smhd]?)")


class BusFailure(click.ClickException):
    """The bus could not be reached, or it refused a call."""

    exit_code = EXIT_BUS


class OfflineUnavailable(click.ClickException):
    """Neither a live bus nor usable files in the runtime directory."""

    exit_code = EXIT_OFFLINE_UNAVAILABLE


# -- where answers come from -------------------------------------------------------------


@dataclass
class Target:
    """What the group-level flags asked for."""

    address: str | None  # explicit --address (or BOOTBUS_ADDRESS)
    runtime_dir: str | None  # explicit --runtime-dir
    timeout: float

    @property
    def live_address(self) -> str:
        if self.address:
            return self.address
        return f"unix:path={self.runtime_dir or default_runtime_dir()}/bus"

    @property
    def files_dir(self) -> str:
        """The runtime directory whose files the offline mode and `log` read."""
        if self.runtime_dir:
            return self.runtime_dir
        inferred = _dir_of_address(self.address) if self.address else None
        return inferred or default_runtime_dir()


def _dir_of_address(address: str) -> str | None:
    """The directory of a unix:path= address, if bootbus left its files there."""
    try:
        parsed = parse_addresses(address)
    except AddressError:
        return None
    for addr in parsed:
        path = addr.get("path") if addr.transport == "unix" else None
        if path is not None:
            directory = os.path.dirname(path)
            if any(os.path.exists(os.path.join(directory, f))
                   for f in (SUMMARY_FILENAME, STEPLOG_FILENAME)):
                return directory
    return None


class CtlClient(Client):
    """bootbus.client.Client that closes its socket when connecting fails half-way
    (a wedged bus accepts the connection, then never answers the SASL exchange)."""

    def __init__(self, address: str, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        try:
            super().__init__(address, timeout)
        except BaseException:
            sock = getattr(self, "sock", None)
            if sock is not None:
                sock.close()
            raise


class Live:
    """Answers from the running bus; remembers which optional methods it has."""

    mode = "live"

    def __init__(self, client: Client, address: str, timeout: float, files_dir: str,
                 runtime_dir_explicit: bool = False) -> None:
        self.client = client
        self.address = address
        self.timeout = timeout
        self.files_dir = files_dir
        self.runtime_dir_explicit = runtime_dir_explicit
        self._missing: set[str] = set()

    def describe(self) -> str:
        return f"live, {self.address}"

    def source(self) -> dict[str, Any]:
        return {"mode": self.mode, "address": self.address}

    def call(self, dest: str, path: str, iface: str, member: str, sig: str = "",
             args: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self.client.call(dest, path, iface, member, sig, args, timeout=self.timeout)
        except CallError as exc:
            raise BusFailure(f"{member} failed: {exc}") from None
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise BusFailure(f"{member}: {exc}") from None

    def batch(self, dest: str, path: str, iface: str, member: str, sig: str,
              args_list: list[tuple[Any, ...]]) -> list[list[Any] | CallError]:
        """The same call for each args tuple, pipelined; errors are returned, not raised."""
        out: list[list[Any] | CallError] = []
        try:
            for start in range(0, len(args_list), CALL_BATCH):
                serials = [self.client.call_async(dest, path, iface, member, sig, args)
                           for args in args_list[start:start + CALL_BATCH]]
                for serial in serials:
                    reply = self.client.wait_reply(serial, self.timeout)
                    out.append(_reply_value(reply))
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise BusFailure(f"{member}: {exc}") from None
        return out

    def optional(self, member: str) -> list[Any] | None:
        """A Supervisor1 method the daemon may not have yet; None when it doesn't."""
        if member in self._missing:
            return None
        (reply,) = self.batch(SERVICE, PATH, IFACE, member, "", [()])
        if isinstance(reply, CallError):
            if reply.name == UNKNOWN_METHOD:
                self._missing.add(member)
                return None
            raise BusFailure(f"{member} failed: {reply}")
        return reply

    def close(self) -> None:
        self.client.close()


def _reply_value(reply: m.Message) -> list[Any] | CallError:
    if reply.type == m.ERROR:
        text = reply.args()[0] if reply.signature.startswith("s") else ""
        return CallError(reply.error_name or "", text)
    return reply.args()


class Offline:
    """Answers from summary.json in the runtime directory."""

    mode = "offline"

    def __init__(self, files_dir: str, view: SummaryView, live_error: str | None) -> None:
        self.files_dir = files_dir
        self.view = view
        self.live_error = live_error

    @property
    def summary(self) -> Summary:
        return self.view.summary

    def describe(self) -> str:
        as_of = _format_time(self.summary.written_realtime_usec)
        why = f"; live: {self.live_error}" if self.live_error else ""
        if self.view.online:
            return (f"offline, from the files in {self.files_dir}: {self.view.reason}; "
                    f"state as of {as_of}{why}")
        return f"OFFLINE: {_not_running(self.view)}; state as of {as_of}{why}"

    def source(self) -> dict[str, Any]:
        return {"mode": self.mode, "runtime_dir": self.files_dir,
                "daemon_running": self.view.online, "reason": self.view.reason,
                "as_of_realtime_usec": self.summary.written_realtime_usec,
                "as_of": _iso_time(self.summary.written_realtime_usec),
                "live_error": self.live_error}

    def close(self) -> None:
        pass


def _not_running(view: SummaryView) -> str:
    pid = view.summary.pid
    return f"daemon pid {pid} is not running ({view.reason})" if pid else view.reason


Source = Live | Offline


def connect(target: Target) -> Live:
    """Live mode or a BusFailure (exit 1)."""
    address = target.live_address
    try:
        client = CtlClient(address, timeout=target.timeout)
    except (OSError, ConnectionError, AddressError, CallError) as exc:
        raise BusFailure(f"cannot connect to {address}: {_reason(exc)}") from None
    return Live(client, address, target.timeout, target.files_dir, bool(target.runtime_dir))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time (the daemon may be wedged)"
    return str(exc) or type(exc).__name__


def open_source(target: Target) -> Source:
    """--address: live only; --runtime-dir: files only; both or neither: live, else files."""
    if target.runtime_dir and not target.address:
        return _offline(target.files_dir, None)
    try:
        live = connect(target)
        try:
            live.call(SERVICE, PATH, PEER_IFACE, "Ping")  # a wedged supervisor falls back too
        except BusFailure:
            live.close()
            raise
        return live
    except BusFailure as exc:
        if target.address and not target.runtime_dir:
            raise
        return _offline(target.files_dir, exc.message)


def _offline(files_dir: str, live_error: str | None) -> Offline:
    try:
        view = read_summary(files_dir)
    except SummaryError as exc:
        prefix = f"{live_error}; and offline: " if live_error else ""
        raise OfflineUnavailable(f"{prefix}{exc}") from None
    return Offline(files_dir, view, live_error)


def _target(ctx: click.Context) -> Target:
    target = ctx.find_object(Target)
    assert target is not None
    return target


# -- output ---------------------------------------------------------------------------------


def _format_time(usec: int) -> str:
    if not usec:
        return "an unknown time"
    dt = datetime.datetime.fromtimestamp(usec / 1e6).astimezone()
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{usec % 1_000_000:06d}" + dt.strftime(" %Z")


def _iso_time(usec: int) -> str | None:
    if not usec:
        return None
    dt = datetime.datetime.fromtimestamp(usec / 1e6, datetime.timezone.utc).astimezone()
    return dt.isoformat(timespec="microseconds")


def _duration(seconds: float) -> str:
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min")]
    text = " ".join(f"{n}{unit}" for n, unit in parts if n)
    return f"{text} {secs}s".strip() if text else f"{seconds:.1f}s"


def _mode_line(source: Source | str) -> None:
    text = source if isinstance(source, str) else source.describe()
    click.echo(f"bootbus ({text})", err=True)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


def _table(headers: list[str], rows: Iterable[list[Any]]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    for row in [headers, *cells]:
        line = "  ".join(v.ljust(w) for v, w in zip(row, widths))
        click.echo(line.rstrip())


def _emit_json(obj: Any) -> None:
    click.echo(json.dumps(_plain(obj), ensure_ascii=False, sort_keys=False))


def _plain(value: Any) -> Any:
    """D-Bus values (variants, structs, byte strings) as JSON-able values."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else json.dumps(_plain(k)): _plain(v)
                for k, v in value.items()}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) \
            and _is_variant(value):
        return {"type": value[0], "data": _plain(value[1])}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return list(bytes(value))
    if isinstance(value, Fields):  # bootbus's record classes (no dataclasses: import cost)
        return _plain(as_dict(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    return value


def _is_variant(value: tuple[Any, ...]) -> bool:
    """Unmarshalled variants are (signature, value); structs are tuples too, so check."""
    try:
        return len(split_signature(value[0])) == 1 and value[0] != ""
    except SignatureError:
        return False


def _comm(pid: int | None) -> str | None:
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip() or None
    except OSError:
        return None


# -- the bus's state, as rows -------------------------------------------------------------------


@dataclass
class NameRow:
    name: str
    owner: str
    pid: int | None
    comm: str | None
    queue_depth: int  # connections waiting for the name behind its owner
    queued: list[str]


@dataclass
class ConnectionRow:
    unique_name: str
    pid: int | None
    comm: str | None
    uid: int | None
    names: list[str]
    match_count: int | None  # None: the source does not know
    queued_bytes: int | None


@dataclass
class MatchRow:
    unique_name: str
    rules: list[str] | None  # None: only the count is known
    match_count: int | None


def _is_unique(name: str) -> bool:
    return name.startswith(":")


def live_owners(live: Live) -> dict[str, list[str]]:
    """Every name -> [primary owner, queued...]; names the bus answers itself -> [BUS]."""
    (all_names,) = live.call(BUS, BUS_PATH, BUS, "ListNames")
    well_known = [n for n in all_names if not _is_unique(n) and n != BUS]
    replies = live.batch(BUS, BUS_PATH, BUS, "ListQueuedOwners", "s", [(n,) for n in well_known])
    owners: dict[str, list[str]] = {BUS: [BUS]}
    unowned = []
    for name, reply in zip(well_known, replies):
        if isinstance(reply, CallError):
            if reply.name == NAME_HAS_NO_OWNER:
                unowned.append(name)
            continue
        owners[name] = list(reply[0])
    # ListNames lists the services the bus answers itself (org.bootbus); they have
    # an owner (NameHasOwner says so) but no queue. A name released meanwhile has neither.
    checks = live.batch(BUS, BUS_PATH, BUS, "NameHasOwner", "s", [(n,) for n in unowned])
    for name, reply in zip(unowned, checks):
        if not isinstance(reply, CallError) and reply[0]:
            owners[name] = [BUS]
    for name in all_names:
        if _is_unique(name):
            owners.setdefault(name, [name])
    return owners


def live_credentials(live: Live, names: list[str]) -> dict[str, dict[str, Any]]:
    replies = live.batch(BUS, BUS_PATH, BUS, "GetConnectionCredentials", "s",
                         [(n,) for n in names])
    creds: dict[str, dict[str, Any]] = {}
    for name, reply in zip(names, replies):
        if not isinstance(reply, CallError):
            creds[name] = {k: v[1] for k, v in reply[0].items()}
    return creds


def live_names(live: Live, include_unique: bool) -> list[NameRow]:
    owners = live_owners(live)
    shown = sorted(n for n in owners if include_unique or not _is_unique(n))
    creds = live_credentials(live, sorted({owners[n][0] for n in shown}))
    rows = []
    for name in shown:
        owner, *queued = owners[name]
        pid = creds.get(owner, {}).get("ProcessID")
        rows.append(NameRow(name, owner, pid, _comm(pid), len(queued), queued))
    return rows


def live_connections(live: Live) -> list[ConnectionRow]:
    listed = live.optional("ListConnections")
    if listed is not None:
        return [ConnectionRow(unique, pid or None, _comm(pid), uid, sorted(names), matches,
                              queued)
                for unique, pid, uid, names, matches, queued in listed[0]]
    owners = live_owners(live)
    owned: dict[str, list[str]] = collections.defaultdict(list)
    for name, queue in owners.items():
        if not _is_unique(name) and queue[0] != BUS:
            owned[queue[0]].append(name)
    uniques = sorted((n for n in owners if _is_unique(n)), key=_unique_sort_key)
    creds = live_credentials(live, uniques)
    rows = []
    for unique in uniques:
        if unique not in creds:
            continue  # disconnected meanwhile
        pid = creds[unique].get("ProcessID")
        rows.append(ConnectionRow(unique, pid, _comm(pid), creds[unique].get("UnixUserID"),
                                  sorted(owned.get(unique, [])), None, None))
    return rows


def _unique_sort_key(name: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in name[1:].split("."))
    except ValueError:
        return (1 << 62,)


def live_matches(live: Live) -> list[MatchRow] | None:
    listed = live.optional("ListMatches")
    if listed is None:
        return None
    rules: dict[str, list[str]] = collections.defaultdict(list)
    for unique, rule in listed[0]:
        rules[unique].append(rule)
    return [MatchRow(u, r, len(r)) for u, r in sorted(rules.items(),
                                                      key=lambda kv: _unique_sort_key(kv[0]))]


def offline_names(summary: Summary, include_unique: bool) -> list[NameRow]:
    by_unique = {c.unique_name: c for c in summary.connections}
    rows = []
    for n in summary.names:
        if _is_unique(n.name) and not include_unique:
            continue
        conn = by_unique.get(n.owner)
        rows.append(NameRow(n.name, n.owner, conn.pid if conn else None,
                            (conn.comm or None) if conn else None, n.queue_depth, n.queued))
    if include_unique:
        listed = {r.name for r in rows}
        rows.extend(NameRow(c.unique_name, c.unique_name, c.pid, c.comm or None, 0, [])
                    for c in summary.connections if c.unique_name not in listed)
    return sorted(rows, key=lambda r: r.name)


def offline_connections(summary: Summary) -> list[ConnectionRow]:
    return [ConnectionRow(c.unique_name, c.pid, c.comm or None, c.uid,
                          _owned(summary, c.unique_name, c.names), c.match_count, c.queued_bytes)
            for c in sorted(summary.connections, key=lambda c: _unique_sort_key(c.unique_name))]


def _owned(summary: Summary, unique_name: str, names: list[str]) -> list[str]:
    """The names a connection owns, as live mode shows them: not those it only queues for.

    A connection's name list in the summary may hold both; the summary's name
    list says who owns each (a name clipped from it is kept as listed).
    """
    owners = {n.name: n.owner for n in summary.names}
    return sorted(n for n in names if owners.get(n, unique_name) == unique_name)


def offline_matches(offline: Offline) -> list[MatchRow]:
    """Rules if the summary records them (a "matches" list per connection), else counts."""
    recorded = _summary_match_rules(offline.files_dir)
    return [MatchRow(c.unique_name, recorded.get(c.unique_name), c.match_count)
            for c in sorted(offline.summary.connections,
                            key=lambda c: _unique_sort_key(c.unique_name))]


def _summary_match_rules(files_dir: str) -> dict[str, list[str]]:
    try:
        with open(summary_path(files_dir), "rb") as f:
            obj = json.loads(f.read())
    except (OSError, ValueError):
        return {}
    rules = {}
    for conn in obj.get("connections", []) if isinstance(obj, dict) else []:
        if isinstance(conn, dict) and isinstance(conn.get("matches"), list):
            rules[str(conn.get("unique_name"))] = [str(r) for r in conn["matches"]]
    return rules


def _has_step_log(files_dir: str) -> bool:
    return any(os.path.exists(steplog_path(files_dir) + suffix) for suffix in ("", ".1"))


def _record_errors(files_dir: str) -> list[dict[str, Any]]:
    records = read_records(files_dir, RecordFilter(max_priority=LOG_ERR))
    return [_error_dict(r.seq, r.realtime_usec, r.phase, r.priority, r.message)
            for r in collections.deque(records, maxlen=LAST_ERRORS_SHOWN)]


def _error_dict(seq: int, usec: int, phase: str, priority: int, message: str) -> dict[str, Any]:
    return {"seq": seq, "realtime_usec": usec, "time": _iso_time(usec), "phase": phase,
            "priority": PRIORITY_NAMES[priority] if 0 <= priority <= LOG_DEBUG else priority,
            "message": message}


def _merge_errors(*lists: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for error in (e for errors in lists for e in errors):
        key = (error["seq"],) if error["seq"] else (error["realtime_usec"], error["message"])
        seen[key] = error
    ordered = sorted(seen.values(), key=lambda e: (e["realtime_usec"], e["seq"]))
    return ordered[-LAST_ERRORS_SHOWN:]


def live_status(live: Live) -> dict[str, Any]:
    (raw,) = live.call(SERVICE, PATH, IFACE, "GetStatus")
    status = {k: v[1] for k, v in raw.items()}
    owners = live_owners(live)
    waiting = sum(len(q) - 1 for n, q in owners.items() if not _is_unique(n))
    listed = live.optional("ListConnections")
    queued_bytes = sum(row[5] for row in listed[0]) if listed is not None else None
    started = float(status.get("StartedAt", 0.0))
    # The step log is local files: the daemon's own word on where they are beats a guess.
    target_dir = live.files_dir if live.runtime_dir_explicit else str(
        status.get("RuntimeDir") or live.files_dir)
    step_log = target_dir if _has_step_log(target_dir) else None
    return {
        "state": "running",
        "phase": status.get("Phase"),
        "pid": status.get("PID"),
        "started_at": _iso_time(int(started * 1e6)),
        "uptime_seconds": round(time.time() - started, 3) if started else None,
        "generation": status.get("Generation"),
        "pivots": status.get("Pivots"),
        "connections": status.get("Connections"),
        "names": status.get("Names"),
        "name_queue_waiting": waiting,
        "queued_bytes": queued_bytes,
        "pending_replies": status.get("PendingReplies"),
        "bus_id": status.get("BusId"),
        "step_log": step_log,
        "last_errors": _record_errors(step_log) if step_log else [],
    }


def offline_status(offline: Offline) -> dict[str, Any]:
    s = offline.summary
    from_summary = [_error_dict(e.seq, e.realtime_usec, e.phase, e.priority, e.message)
                    for e in s.last_errors]
    uptime = None
    if s.started_monotonic_usec and s.written_monotonic_usec:
        uptime = (s.written_monotonic_usec - s.started_monotonic_usec) / 1e6
    elif s.started_realtime_usec and s.written_realtime_usec:
        uptime = (s.written_realtime_usec - s.started_realtime_usec) / 1e6
    return {
        "state": s.state,
        "phase": s.phase,
        "pid": s.pid,
        "started_at": _iso_time(s.started_realtime_usec),
        "uptime_seconds": uptime,
        "generation": s.generation,
        "pivots": s.pivots,
        "connections": s.connection_count,
        "names": s.name_count,
        "name_queue_waiting": sum(n.queue_depth for n in s.names),
        "queued_bytes": sum(c.queued_bytes for c in s.connections),
        "pending_replies": None,
        "addresses": s.addresses,
        "step_log": offline.files_dir if _has_step_log(offline.files_dir) else None,
        "last_errors": _merge_errors(from_summary, _record_errors(offline.files_dir)),
    }


DRACUT_DIE_FILE = "/run/initramfs/.die"  # dracut's die() leaves its message here


def boot_stop_reasons(cmdline_path: str = "/proc/cmdline",
                      die_file: str = DRACUT_DIE_FILE) -> list[str]:
    """Why the boot is stopped in this shell, as far as this machine tells.

    An rd.break on the kernel command line (dracut drops to a shell at that
    hook), a dracut die() message, and units systemd marked failed.
    """
    reasons = []
    try:
        with open(cmdline_path) as f:
            words = f.read().split()
    except OSError:
        words = []
    for word in words:
        if word == "rd.break" or word.startswith("rd.break="):
            hook = word.partition("=")[2] or "switch_root"
            reasons.append(f"{word} on the kernel command line: dracut stops at the "
                           f"{hook} hook and opens a shell")
        elif word in ("rd.shell", "emergency", "rescue") or word.startswith(
                "systemd.unit=emergency") or word.startswith("systemd.unit=rescue"):
            reasons.append(f"{word} on the kernel command line")
    try:
        with open(die_file, errors="replace") as f:
            text = f.read().strip()
        reasons.append(f"dracut gave up: {text or '(no message)'}")
    except OSError:
        pass
    if os.path.exists("/run/systemd/system"):
        try:
            out = subprocess.run(["systemctl", "--failed", "--no-legend", "--plain",
                                  "--no-pager"], capture_output=True, text=True,
                                 timeout=FAILED_UNITS_TIMEOUT).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        failed = [line.split()[0] for line in out.splitlines() if line.strip()]
        if failed:
            reasons.append("failed units: " + ", ".join(failed))
    return reasons


FAILED_UNITS_TIMEOUT = 3.0  # seconds for `systemctl --failed` in an emergency shell


def _print_status(status: dict[str, Any], source: Source) -> None:
    uptime = status["uptime_seconds"]
    uptime_text = "-" if uptime is None else _duration(uptime)
    if isinstance(source, Offline):
        uptime_text += " (at the time of the state)"
    lines = [
        ("State", status["state"]),
        ("Phase", status["phase"]),
        ("PID", status["pid"]),
        ("Started", status["started_at"]),
        ("Uptime", uptime_text),
        ("Generation", f"{status['generation']}, {status['pivots']} pivots"),
        ("Connections", status["connections"]),
        ("Names", f"{status['names']} well-known, "
                  f"{status['name_queue_waiting']} waiting in name queues"),
        ("Queued bytes", "-" if status["queued_bytes"] is None
         else f"{status['queued_bytes']} waiting to be sent to peers"),
        ("Pending replies", status["pending_replies"]),
    ]
    for label, value in lines:
        click.echo(f"{label + ':':<17}{_cell(value)}")
    for reason in status.get("boot_stopped", []):
        click.echo(f"{'Boot stopped:':<17}{reason}")
    errors = status["last_errors"]
    none = "none" if status["step_log"] else "unknown (no step log found: use --runtime-dir)"
    click.echo(f"{'Last errors:':<17}{'' if errors else none}")
    for e in errors:
        click.echo(f"  {_format_time(e['realtime_usec'])} [{e['phase']}] {e['priority']}: "
                   f"{e['message']}")


# -- the command line ------------------------------------------------------------------------


def _with_source(ctx: click.Context, as_json: bool) -> Source:
    source = open_source(_target(ctx))
    ctx.call_on_close(source.close)
    if not as_json:
        _mode_line(source)
    return source


_json_option = click.option("--json", "as_json", is_flag=True, help="print JSON for scripts")

EPILOG = """\b
Modes: with --address the live bus is asked; with --runtime-dir the files
bootbus keeps there (summary.json, steplog.jsonl) are read, which works with
the daemon dead or wedged; with both or neither the live bus is tried first
(at RUNTIME_DIR/bus) and the files are read if it does not answer. Tables
name the mode used on stderr; JSON output has a "mode" key. `log` always
reads the files. The runtime directory defaults to the directory of a
unix:path= address holding bootbus files, else /run/bootbus as root
($XDG_RUNTIME_DIR/bootbus otherwise).

\b
Exit status:
  0  success
  1  the bus could not be reached or a call failed
  2  usage error
  3  offline data unavailable (no live bus and no summary or step log)
"""


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--address", default=None, envvar="BOOTBUS_ADDRESS",
              help="bus address: live mode (env BOOTBUS_ADDRESS)")
@click.option("--runtime-dir", default=None, type=click.Path(file_okay=False),
              help="bootbus runtime directory: offline mode")
@click.option("--timeout", default=DEFAULT_TIMEOUT, show_default=True, type=click.FloatRange(0.1),
              help="seconds to wait for the bus")
@click.pass_context
def main(ctx: click.Context, address: str | None, runtime_dir: str | None,
         timeout: float) -> None:
    """Inspect and steer bootbus, live or from what it left in its runtime directory."""
    ctx.obj = Target(address or None, runtime_dir or None, timeout)


@main.command()
@_json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Phase, pid, uptime, generation, counts, queue depths and last errors."""
    source = _with_source(ctx, as_json)
    info = live_status(source) if isinstance(source, Live) else offline_status(source)
    info["boot_stopped"] = boot_stop_reasons()
    if as_json:
        _emit_json({**source.source(), **info})
    else:
        _print_status(info, source)


@main.command()
@click.option("--unique", is_flag=True, help="also list unique names (:1.N)")
@_json_option
@click.pass_context
def names(ctx: click.Context, unique: bool, as_json: bool) -> None:
    """Each name with its owner, the owner's pid and comm, and its queue."""
    source = _with_source(ctx, as_json)
    rows = (live_names(source, unique) if isinstance(source, Live)
            else offline_names(source.summary, unique))
    if as_json:
        _emit_json({**source.source(), "names": rows})
        return
    _table(["NAME", "OWNER", "PID", "COMM", "QUEUE"],
           ([r.name, r.owner, r.pid, r.comm, _queue_cell(r)] for r in rows))


def _queue_cell(row: NameRow) -> str:
    if not row.queue_depth:
        return "-"
    shown = ",".join(row.queued)
    return f"{row.queue_depth} ({shown})" if shown else str(row.queue_depth)


@main.command()
@_json_option
@click.pass_context
def connections(ctx: click.Context, as_json: bool) -> None:
    """Each connection: unique name, pid, comm, uid, names, match count, queued bytes."""
    source = _with_source(ctx, as_json)
    rows = (live_connections(source) if isinstance(source, Live)
            else offline_connections(source.summary))
    if as_json:
        _emit_json({**source.source(), "connections": rows})
        return
    _table(["UNIQUE", "PID", "COMM", "UID", "NAMES", "MATCHES", "QUEUED"],
           ([r.unique_name, r.pid, r.comm, r.uid, r.names, r.match_count, r.queued_bytes]
            for r in rows))


@main.command()
@_json_option
@click.pass_context
def matches(ctx: click.Context, as_json: bool) -> None:
    """Each connection's match rules (offline: as recorded in the summary)."""
    source = _with_source(ctx, as_json)
    if isinstance(source, Live):
        rows = live_matches(source)
        if rows is None:
            raise BusFailure(f"this bootbus has no {IFACE}.ListMatches; its match rules can "
                             "only be read live once it has (--runtime-dir shows the counts)")
    else:
        rows = offline_matches(source)
    if as_json:
        _emit_json({**source.source(), "matches": rows})
        return
    for row in rows:
        if row.rules is None:
            click.echo(f"{row.unique_name}: {_cell(row.match_count)} rules "
                       "(the summary records the count only)")
            continue
        click.echo(f"{row.unique_name}: {len(row.rules)} rules")
        for rule in row.rules:
            click.echo(f"  {rule}")


@main.command("dump-state")
@click.pass_context
def dump_state(ctx: click.Context) -> None:
    """Everything as one JSON object (live: status, names, connections, matches)."""
    source = _with_source(ctx, True)
    if isinstance(source, Live):
        state: dict[str, Any] = {
            "status": live_status(source),
            "names": live_names(source, True),
            "connections": live_connections(source),
            "matches": live_matches(source),
        }
    else:
        state = {"summary": source.summary, "status": offline_status(source),
                 "matches": offline_matches(source)}
    _emit_json({**source.source(), **state})


# -- log --------------------------------------------------------------------------------------


def parse_priority(text: str) -> int:
    """A syslog priority by name (emerg..debug, warn, error) or number 0..7."""
    lowered = text.strip().lower()
    if lowered.isdigit() and int(lowered) <= LOG_DEBUG:
        return int(lowered)
    if lowered in PRIORITY_NAMES:
        return PRIORITY_NAMES.index(lowered)
    if lowered in _PRIORITY_ALIASES:
        return _PRIORITY_ALIASES[lowered]
    raise click.BadParameter(f"{text!r} is not a priority (0..7 or {', '.join(PRIORITY_NAMES)})")


def parse_since(text: str, now_usec: int) -> int:
    """-N[smhd] (ago; plain -N is seconds) or an ISO 8601 time (local time if no zone)."""
    relative = _SINCE_RELATIVE.fullmatch(text.strip())
    if relative:
        seconds = float(relative.group(1)) * _SINCE_UNITS[relative.group(2)]
        return now_usec - int(seconds * 1_000_000)
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither -N[smhd] nor an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.astimezone()  # naive means local time
    return int(when.timestamp() * 1_000_000)


def _priority_option(ctx: click.Context, param: click.Parameter, value: str | None) -> int:
    return LOG_DEBUG if value is None else parse_priority(value)


def _since_option(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    return None if value is None else parse_since(value, time.time_ns() // 1000)


def format_record(record: Record) -> str:
    fields = " ".join(f"{k}={_field_value(v)}" for k, v in record.fields.items())
    line = (f"{_format_time(record.realtime_usec)} {record.phase or '-'} "
            f"{PRIORITY_NAMES[record.priority]}: {record.message}")
    return f"{line}  {fields}" if fields else line


def _field_value(value: str) -> str:
    return json.dumps(value, ensure_ascii=False) if not value or re.search(r'[\s"]', value) \
        else value


def _log_mode_line(files_dir: str) -> str:
    try:
        view = read_summary(files_dir)
    except SummaryError:
        return f"files in {files_dir}; no summary, daemon state unknown"
    if view.online:
        return f"files in {files_dir}; daemon pid {view.summary.pid} is running"
    return (f"files in {files_dir}; OFFLINE: {_not_running(view)}; state as of "
            f"{_format_time(view.summary.written_realtime_usec)}")


@main.command()
@click.option("-p", "--priority", "max_priority", default=None, metavar="PRIORITY",
              callback=_priority_option,
              help="show this priority and more severe: 0..7 or emerg, alert, crit, err, "
                   "warning, notice, info, debug")
@click.option("--phase", "phases", multiple=True, metavar="PHASE",
              help="only records of this boot phase (repeatable): initramfs, root, shutdown...")
@click.option("-S", "--since", "since_usec", default=None, metavar="WHEN",
              callback=_since_option,
              help="only records since WHEN: -30s, -10m, -2h, -1d (ago; plain -N is seconds) "
                   "or an ISO 8601 time such as 2024-05-01T12:00:00 (local time if no zone)")
@click.option("-n", "--lines", default=None, type=click.IntRange(0),
              help="only the last N matching records")
@click.option("-f", "--follow", is_flag=True, help="keep printing records as they are written")
@click.option("--json", "as_json", is_flag=True,
              help="one JSON object per line (seq, realtime_usec, monotonic_usec, phase, "
                   "priority, message, fields)")
@click.pass_context
def log(ctx: click.Context, max_priority: int, phases: tuple[str, ...], since_usec: int | None,
        lines: int | None, follow: bool, as_json: bool) -> None:
    """The step log, from the files in the runtime directory (works with the daemon dead)."""
    files_dir = _target(ctx).files_dir
    if not _has_step_log(files_dir):
        raise OfflineUnavailable(f"no step log in {files_dir} (expected {STEPLOG_FILENAME})")
    flt = RecordFilter(max_priority=max_priority, phases=frozenset(phases) if phases else None,
                       since_realtime_usec=since_usec)
    _mode_line(_log_mode_line(files_dir))
    show: Callable[[Record], None] = (
        (lambda r: _emit_json(r.to_json_dict())) if as_json
        else (lambda r: click.echo(format_record(r))))
    if not follow:
        records: Iterable[Record] = read_records(files_dir, flt)
        if lines is not None:
            records = collections.deque(records, maxlen=lines)
        for record in records:
            show(record)
        return
    _follow(files_dir, flt, lines, show)


def _follow(files_dir: str, flt: RecordFilter, lines: int | None,
            show: Callable[[Record], None]) -> None:
    tail = LogTail(files_dir, flt)
    try:
        history = tail.read_new()
        for record in history[-lines:] if lines else ([] if lines == 0 else history):
            show(record)
        sys.stdout.flush()
        while True:
            time.sleep(FOLLOW_POLL_SECONDS)
            lost = tail.lost
            for record in tail.read_new():
                show(record)
            if tail.lost > lost:
                click.echo(f"bootbus: {tail.lost - lost} records rotated away unread", err=True)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        tail.close()


# -- monitor ------------------------------------------------------------------------------------


class MonitorClient(CtlClient):
    """A client that also receives fds (monitored messages may carry them) and closes them."""

    def _read(self, deadline: float | None) -> None:
        if deadline is not None:  # None keeps the socket's timeout (Client's, or receive()'s)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no message in time")
            self.sock.settimeout(remaining)
        data, ancdata, _flags, _addr = self.sock.recvmsg(
            READ_SIZE, socket.CMSG_SPACE(MAX_UNIX_FDS_PER_MESSAGE * 4), socket.MSG_CMSG_CLOEXEC)
        fds = _fds_of(ancdata)
        if not data:
            _close_all(fds)
            raise ConnectionError("the bus closed the connection")
        try:
            received = self.framer.feed(data, fds)
        finally:
            _close_all(self.framer.take_fds() if self.framer.error else [])
        for msg in received:
            _close_all(msg.fds)
            msg.fds = []
        self.queue.extend(received)
        if self.framer.error is not None:
            raise ConnectionError(f"invalid data from the bus: {self.framer.error}")

    def become_monitor(self, rules: list[str], timeout: float) -> CallError | None:
        """BecomeMonitor; what arrived before its reply (our own NameAcquired) is dropped.

        The bus answers before it turns the connection into a monitor, so every
        message after the reply is monitored traffic and none before it is.
        """
        serial = self.call_async(BUS, BUS_PATH, MONITORING_IFACE, "BecomeMonitor", "asu",
                                 (rules, 0))
        deadline = time.monotonic() + timeout
        while True:
            for index, msg in enumerate(self.queue):
                if msg.type in (m.METHOD_RETURN, m.ERROR) and msg.reply_serial == serial:
                    del self.queue[:index + 1]
                    answer = _reply_value(msg)
                    return answer if isinstance(answer, CallError) else None
            self._read(deadline)

    def receive(self, deadline: float | None) -> m.Message | None:
        """The next message, or None once `deadline` (monotonic) has passed."""
        if deadline is None:
            self.sock.settimeout(None)  # a quiet bus is no error: wait as long as it takes
        while not self.queue:
            try:
                self._read(deadline)
            except TimeoutError:
                return None
        return self.queue.pop(0)


def _fds_of(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    return list(fds)


def _close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class PcapWriter:
    """Messages as dbus-monitor --pcap writes them: LINKTYPE_DBUS, one message per record."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        stream.write(_PCAP_HEADER.pack(PCAP_MAGIC, *PCAP_VERSION, 0, 0, PCAP_SNAPLEN,
                                       LINKTYPE_DBUS))
        stream.flush()

    def write(self, raw: bytes, realtime_ns: int) -> None:
        seconds, nanos = divmod(realtime_ns, 1_000_000_000)
        captured = raw[:PCAP_SNAPLEN]
        self.stream.write(_PCAP_RECORD.pack(seconds, nanos // 1000, len(captured), len(raw)))
        self.stream.write(captured)
        self.stream.flush()  # a monitor killed mid-capture still leaves a readable file


def message_dict(msg: m.Message, realtime_ns: int) -> dict[str, Any]:
    info: dict[str, Any] = {
        "time_usec": realtime_ns // 1000,
        "type": m.TYPE_NAMES.get(msg.type, str(msg.type)),
        "sender": msg.sender, "destination": msg.destination, "path": msg.path,
        "interface": msg.interface, "member": msg.member, "error_name": msg.error_name,
        "serial": msg.serial, "reply_serial": msg.reply_serial or None,
        "signature": msg.signature, "unix_fds": msg.unix_fds,
    }
    try:
        info["args"] = _plain(msg.args())
    except (MarshalError, SignatureError, ValueError, IndexError, struct.error) as exc:
        info["args"] = None
        info["args_error"] = str(exc)
    return info


def format_message(info: dict[str, Any]) -> str:
    when = datetime.datetime.fromtimestamp(info["time_usec"] / 1e6).strftime("%H:%M:%S.%f")
    parts = [when, f"{info['type']:<13}"]
    for key, label in (("sender", "sender"), ("destination", "dest"), ("path", "path"),
                       ("interface", "iface"), ("member", "member"),
                       ("error_name", "error"), ("serial", "serial"),
                       ("reply_serial", "reply_serial")):
        if info[key] is not None:
            parts.append(f"{label}={info[key]}")
    if info["signature"]:
        parts.append(f"sig={info['signature']}")
    if info["unix_fds"]:
        parts.append(f"fds={info['unix_fds']}")
    if info["args"]:
        parts.append("args=" + json.dumps(info["args"], ensure_ascii=False))
    elif info["args"] is None:
        parts.append(f"args=<{info['args_error']}>")
    return " ".join(parts)


def _own_name_lost(msg: m.Message, unique_name: str) -> bool:
    """The NameLost a monitor gets for its own unique name (dbus-monitor hides it too)."""
    if msg.type != m.SIGNAL or msg.member != "NameLost" or msg.sender != BUS:
        return False
    try:
        return bool(msg.args() == [unique_name])
    except (MarshalError, SignatureError):
        return False


@main.command()
@click.argument("rules", nargs=-1)
@click.option("--pcap", "pcap_file", type=click.File("wb", lazy=False), default=None,
              metavar="FILE", help="also write the messages to FILE as a pcap (LINKTYPE_DBUS, "
                                   "as dbus-monitor --pcap); '-' writes it to stdout instead "
                                   "of the text")
@click.option("-c", "--count", type=click.IntRange(1), default=None,
              help="stop after N messages")
@click.option("--duration", "--timeout", "duration", type=click.FloatRange(0), default=None,
              metavar="SECONDS", help="stop after SECONDS")
@click.option("-q", "--quiet", is_flag=True, help="no text output (with --pcap)")
@_json_option
@click.pass_context
def monitor(ctx: click.Context, rules: tuple[str, ...], pcap_file: IO[bytes] | None,
            count: int | None, duration: float | None, quiet: bool, as_json: bool) -> None:
    """Print every message on the bus (or those matching RULES), like busctl monitor.

    \b
    Each RULE is a D-Bus match rule, e.g. "type='signal',interface='org.example.I'";
    a message is shown if it matches any of them. Needs root or the bus's user.
    """
    live = connect_monitor(_target(ctx))
    ctx.call_on_close(live.close)
    pcap = PcapWriter(pcap_file) if pcap_file is not None else None
    to_stdout = pcap_file is not None and getattr(pcap_file, "name", "") == "<stdout>"
    become_monitor(live, list(rules))
    if not (as_json or to_stdout or quiet):
        _mode_line(live)  # after BecomeMonitor: from this line on, nothing is missed
        sys.stderr.flush()
    deadline = None if duration is None else time.monotonic() + duration
    seen = 0
    try:
        while count is None or seen < count:
            msg = live.receive(deadline)
            if msg is None:
                break
            if _own_name_lost(msg, live.unique_name):
                continue
            now = time.time_ns()
            seen += 1
            if pcap is not None:
                pcap.write(msg.raw, now)
            if not (quiet or to_stdout):
                info = message_dict(msg, now)
                click.echo(json.dumps(info, ensure_ascii=False) if as_json
                           else format_message(info))
    except KeyboardInterrupt:
        pass
    except (ConnectionError, OSError) as exc:
        raise BusFailure(f"monitor stopped after {seen} messages: {exc}") from None


class MonitorLive(Live):
    client: MonitorClient

    def receive(self, deadline: float | None) -> m.Message | None:
        return self.client.receive(deadline)

    @property
    def unique_name(self) -> str:
        return self.client.unique_name


def connect_monitor(target: Target) -> MonitorLive:
    address = target.live_address
    try:
        client = MonitorClient(address, timeout=target.timeout)
    except (OSError, ConnectionError, AddressError, CallError) as exc:
        raise BusFailure(f"cannot connect to {address}: {_reason(exc)}") from None
    return MonitorLive(client, address, target.timeout, target.files_dir,
                       bool(target.runtime_dir))


def become_monitor(live: MonitorLive, rules: list[str]) -> None:
    try:
        reply = live.client.become_monitor(rules, live.timeout)
    except (TimeoutError, ConnectionError, OSError) as exc:
        raise BusFailure(f"BecomeMonitor: {exc}") from None
    if isinstance(reply, CallError):
        raise BusFailure(f"BecomeMonitor refused: {reply}")


# -- call and emit ---------------------------------------------------------------------------

ARGS_HELP = """\b
Arguments follow SIGNATURE, one word per basic value: s o g (text),
b (true/false, yes/no, 1/0), y n q i u x t (integers, 0x.. too), d (number).
Arrays of a basic type take a count, then the elements:  as 2 one two
Dicts of basic types take a count, then key value pairs: a{ss} 1 KEY value
A variant takes a basic type, then the value:            v s hello
"""

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_INTEGER_TYPES = "ynqiuxt"


def parse_value(code: str, word: str) -> Any:
    """One basic value from one word, validated for its D-Bus type."""
    if code in _INTEGER_TYPES:
        try:
            return int(word, 0)
        except ValueError:
            raise click.BadParameter(f"{word!r} is not an integer (type {code})") from None
    if code == "b":
        lowered = word.lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        raise click.BadParameter(f"{word!r} is not a boolean (true/false)")
    if code == "d":
        try:
            return float(word)
        except ValueError:
            raise click.BadParameter(f"{word!r} is not a number (type d)") from None
    if code == "o" and not wire_names.is_object_path(word):
        raise click.BadParameter(f"{word!r} is not an object path")
    if code == "g":
        try:
            split_signature(word)
        except SignatureError as exc:
            raise click.BadParameter(f"{word!r} is not a signature: {exc}") from None
    if code in "sog":
        return word
    raise click.BadParameter(f"type {code!r} cannot be given on the command line")


def parse_args(signature: str, words: list[str]) -> list[Any]:
    """Values for `signature` from `words` (see ARGS_HELP); every word must be used."""
    try:
        types = split_signature(signature)
    except SignatureError as exc:
        raise click.BadParameter(f"invalid signature {signature!r}: {exc}") from None
    pending = iter(words)
    values = [_parse_one(t, pending) for t in types]
    extra = list(pending)
    if extra:
        raise click.BadParameter(f"more arguments than signature {signature!r} takes: "
                                 f"{' '.join(extra)}")
    try:
        marshal(signature, values)  # ranges, NULs in strings, sizes: the wire's own checks
    except MarshalError as exc:
        raise click.BadParameter(str(exc)) from None
    return values


def _next_word(words: Iterator[str], what: str) -> str:
    try:
        return next(words)
    except StopIteration:
        raise click.BadParameter(f"missing argument: {what}") from None


def _parse_one(t: str, words: Iterator[str]) -> Any:
    if len(t) == 1 and t not in "vh":
        return parse_value(t, _next_word(words, f"a value of type {t}"))
    if t == "v":
        inner = _next_word(words, "the type of a variant")
        if len(inner) != 1 or inner in "vh":
            raise click.BadParameter(f"a variant's type must be a basic type, not {inner!r}")
        return (inner, parse_value(inner, _next_word(words, f"a value of type {inner}")))
    if len(t) == 2 and t[0] == "a" and t[1] not in "vh":
        return [parse_value(t[1], _next_word(words, f"element {i + 1} of {t}"))
                for i in range(_count(t, words))]
    if len(t) == 5 and t[:2] == "a{" and t[2] not in "vh" and t[3] not in "vh":
        entries = {}
        for i in range(_count(t, words)):
            key = parse_value(t[2], _next_word(words, f"key {i + 1} of {t}"))
            entries[key] = parse_value(t[3], _next_word(words, f"value {i + 1} of {t}"))
        return entries
    raise click.BadParameter(f"type {t!r} cannot be given on the command line")


def _count(t: str, words: Iterator[str]) -> int:
    count = _next_word(words, f"the element count of {t}")
    if not count.isdigit():
        raise click.BadParameter(f"{t} needs an element count first, not {count!r}")
    return int(count)


def _split_member(text: str) -> tuple[str | None, str]:
    interface, _, member = text.rpartition(".")
    if interface and not wire_names.is_interface_name(interface):
        raise click.BadParameter(f"{interface!r} is not an interface name")
    if not wire_names.is_member_name(member):
        raise click.BadParameter(f"{member!r} is not a member name")
    return interface or None, member


def _check_path(path: str) -> str:
    if not wire_names.is_object_path(path):
        raise click.BadParameter(f"{path!r} is not an object path")
    return path


@main.command(epilog=ARGS_HELP, context_settings={"ignore_unknown_options": True})
@click.argument("destination")
@click.argument("path")
@click.argument("method", metavar="IFACE.METHOD")
@click.argument("signature", required=False, default="")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@_json_option
@click.pass_context
def call(ctx: click.Context, destination: str, path: str, method: str, signature: str,
         args: tuple[str, ...], as_json: bool) -> None:
    """Call a method and print its reply (one line per value: type, then JSON).

    \b
    bootbusctl call org.freedesktop.DBus /org/freedesktop/DBus \\
        org.freedesktop.DBus.GetNameOwner s org.bootbus
    """
    interface, member = _split_member(method)
    values = parse_args(signature, list(args))
    if not wire_names.is_bus_name(destination):
        raise click.BadParameter(f"{destination!r} is not a bus name")
    live = connect(_target(ctx))
    ctx.call_on_close(live.close)
    try:
        serial = live.client.call_async(destination, _check_path(path), interface, member,
                                        signature, values)
        answer = live.client.wait_reply(serial, live.timeout)
    except (TimeoutError, ConnectionError, OSError) as exc:
        raise BusFailure(f"{member}: {exc}") from None
    reply = _reply_value(answer)
    if isinstance(reply, CallError):
        raise BusFailure(str(reply))
    sig = answer.signature
    if as_json:
        _emit_json({**live.source(), "signature": sig, "args": reply})
        return
    _mode_line(live)
    for t, value in zip(split_signature(sig), reply):
        click.echo(f"{t} {json.dumps(_plain(value), ensure_ascii=False)}")


@main.command(epilog=ARGS_HELP, context_settings={"ignore_unknown_options": True})
@click.option("--destination", default=None, help="send to this name only (unicast signal)")
@click.argument("path")
@click.argument("signal", metavar="IFACE.SIGNAL")
@click.argument("signature", required=False, default="")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def emit(ctx: click.Context, destination: str | None, path: str, signal: str, signature: str,
         args: tuple[str, ...]) -> None:
    """Emit a signal (routed once this returns).

    \b
    bootbusctl emit /org/example org.example.I.Changed s hello
    """
    interface, member = _split_member(signal)
    if interface is None:
        raise click.BadParameter("a signal needs an interface: IFACE.SIGNAL")
    values = parse_args(signature, list(args))
    if destination is not None and not wire_names.is_bus_name(destination):
        raise click.BadParameter(f"{destination!r} is not a bus name")
    live = connect(_target(ctx))
    ctx.call_on_close(live.close)
    raw = m.build(m.SIGNAL, live.client.next_serial(), path=_check_path(path),
                  interface=interface, member=member, destination=destination,
                  signature=signature, args=values)
    try:
        live.client.send(raw)
    except OSError as exc:
        raise BusFailure(f"{member}: {exc}") from None
    # The bus handles a connection's messages in order: once GetId is answered,
    # the signal has been routed.
    live.call(BUS, BUS_PATH, BUS, "GetId")
    _mode_line(live)


# -- steering ------------------------------------------------------------------------------------


def _steer(ctx: click.Context, member: str, signature: str = "",
           args: tuple[Any, ...] = ()) -> None:
    target = _target(ctx)
    live = connect(dataclasses.replace(target, timeout=max(target.timeout, REEXEC_TIMEOUT)))
    ctx.call_on_close(live.close)
    live.call(SERVICE, PATH, IFACE, member, signature, args)


@main.command()
@click.pass_context
def reexec(ctx: click.Context) -> None:
    """Re-execute the daemon (new code), keeping every connection."""
    _steer(ctx, "Reexec")
    click.echo("re-executed; the new image is serving")


@main.command()
@click.option("--prepare", is_flag=True, help="only open NEWROOT; complete after switch_root")
@click.argument("newroot", required=False, default="")
@click.pass_context
def pivot(ctx: click.Context, prepare: bool, newroot: str) -> None:
    """Move the daemon into NEWROOT (after switch_root, or /run/initramfs at shutdown).

    Without NEWROOT, completes the pivot prepared with --prepare.
    """
    if prepare and not newroot:
        raise click.UsageError("--prepare needs NEWROOT")
    _steer(ctx, "Pivot", "sb", (newroot, prepare))
    shown = newroot or "the prepared root"
    click.echo(f"pivot into {shown} {'prepared' if prepare else 'done'}")


EXIT_NOT_FOUND = 4  # wait-device: no matching device appeared in time

DEVICES_PATH = "/org/bootbus/Devices1"
DEVICES_IFACE = "org.bootbus.Devices1"
DEVICE_TIMEOUT_ERROR = "org.bootbus.Error.Timeout"


class DeviceNotFound(click.ClickException):
    """wait-device: the timeout passed without a matching device."""

    exit_code = EXIT_NOT_FOUND


def parse_device_filter(pairs: tuple[str, ...]) -> dict[str, str]:
    """KEY=VALUE arguments to a property filter (exact match of every key)."""
    wanted: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="FILTER")
        wanted[key] = value
    return wanted


@main.command()
@click.argument("filters", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@click.pass_context
def devices(ctx: click.Context, filters: tuple[str, ...], as_json: bool) -> None:
    """List devices whose udev properties match every KEY=VALUE (SUBSYSTEM too).

    \b
    bootbusctl devices SUBSYSTEM=block DEVTYPE=disk
    """
    wanted = parse_device_filter(filters)
    live = connect(_target(ctx))
    ctx.call_on_close(live.close)
    (found,) = live.call(SERVICE, DEVICES_PATH, DEVICES_IFACE, "ListDevices", "a{ss}",
                         (wanted,))
    if as_json:
        _emit_json({**live.source(), "devices": [
            {"subsystem": sub, "sysname": name, "devpath": path, "properties": props}
            for sub, name, path, props in found]})
        return
    _mode_line(live)
    _table(["SUBSYSTEM", "SYSNAME", "DEVPATH"],
           ([sub, name, path] for sub, name, path, _props in found))


@main.command("wait-device")
@click.argument("filters", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.option("--timeout", "wait_timeout", default=30.0, show_default=True,
              type=click.FloatRange(0.0), help="seconds to wait for the device")
@click.option("--json", "as_json", is_flag=True, help="print the device as JSON")
@click.pass_context
def wait_device(ctx: click.Context, filters: tuple[str, ...], wait_timeout: float,
                as_json: bool) -> None:
    """Wait until a device matching every KEY=VALUE exists, then print its devpath.

    Exits 0 at once if one exists already, 4 if none appeared within --timeout.

    \b
    bootbusctl wait-device --timeout 90 SUBSYSTEM=block ID_FS_UUID=...
    """
    wanted = parse_device_filter(filters)
    live = connect(_target(ctx))
    ctx.call_on_close(live.close)
    found = _wait_for_device(live, wanted, wait_timeout)
    if found is None:
        raise DeviceNotFound(f"no device matching {' '.join(filters)} appeared within "
                             f"{wait_timeout:g} s")
    subsystem, sysname, devpath, props = found
    if as_json:
        _emit_json({**live.source(), "subsystem": subsystem, "sysname": sysname,
                    "devpath": devpath, "properties": props})
        return
    click.echo(devpath)


def _wait_for_device(live: Live, wanted: dict[str, str], wait_timeout: float
                     ) -> tuple[str, str, str, dict[str, str]] | None:
    """WaitForDevice: the device the bus answered with, or None at the timeout."""
    timeout_ms = min(int(wait_timeout * 1000), 0xFFFFFFFF)
    try:
        serial = live.client.call_async(SERVICE, DEVICES_PATH, DEVICES_IFACE, "WaitForDevice",
                                        "a{ss}u", (wanted, timeout_ms))
        # the bus answers at its deadline; give it the usual call timeout on top
        answer = live.client.wait_reply(serial, wait_timeout + live.timeout)
    except (TimeoutError, ConnectionError, OSError) as exc:
        raise BusFailure(f"WaitForDevice: {exc}") from None
    if answer.type == m.ERROR:
        text = answer.args()[0] if answer.signature.startswith("s") else ""
        if answer.error_name == DEVICE_TIMEOUT_ERROR:
            return None
        raise BusFailure(f"WaitForDevice failed: {answer.error_name}: {text}")
    subsystem, sysname, devpath, props = answer.args()
    return subsystem, sysname, devpath, props


EXIT_NOT_BLOCK = 5  # wait-root: root= names no local block device (nfs:, zfs:, ...)
LOG_PATH = "/org/bootbus/Log1"
LOG_IFACE = "org.bootbus.Log1"


class NotABlockRoot(click.ClickException):
    """wait-root: nothing to wait for through the bus."""

    exit_code = EXIT_NOT_BLOCK


@main.command("wait-root")
@click.argument("root")
@click.option("--timeout", "wait_timeout", default=30.0, show_default=True,
              type=click.FloatRange(0.0), help="seconds to wait for the device")
@click.pass_context
def wait_root(ctx: click.Context, root: str, wait_timeout: float) -> None:
    """Wait through the bus for the block device root=ROOT names; log the answer.

    ROOT is what dracut's getarg root= gives: /dev/vda, block:/dev/vda,
    LABEL=, UUID=, PARTLABEL=, PARTUUID= or a udev symlink path. Prints the
    devpath and logs it in the step log; exits 4 (and logs a warning) if none
    appeared within --timeout, 5 if ROOT is no local block device.

    \b
    bootbusctl wait-root --timeout 20 "$(getarg root=)"
    """
    wanted = root_filter(root)
    if wanted is None:
        raise NotABlockRoot(f"root={root} names no block device the bus can wait for")
    shown = " ".join(f"{key}={value}" for key, value in wanted.items())
    live = connect(_target(ctx))
    ctx.call_on_close(live.close)
    found = _wait_for_device(live, wanted, wait_timeout)
    fields = {"BOOTBUS_ROOT": root, "BOOTBUS_ROOT_FILTER": shown}
    if found is None:
        _log_through_bus(live, LOG_WARNING, f"root device root={root} ({shown}) not found "
                         f"through the bus within {wait_timeout:g} s", fields)
        raise DeviceNotFound(f"no device matching {shown} appeared within {wait_timeout:g} s")
    _subsystem, _sysname, devpath, props = found
    _log_through_bus(live, LOG_INFO, f"root device root={root} found through the bus: "
                     f"{props.get('DEVNAME', '?')} ({devpath})",
                     {**fields, "DEVPATH": devpath, "DEVNAME": props.get("DEVNAME", "")})
    click.echo(devpath)


def _log_through_bus(live: Live, priority: int, text: str, fields: dict[str, str]) -> None:
    """org.bootbus.Log1.Log; a refusal is shown, not fatal (the answer stands)."""
    try:
        live.call(SERVICE, LOG_PATH, LOG_IFACE, "Log", "ysa{ss}", (priority, text, fields))
    except BusFailure as exc:
        click.echo(f"bootbusctl: could not log through the bus: {exc}", err=True)


if __name__ == "__main__":
    sys.exit(main())
