"""The inspection commands: status, names, connections, matches, dump-state.

Owns: these commands' flags, help texts and output (tables or JSON with the
source's "mode" keys), the text layout of `status`, and the refusal of a
live `matches` on a daemon without Supervisor1.ListMatches.

Never: changes bus state or writes files; every command here works live or
offline alike, taking its rows from rows.py and status.py.
"""

from __future__ import annotations

from typing import Any

import click

from .exits import BusFailure
from .options import json_option, with_source
from .render import cell_text, emit_json, format_duration, format_time, print_table
from .rows import (
    NameRow,
    live_connections,
    live_matches,
    live_names,
    offline_connections,
    offline_matches,
    offline_names,
)
from .sources import IFACE, Live, Offline, Source
from .status import boot_stop_reasons, live_status, offline_status


@click.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Phase, pid, uptime, generation, counts, queue depths and last errors."""
    source = with_source(ctx, as_json)
    info = live_status(source) if isinstance(source, Live) else offline_status(source)
    info["boot_stopped"] = boot_stop_reasons()
    if as_json:
        emit_json({**source.source(), **info})
    else:
        _print_status(info, source)


def _print_status(status: dict[str, Any], source: Source) -> None:
    uptime = status["uptime_seconds"]
    uptime_text = "-" if uptime is None else format_duration(uptime)
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
        ("Names", (f"{status['names']} well-known, "
                   f"{status['name_queue_waiting']} waiting in name queues")),
        ("Queued bytes", "-" if status["queued_bytes"] is None
         else f"{status['queued_bytes']} waiting to be sent to peers"),
        ("Pending replies", status["pending_replies"]),
    ]
    for label, value in lines:
        click.echo(f"{label + ':':<17}{cell_text(value)}")
    for reason in status.get("boot_stopped", []):
        click.echo(f"{'Boot stopped:':<17}{reason}")
    errors = status["last_errors"]
    none = "none" if status["step_log"] else "unknown (no step log found: use --runtime-dir)"
    click.echo(f"{'Last errors:':<17}{'' if errors else none}")
    for e in errors:
        click.echo(f"  {format_time(e['realtime_usec'])} [{e['phase']}] {e['priority']}: "
                   f"{e['message']}")


@click.command()
@click.option("--unique", is_flag=True, help="also list unique names (:1.N)")
@json_option
@click.pass_context
def names(ctx: click.Context, unique: bool, as_json: bool) -> None:
    """Each name with its owner, the owner's pid and comm, and its queue."""
    source = with_source(ctx, as_json)
    rows = (live_names(source, unique) if isinstance(source, Live)
            else offline_names(source.summary, unique))
    if as_json:
        emit_json({**source.source(), "names": rows})
        return
    print_table(["NAME", "OWNER", "PID", "COMM", "QUEUE"],
           ([r.name, r.owner, r.pid, r.comm, _queue_cell(r)] for r in rows))


def _queue_cell(row: NameRow) -> str:
    if not row.queue_depth:
        return "-"
    shown = ",".join(row.queued)
    return f"{row.queue_depth} ({shown})" if shown else str(row.queue_depth)


@click.command()
@json_option
@click.pass_context
def connections(ctx: click.Context, as_json: bool) -> None:
    """Each connection: unique name, pid, comm, uid, names, match count, queued bytes."""
    source = with_source(ctx, as_json)
    rows = (live_connections(source) if isinstance(source, Live)
            else offline_connections(source.summary))
    if as_json:
        emit_json({**source.source(), "connections": rows})
        return
    print_table(["UNIQUE", "PID", "COMM", "UID", "NAMES", "MATCHES", "QUEUED"],
           ([r.unique_name, r.pid, r.comm, r.uid, r.names, r.match_count, r.queued_bytes]
            for r in rows))


@click.command()
@json_option
@click.pass_context
def matches(ctx: click.Context, as_json: bool) -> None:
    """Each connection's match rules (offline: as recorded in the summary)."""
    source = with_source(ctx, as_json)
    if isinstance(source, Live):
        rows = live_matches(source)
        if rows is None:
            raise BusFailure(f"this bootbus has no {IFACE}.ListMatches; its match rules can "
                             "only be read live once it has (--runtime-dir shows the counts)")
    else:
        rows = offline_matches(source)
    if as_json:
        emit_json({**source.source(), "matches": rows})
        return
    for row in rows:
        if row.rules is None:
            click.echo(f"{row.unique_name}: {cell_text(row.match_count)} rules "
                       "(the summary records the count only)")
            continue
        click.echo(f"{row.unique_name}: {len(row.rules)} rules")
        for rule in row.rules:
            click.echo(f"  {rule}")


@click.command("dump-state")
@click.pass_context
def dump_state(ctx: click.Context) -> None:
    """Everything as one JSON object (live: status, names, connections, matches)."""
    source = with_source(ctx, True)
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
    emit_json({**source.source(), **state})
