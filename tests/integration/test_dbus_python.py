"""dbus-python (libdbus) clients and services against the bus."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import dbus
import pytest
from jeepney import HeaderFields

from .buses import Bus
from .peers import Peer, member
from .tools import Background, python_script

SERVICE = "com.example.LibService"
IFACE = "com.example.Lib"
PATH = "/com/example/Lib"


@pytest.fixture
def lib_service(bus: Bus) -> Iterator[str]:
    """A dbus-python service on the bus; yields its unique name."""
    with Background(python_script("dbus_python_service.py", bus.address, SERVICE),
                    stop_signal=15) as proc:
        ready = proc.wait_for_line(lambda ln: ln.startswith("READY "))
        yield ready.split()[1]
        code = proc.stop()
    assert code == 0, f"dbus-python service failed:\n{proc.stderr}"


@pytest.fixture
def client(bus: Bus) -> Iterator[dbus.bus.BusConnection]:
    conn = dbus.bus.BusConnection(bus.address)
    yield conn
    conn.close()


def test_hello_and_driver(client: dbus.bus.BusConnection, bus: Bus) -> None:
    unique = client.get_unique_name()
    assert unique.startswith(":")
    assert client.name_has_owner("org.freedesktop.DBus")
    assert client.get_name_owner("org.freedesktop.DBus") == "org.freedesktop.DBus"
    assert unique in client.list_names()
    assert client.get_unix_user(unique) == os.getuid()


def test_call_service_methods(client: dbus.bus.BusConnection, lib_service: str) -> None:
    obj = client.get_object(SERVICE, PATH)
    assert obj.Echo("libdbus says hi", dbus_interface=IFACE) == "libdbus says hi"
    assert obj.Add(40, 2, dbus_interface=IFACE) == 42
    assert client.get_name_owner(SERVICE) == lib_service
    with pytest.raises(dbus.exceptions.DBusException) as failed:
        obj.Fail(dbus_interface=IFACE)
    assert failed.value.get_dbus_name() == "com.example.Lib.Error"
    assert "it failed on purpose" in failed.value.get_dbus_message()


def test_introspect_service(client: dbus.bus.BusConnection, lib_service: str) -> None:
    xml = client.get_object(SERVICE, PATH).Introspect(
        dbus_interface="org.freedesktop.DBus.Introspectable")
    assert '<interface name="com.example.Lib">' in xml
    assert '<method name="WriteAndPipe">' in xml


def test_service_signal_reaches_jeepney(client: dbus.bus.BusConnection, lib_service: str,
                                        connect: Callable[..., Peer]) -> None:
    listener = connect()
    listener.add_match(f"type='signal',sender='{SERVICE}',interface='{IFACE}'")
    client.get_object(SERVICE, PATH).Emit("broadcast", dbus_interface=IFACE)
    msg = listener.wait_for(lambda m: member(m) == "Pinged")
    assert msg.body == ("broadcast",)
    assert msg.header.fields[HeaderFields.sender] == lib_service  # stamped by the bus


def test_jeepney_calls_libdbus_service(lib_service: str, connect: Callable[..., Peer]) -> None:
    reply = connect().call(SERVICE, PATH, IFACE, "Add", "ii", (-3, 10))
    assert reply.body == (7,)


def test_unix_fd_to_and_from_libdbus(client: dbus.bus.BusConnection, lib_service: str) -> None:
    r, w = os.pipe()
    try:
        got = client.get_object(SERVICE, PATH).WriteAndPipe(
            dbus.types.UnixFd(w), "through the bus", dbus_interface=IFACE)
        os.close(w)
        w = -1
        assert os.read(r, 100) == b"through the bus"
        assert os.read(r, 100) == b""  # the service closed its copy: EOF
        reply_fd = got.take()
        try:
            assert os.read(reply_fd, 100) == b"reply:through the bus"
        finally:
            os.close(reply_fd)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
