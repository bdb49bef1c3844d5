"""A D-Bus client (jeepney) that the VM tests run inside the guest.

serve:  connects in the initramfs, owns org.bootbus.VmTest.Initrd and
        answers Ping until the bus goes away; started with '@' in argv[0]
        so it lives, like the bus, until poweroff.
ping:   calls that Ping (the server does its own bus round trip to answer),
        from the real root and from dracut's last shutdown hook.
daemon: where the bus daemon runs from (exe, root, deleted mappings).
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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["serve", "ping", "daemon", "journal"])
    parser.add_argument("--address")
    parser.add_argument("--tag", default="root")
    parser.add_argument("--ready-file")
    args = parser.parse_args()
    if args.command == "serve":
        return serve(bus_address(args.address), args.ready_file)
    if args.command == "ping":
        return ping(bus_address(args.address), args.tag)
    if args.command == "journal":
        return journal(args.tag)
    return daemon(args.tag)


if __name__ == "__main__":
    sys.exit(main())
