"""The daemon's status as one dict, live or offline, and why the boot stopped.

Owns: the keys `status` and `dump-state` show (phase, pid, uptime,
generation, counts, queue depths, the step log's directory, the last
errors, merged from the summary and the step log offline), and reading
this machine's reasons for sitting in a rescue shell (rd.break and friends
on the kernel command line, dracut's die() message, failed systemd units).

Never: prints anything, changes bus or machine state (systemctl is only
asked `--failed`, bounded by FAILED_UNITS_TIMEOUT), or fails because one
of those reasons cannot be read: a missing file is no reason.
"""

from __future__ import annotations

import collections
import os
import subprocess
import time
from typing import Any

from ..io.steplog import LOG_DEBUG, LOG_ERR, PRIORITY_NAMES, RecordFilter, read_records
from .render import iso_time
from .rows import is_unique, live_owners
from .sources import IFACE, PATH, SERVICE, Live, Offline, has_step_log

LAST_ERRORS_SHOWN = 5


def _record_errors(files_dir: str) -> list[dict[str, Any]]:
    records = read_records(files_dir, RecordFilter(max_priority=LOG_ERR))
    return [_error_dict(r.seq, r.realtime_usec, r.phase, r.priority, r.message)
            for r in collections.deque(records, maxlen=LAST_ERRORS_SHOWN)]


def _error_dict(seq: int, usec: int, phase: str, priority: int, message: str) -> dict[str, Any]:
    return {"seq": seq, "realtime_usec": usec, "time": iso_time(usec), "phase": phase,
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
    waiting = sum(len(q) - 1 for n, q in owners.items() if not is_unique(n))
    listed = live.optional("ListConnections")
    queued_bytes = sum(row[5] for row in listed[0]) if listed is not None else None
    started = float(status.get("StartedAt", 0.0))
    # The step log is local files: the daemon's own word on where they are beats a guess.
    target_dir = live.files_dir if live.runtime_dir_explicit else str(
        status.get("RuntimeDir") or live.files_dir)
    step_log = target_dir if has_step_log(target_dir) else None
    return {
        "state": "running",
        "phase": status.get("Phase"),
        "pid": status.get("PID"),
        "started_at": iso_time(int(started * 1e6)),
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
        "started_at": iso_time(s.started_realtime_usec),
        "uptime_seconds": uptime,
        "generation": s.generation,
        "pivots": s.pivots,
        "connections": s.connection_count,
        "names": s.name_count,
        "name_queue_waiting": sum(n.queue_depth for n in s.names),
        "queued_bytes": sum(c.queued_bytes for c in s.connections),
        "pending_replies": None,
        "addresses": s.addresses,
        "step_log": offline.files_dir if has_step_log(offline.files_dir) else None,
        "last_errors": _merge_errors(from_summary, _record_errors(offline.files_dir)),
    }


DRACUT_DIE_FILE = "/run/initramfs/.die"  # dracut's die() leaves its message here
FAILED_UNITS_TIMEOUT = 3.0  # seconds for `systemctl --failed` in an emergency shell


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
                ("systemd.unit=emergency", "systemd.unit=rescue")):
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
                                 timeout=FAILED_UNITS_TIMEOUT, check=False).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        failed = [line.split()[0] for line in out.splitlines() if line.strip()]
        if failed:
            reasons.append("failed units: " + ", ".join(failed))
    return reasons
