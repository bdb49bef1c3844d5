"""The bus's names, connections and match rules as rows, live or from the summary.

Owns: NameRow, ConnectionRow and MatchRow, and filling them the same way
from either source: live by asking the bus driver (ListNames,
ListQueuedOwners, GetConnectionCredentials, pipelined) or the Supervisor1
list methods when the daemon has them; offline from summary.json, where a
connection's names are shown as live mode shows them (owned, not queued
for). A process's comm is read from /proc.

Never: prints anything, changes bus state, or raises on a name or
connection that vanished between two calls (it is left out, as live mode
shows a moment, not a transaction).
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass
from typing import Any

from ..client import BUS, BUS_PATH, CallError
from ..io.summary import Summary, summary_path
from .sources import Live, Offline

NAME_HAS_NO_OWNER = "org.freedesktop.DBus.Error.NameHasNoOwner"


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


def is_unique(name: str) -> bool:
    return name.startswith(":")


def live_owners(live: Live) -> dict[str, list[str]]:
    """Every name -> [primary owner, queued...]; names the bus answers itself -> [BUS]."""
    (all_names,) = live.call(BUS, BUS_PATH, BUS, "ListNames")
    well_known = [n for n in all_names if not is_unique(n) and n != BUS]
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
        if is_unique(name):
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
    shown = sorted(n for n in owners if include_unique or not is_unique(n))
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
        if not is_unique(name) and queue[0] != BUS:
            owned[queue[0]].append(name)
    uniques = sorted((n for n in owners if is_unique(n)), key=_unique_sort_key)
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
        if is_unique(n.name) and not include_unique:
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


def _comm(pid: int | None) -> str | None:
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip() or None
    except OSError:
        return None
