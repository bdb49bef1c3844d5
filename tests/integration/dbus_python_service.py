"""A libdbus service (dbus-python + GLib main loop), run as a subprocess by tests.

Usage: dbus_python_service.py ADDRESS BUS_NAME

It owns one object, /com/example/Lib, with interface com.example.Lib, and
prints "READY <unique name>" on stdout once it owns BUS_NAME. It stops on
SIGTERM or SIGINT. It must never touch any bus but the one at ADDRESS.
"""

from __future__ import annotations

import os
import signal
import sys

import dbus
import dbus.service
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

IFACE = "com.example.Lib"
PATH = "/com/example/Lib"


# dbus-python has no type hints: its decorators leave these methods untyped.
# mypy: disable-error-code="misc"


class LibObject(dbus.service.Object):  # type: ignore[misc]
    @dbus.service.method(IFACE, in_signature="s", out_signature="s")
    def Echo(self, text: str) -> str:
        return text

    @dbus.service.method(IFACE, in_signature="ii", out_signature="i")
    def Add(self, a: int, b: int) -> int:
        return a + b

    @dbus.service.method(IFACE, in_signature="", out_signature="")
    def Fail(self) -> None:
        raise dbus.exceptions.DBusException("it failed on purpose", name="com.example.Lib.Error")

    @dbus.service.method(IFACE, in_signature="s", out_signature="")
    def Emit(self, text: str) -> None:
        self.Pinged(text)

    @dbus.service.signal(IFACE, signature="s")
    def Pinged(self, text: str) -> None:
        pass

    @dbus.service.method(IFACE, in_signature="hs", out_signature="h")
    def WriteAndPipe(self, fd: dbus.types.UnixFd, text: str) -> dbus.types.UnixFd:
        """Write text to the received fd; return the read end of a new pipe holding it too."""
        raw = fd.take()
        os.write(raw, text.encode())
        os.close(raw)
        r, w = os.pipe()
        os.write(w, ("reply:" + text).encode())
        os.close(w)
        out = dbus.types.UnixFd(r)
        os.close(r)  # UnixFd holds its own duplicate
        return out


def main() -> None:
    address, bus_name = sys.argv[1], sys.argv[2]
    DBusGMainLoop(set_as_default=True)
    conn = dbus.bus.BusConnection(address)
    name = dbus.service.BusName(bus_name, conn, do_not_queue=True)
    LibObject(conn, PATH)
    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, loop.quit)
    print("READY", conn.get_unique_name(), flush=True)
    loop.run()
    del name
    conn.close()


if __name__ == "__main__":
    main()
