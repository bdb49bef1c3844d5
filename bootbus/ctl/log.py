"""The `log` command: the step log, read from the runtime directory's files.

Owns: the --priority and --since syntaxes (names or 0..7; -N[smhd] or ISO
8601), the one-line text form of a step-log record, and --follow, which
polls the files every FOLLOW_POLL_SECONDS and says when records rotated
away unread.

Never: asks the bus (the step log works with the daemon dead), writes to
the runtime directory, or parses the step log itself (bootbus.io.steplog
does).
"""

from __future__ import annotations

import collections
import datetime
import json
import re
import sys
import time
from collections.abc import Callable, Iterable

import click

from ..io.steplog import (
    LOG_DEBUG,
    PRIORITY_NAMES,
    STEPLOG_FILENAME,
    LogTail,
    Record,
    RecordFilter,
    read_records,
)
from ..io.summary import SummaryError, read_summary
from .exits import OfflineUnavailable
from .options import target_of
from .render import emit_json, format_time, mode_line
from .sources import has_step_log, not_running

_PRIORITY_ALIASES = {"warn": 4, "error": 3, "panic": 0}
_SINCE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SINCE_RELATIVE = re.compile(r"-(\d+(?:\.\d+)?)([smhd]?)")
FOLLOW_POLL_SECONDS = 0.25  # how often `log --follow` looks for new records


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
    line = (f"{format_time(record.realtime_usec)} {record.phase or '-'} "
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
    return (f"files in {files_dir}; OFFLINE: {not_running(view)}; state as of "
            f"{format_time(view.summary.written_realtime_usec)}")


@click.command()
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
    files_dir = target_of(ctx).files_dir
    if not has_step_log(files_dir):
        raise OfflineUnavailable(f"no step log in {files_dir} (expected {STEPLOG_FILENAME})")
    flt = RecordFilter(max_priority=max_priority, phases=frozenset(phases) if phases else None,
                       since_realtime_usec=since_usec)
    mode_line(_log_mode_line(files_dir))
    show: Callable[[Record], None] = (
        (lambda r: emit_json(r.to_json_dict())) if as_json
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
