"""The device commands: devices, wait-device, wait-root (org.bootbus.Devices1).

Owns: KEY=VALUE property filters, listing devices, waiting for one through
the bus's WaitForDevice (the bus answers at its deadline; exit 4 when none
appeared), and wait-root: the filter for dracut's root= (bootbus.rootdev),
the answer logged in the step log through org.bootbus.Log1 (exit 5 when
root= names no local block device).

Never: watches udev itself (the daemon does), falls back to the offline
files, or fails a found root because the log call was refused.
"""

from __future__ import annotations

import click

from ..io.steplog import LOG_INFO, LOG_WARNING
from ..rootdev import root_filter
from ..wire import message as m
from .exits import BusFailure, DeviceNotFound, NotABlockRoot
from .options import target_of
from .render import emit_json, mode_line, print_table
from .sources import SERVICE, Live, connect

DEVICES_PATH = "/org/bootbus/Devices1"
DEVICES_IFACE = "org.bootbus.Devices1"
DEVICE_TIMEOUT_ERROR = "org.bootbus.Error.Timeout"
LOG_PATH = "/org/bootbus/Log1"
LOG_IFACE = "org.bootbus.Log1"


def parse_device_filter(pairs: tuple[str, ...]) -> dict[str, str]:
    """KEY=VALUE arguments to a property filter (exact match of every key)."""
    wanted: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="FILTER")
        wanted[key] = value
    return wanted


@click.command()
@click.argument("filters", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@click.pass_context
def devices(ctx: click.Context, filters: tuple[str, ...], as_json: bool) -> None:
    """List devices whose udev properties match every KEY=VALUE (SUBSYSTEM too).

    \b
    bootbusctl devices SUBSYSTEM=block DEVTYPE=disk
    """
    wanted = parse_device_filter(filters)
    live = connect(target_of(ctx))
    ctx.call_on_close(live.close)
    (found,) = live.call(SERVICE, DEVICES_PATH, DEVICES_IFACE, "ListDevices", "a{ss}",
                         (wanted,))
    if as_json:
        emit_json({**live.source(), "devices": [
            {"subsystem": sub, "sysname": name, "devpath": path, "properties": props}
            for sub, name, path, props in found]})
        return
    mode_line(live)
    print_table(["SUBSYSTEM", "SYSNAME", "DEVPATH"],
           ([sub, name, path] for sub, name, path, _props in found))


@click.command("wait-device")
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
    live = connect(target_of(ctx))
    ctx.call_on_close(live.close)
    found = _wait_for_device(live, wanted, wait_timeout)
    if found is None:
        raise DeviceNotFound(f"no device matching {' '.join(filters)} appeared within "
                             f"{wait_timeout:g} s")
    subsystem, sysname, devpath, props = found
    if as_json:
        emit_json({**live.source(), "subsystem": subsystem, "sysname": sysname,
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


@click.command("wait-root")
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
    live = connect(target_of(ctx))
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
