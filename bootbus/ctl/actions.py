"""The commands that act on the bus: call, emit, reexec, pivot.

Owns: these commands' flags, help texts and output: `call` prints each
reply value as its type and JSON, `emit` returns once the bus has routed
the signal (a GetId round trip behind it), `reexec` and `pivot` wait up to
REEXEC_TIMEOUT for the daemon's Supervisor1 to finish.

Never: falls back to the offline files (acting needs the live bus), or
retries a call: a failure is reported once, with exit code 1.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click

from ..client import BUS, BUS_PATH, CallError
from ..wire import message as m
from ..wire import names as wire_names
from ..wire.signature import split_signature
from .args import ARGS_HELP, check_path, parse_args, split_member
from .exits import BusFailure
from .options import json_option, target_of
from .render import emit_json, mode_line, plain
from .sources import IFACE, PATH, SERVICE, connect, reply_value


@click.command(epilog=ARGS_HELP, context_settings={"ignore_unknown_options": True})
@click.argument("destination")
@click.argument("path")
@click.argument("method", metavar="IFACE.METHOD")
@click.argument("signature", required=False, default="")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@json_option
@click.pass_context
def call(ctx: click.Context, destination: str, path: str, method: str, signature: str,
         args: tuple[str, ...], as_json: bool) -> None:
    """Call a method and print its reply (one line per value: type, then JSON).

    \b
    bootbusctl call org.freedesktop.DBus /org/freedesktop/DBus \\
        org.freedesktop.DBus.GetNameOwner s org.bootbus
    """
    interface, member = split_member(method)
    values = parse_args(signature, list(args))
    if not wire_names.is_bus_name(destination):
        raise click.BadParameter(f"{destination!r} is not a bus name")
    live = connect(target_of(ctx))
    ctx.call_on_close(live.close)
    try:
        serial = live.client.call_async(destination, check_path(path), interface, member,
                                        signature, values)
        answer = live.client.wait_reply(serial, live.timeout)
    except (TimeoutError, ConnectionError, OSError) as exc:
        raise BusFailure(f"{member}: {exc}") from None
    reply = reply_value(answer)
    if isinstance(reply, CallError):
        raise BusFailure(str(reply))
    sig = answer.signature
    if as_json:
        emit_json({**live.source(), "signature": sig, "args": reply})
        return
    mode_line(live)
    for t, value in zip(split_signature(sig), reply):
        click.echo(f"{t} {json.dumps(plain(value), ensure_ascii=False)}")


@click.command(epilog=ARGS_HELP, context_settings={"ignore_unknown_options": True})
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
    interface, member = split_member(signal)
    if interface is None:
        raise click.BadParameter("a signal needs an interface: IFACE.SIGNAL")
    values = parse_args(signature, list(args))
    if destination is not None and not wire_names.is_bus_name(destination):
        raise click.BadParameter(f"{destination!r} is not a bus name")
    live = connect(target_of(ctx))
    ctx.call_on_close(live.close)
    raw = m.build(m.SIGNAL, live.client.next_serial(), path=check_path(path),
                  interface=interface, member=member, destination=destination,
                  signature=signature, args=values)
    try:
        live.client.send(raw)
    except OSError as exc:
        raise BusFailure(f"{member}: {exc}") from None
    # The bus handles a connection's messages in order: once GetId is answered,
    # the signal has been routed.
    live.call(BUS, BUS_PATH, BUS, "GetId")
    mode_line(live)


REEXEC_TIMEOUT = 120.0  # preflight + exec + restore; the bus keeps serving meanwhile


def _steer(ctx: click.Context, member: str, signature: str = "",
           args: tuple[Any, ...] = ()) -> None:
    target = target_of(ctx)
    live = connect(dataclasses.replace(target, timeout=max(target.timeout, REEXEC_TIMEOUT)))
    ctx.call_on_close(live.close)
    live.call(SERVICE, PATH, IFACE, member, signature, args)


@click.command()
@click.pass_context
def reexec(ctx: click.Context) -> None:
    """Re-execute the daemon (new code), keeping every connection."""
    _steer(ctx, "Reexec")
    click.echo("re-executed; the new image is serving")


@click.command()
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
