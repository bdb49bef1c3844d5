"""A D-Bus client (jeepney) that the VM tests run inside the guest.

serve:  connects in the initramfs, owns org.bootbus.VmTest.Initrd and
        answers Ping until the bus goes away; started with '@' in argv[0]
        so it lives, like the bus, until poweroff.
ping:   calls that Ping (the server does its own bus round trip to answer),
        from the real root and from dracut's last shutdown hook.
daemon: where the bus daemon runs from (exe, root, deleted mappings).
journal: the initramfs's bootbus records in the real root's journal.
rootwait: the step log's records of the initramfs's wait for the root device
        through the bus (the daemon's WaitForDevice answer, bootbusctl
        wait-root's record), with their times against the pivot's.
Every result is one line `BOOTBUS-VM: EVENT key=value ...` on the console,
which the host reads from the serial port. Everything is imported before
the first connection: the initramfs files vanish at switch_root.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys

from jeepney import HeaderFields, MessageType, new_error, new_method_call, new_method_return
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection
from jeepney.wrappers import DBusAddress, DBusErrorResponse

SERVICE = "org.bootbus.VmTest.Initrd"
TARGET = DBusAddress("/org/bootbus/VmTest", bus_name=SERVICE, interface="org.bootbus.VmTest")
SOCKETS = ("/run/bootbus/bus", "/oldsys/run/bootbus/bus")
CALL_TIMEOUT = 10.0
_console = open("/dev/console", "w", buffering=1)  # noqa: SIM115 - kept for the process's life


def marker(event: str, **values: object) -> None:
    fields = " ".join(f"{key}={value}" for key, value in values.items())
    _console.write(f"\nBOOTBUS-VM: {event} {fields}\n")


def bus_address(explicit: str | None) -> str:
    if explicit:
        return explicit
    for path in SOCKETS:
        if os.path.exists(path):
            return f"unix:path={path}"
    return f"unix:path={SOCKETS[0]}"


def notify_ready() -> None:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect("\0" + path[1:] if path.startswith("@") else path)
        sock.send(b"READY=1")


def serve(address: str, ready_file: str | None) -> int:
    conn = open_dbus_connection(address, auth_timeout=CALL_TIMEOUT)
    reply = conn.send_and_get_reply(message_bus.RequestName(SERVICE, 0x4), timeout=CALL_TIMEOUT)
    marker("initrd-client", unique=conn.unique_name, request_name=reply.body[0], pid=os.getpid())
    notify_ready()
    if ready_file:
        with open(ready_file, "w") as stream:
            stream.write(conn.unique_name)
    count = 0
    while True:
        try:
            msg = conn.receive()
        except (ConnectionError, OSError) as error:
            marker("initrd-client-lost", unique=conn.unique_name, error=type(error).__name__)
            return 1
        fields = msg.header.fields
        if msg.header.message_type != MessageType.method_call:
            continue
        if fields.get(HeaderFields.member) != "Ping":
            conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod"))
            continue
        count += 1
        owner = conn.send_and_get_reply(message_bus.GetNameOwner(SERVICE), timeout=CALL_TIMEOUT)
        conn.send(new_method_return(msg, "ssu", (conn.unique_name, owner.body[0], count)))


def ping(address: str, tag: str) -> int:
    try:
        conn = open_dbus_connection(address, auth_timeout=CALL_TIMEOUT)
        reply = conn.send_and_get_reply(new_method_call(TARGET, "Ping"), timeout=CALL_TIMEOUT)
        if reply.header.message_type == MessageType.error:
            raise DBusErrorResponse(reply)
        server, owner, count = reply.body
        bus_id = conn.send_and_get_reply(message_bus.GetId(), timeout=CALL_TIMEOUT).body[0]
        marker(f"{tag}-ping", ok=1, server=server, owner=owner, count=count,
               client=conn.unique_name, bus_id=bus_id)
        return 0
    except Exception as error:  # the marker is the report: any failure is one
        marker(f"{tag}-ping", ok=0, error=repr(str(error)).replace(" ", "_"))
        return 1


def daemon(tag: str) -> int:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as stream:
                argv = stream.read().split(b"\0")
        except OSError:
            continue
        # Started as `python3 -m bootbus`; after a re-exec argv[0] is '@bootbus' (-c ...).
        if argv[1:3] == [b"-m", b"bootbus"] or argv[0].startswith(b"@bootbus"):
            with open(f"/proc/{entry}/maps") as stream:
                deleted = sum(1 for line in stream if line.rstrip().endswith("(deleted)"))
            marker(f"{tag}-daemon", pid=entry, argv0=argv[0].decode(),
                   exe=os.readlink(f"/proc/{entry}/exe").replace(" ", "_"),
                   root=os.readlink(f"/proc/{entry}/root"), deleted_maps=deleted)
            return 0
    marker(f"{tag}-daemon", pid="none")
    return 1


def journal(tag: str) -> int:
    """The initramfs's bootbus records, as journalctl shows them in the real root."""
    try:
        with open("/run/bootbus-vmtest-pivot-uptime") as stream:
            pivot_usec = int(float(stream.read().split()[0]) * 1_000_000)
        output = subprocess.run(
            ["journalctl", "-b", "-o", "json", "--no-pager", "BOOTBUS_PHASE=initramfs"],
            capture_output=True, text=True, check=True, timeout=CALL_TIMEOUT * 3).stdout
    except (OSError, ValueError, subprocess.SubprocessError) as error:
        marker(f"{tag}-journal", ok=0, error=repr(str(error)).replace(" ", "_"))
        return 1
    # BOOTBUS_PHASE=initramfs lasts until the pivot completes, after switch_root:
    # the records logged before the pivot hook are the initramfs's own.
    records = [json.loads(line) for line in output.splitlines() if line.strip()]
    early = [r for r in records if int(r.get("BOOTBUS_MONOTONIC_USEC", "0") or 0) < pivot_usec]
    listening = [r for r in early if "listening" in str(r.get("MESSAGE", ""))]
    first = listening[0] if listening else {}
    marker(f"{tag}-journal", ok=1, records=len(records), early=len(early),
           listening_usec=first.get("BOOTBUS_MONOTONIC_USEC", "none"),
           listening_journal_usec=first.get("__MONOTONIC_TIMESTAMP", "none"),
           pivot_usec=pivot_usec)
    return 0


def pivot_usec() -> int:
    """When the pre-pivot hook ran (/run survives switch_root)."""
    with open("/run/bootbus-vmtest-pivot-uptime") as stream:
        return int(float(stream.read().split()[0]) * 1_000_000)


def rootwait(tag: str, devname: str) -> int:
    """The step log's answers to the initramfs's root wait, counted before the pivot."""
    try:
        pivot = pivot_usec()
        output = subprocess.run(["bootbusctl", "log", "--json"], capture_output=True, text=True,
                                check=True, timeout=CALL_TIMEOUT * 3).stdout
    except (OSError, ValueError, subprocess.SubprocessError) as error:
        marker(f"{tag}-rootwait", ok=0, error=repr(str(error)).replace(" ", "_"))
        return 1
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    early = [r for r in records if r["monotonic_usec"] < pivot]
    # the daemon's own record: a WaitForDevice for the root's DEVNAME it answered
    answers = [r for r in early if r["message"].startswith("device wait answered")
               and f"DEVNAME={devname}" in r["fields"].get("DEVICE_FILTER", "").split()
               and r["fields"].get("DEVNAME") == devname]
    # bootbusctl wait-root's record (through org.bootbus.Log1) that it was the root
    found = [r for r in early if "BOOTBUS_ROOT" in r["fields"]
             and "found through the bus" in r["message"]
             and r["fields"].get("DEVNAME") == devname]
    first = answers[0] if answers else {"fields": {}}
    marker(f"{tag}-rootwait", ok=1, answers=len(answers), found=len(found),
           phase=first.get("phase", "none"), usec=first.get("monotonic_usec", "none"),
           answered_from=first["fields"].get("ANSWERED_FROM", "none"),
           monitor=first["fields"].get("MONITOR_SOURCE", "none"),
           caller_pid=first["fields"].get("CALLER_PID", "none"),
           root=found[0]["fields"]["BOOTBUS_ROOT"] if found else "none",
           later=len(records) - len(early), pivot_usec=pivot)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["serve", "ping", "daemon", "journal", "rootwait"])
    parser.add_argument("--address")
    parser.add_argument("--tag", default="root")
    parser.add_argument("--ready-file")
    parser.add_argument("--devname", default="/dev/vda", help="rootwait: the root's DEVNAME")
    args = parser.parse_args()
    if args.command == "serve":
        return serve(bus_address(args.address), args.ready_file)
    if args.command == "ping":
        return ping(bus_address(args.address), args.tag)
    if args.command == "journal":
        return journal(args.tag)
    if args.command == "rootwait":
        return rootwait(args.tag, args.devname)
    return daemon(args.tag)


if __name__ == "__main__":
    sys.exit(main())
