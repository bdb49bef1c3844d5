"""A pure-Python client (jeepney 0.8, blocking API) against the bus."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from jeepney import (
    DBusAddress,
    HeaderFields,
    MatchRule,
    Message,
    MessageType,
    new_method_call,
    new_signal,
)
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import Proxy, open_dbus_connection

from .buses import Bus
from .peers import DRIVER, Peer, Service, echo, member, sender

UNIQUE_NAME = re.compile(r"^:1\.[0-9]+$")
IN_FLIGHT_CALLS = 100


def test_open_connection_hello_and_name_acquired(bus: Bus) -> None:
    with open_dbus_connection(bus=bus.address, auth_timeout=5) as conn:
        assert UNIQUE_NAME.match(conn.unique_name)
        with conn.filter(MatchRule(type="signal", member="NameAcquired")) as acquired:
            first = conn.recv_until_filtered(acquired, timeout=5)
        # The first thing a client hears after Hello is that it owns its unique name.
        assert first.body == (conn.unique_name,)
        assert first.header.fields[HeaderFields.destination] == conn.unique_name
        assert sender(first) == DRIVER
        driver = Proxy(message_bus, conn, timeout=5)
        assert driver.GetNameOwner(conn.unique_name) == (conn.unique_name,)
        assert driver.NameHasOwner(conn.unique_name) == (True,)
        assert conn.unique_name in driver.ListNames()[0]


def test_unique_names_are_never_reused(bus: Bus) -> None:
    seen = []
    for _ in range(3):
        with open_dbus_connection(bus=bus.address, auth_timeout=5) as conn:
            seen.append(conn.unique_name)
    assert len(set(seen)) == 3
    serials = [int(name.split(".")[1]) for name in seen]
    assert serials == sorted(serials)


def test_credentials_of_a_peer_and_of_the_bus(bus: Bus, connect: Callable[..., Peer]) -> None:
    peer = connect()
    me = peer.unique_name
    assert peer.driver_ok("GetConnectionUnixUser", "s", (me,)) == (os.getuid(),)
    assert peer.driver_ok("GetConnectionUnixProcessID", "s", (me,)) == (os.getpid(),)
    (creds,) = peer.driver_ok("GetConnectionCredentials", "s", (me,))
    assert creds["UnixUserID"] == ("u", os.getuid())
    assert creds["ProcessID"] == ("u", os.getpid())
    assert set(creds["UnixGroupIDs"][1]) == {os.getgid(), *os.getgroups()}
    assert peer.driver_ok("GetConnectionUnixProcessID", "s", (DRIVER,)) == (bus.process.pid,)
    (bus_creds,) = peer.driver_ok("GetConnectionCredentials", "s", (DRIVER,))
    assert bus_creds == {"UnixUserID": ("u", os.getuid()), "ProcessID": ("u", bus.process.pid)}


def test_peer_interface_of_the_driver(connect: Callable[..., Peer]) -> None:
    peer = connect()
    assert peer.driver_ok("Ping", interface="org.freedesktop.DBus.Peer") == ()
    (machine_id,) = peer.driver_ok("GetMachineId", interface="org.freedesktop.DBus.Peer")
    assert machine_id == Path("/etc/machine-id").read_text().strip()


def test_activation_methods_answer_as_dbus_daemon(connect: Callable[..., Peer]) -> None:
    peer = connect()
    assert peer.driver_ok("ListActivatableNames") == ([DRIVER],)
    assert peer.driver_ok("UpdateActivationEnvironment", "a{ss}", ({"A": "b"},)) == ()
    assert peer.driver_ok("ReloadConfig") == ()


def test_properties_get_all(bus: Bus, connect: Callable[..., Peer]) -> None:
    peer = connect()
    (props,) = peer.driver_ok("GetAll", "s", (DRIVER,), interface="org.freedesktop.DBus.Properties")
    assert set(props) == {"Features", "Interfaces"}
    (features,) = peer.driver_ok("Get", "ss", (DRIVER, "Features"),
                                 interface="org.freedesktop.DBus.Properties")
    assert features == props["Features"]


def test_service_and_caller_round_trip_every_type(bus: Bus, connect: Callable[..., Peer]) -> None:
    values = ("s", "yqiuxtdbnogsv(sa{sv})ay", (
        255, 65535, -7, 2**32 - 1, -(2**62), 2**64 - 1, 2.5, True, -3, "/a/b", "a{sv}", "text",
        ("u", 9), ("nested", {"k": ("as", ["x", "y"])}), b"\x00\x01\xff"))
    with Service(bus.address, {"Echo": echo}, name="com.example.JEcho") as service:
        caller = connect()
        sig, body = values[1], values[2]
        reply = caller.call("com.example.JEcho", "/", "com.example.Echo", "Echo", sig, body)
        by_unique = caller.call(service.unique_name, "/", "com.example.Echo", "Echo", "s", ("u",))
    assert reply.body == body
    assert reply.header.fields[HeaderFields.signature] == sig
    assert sender(reply) == service.unique_name
    assert by_unique.body == ("u",)
    (call,) = service.calls[:1]
    assert sender(call) == caller.unique_name  # the bus stamps the sender
    assert call.header.fields[HeaderFields.destination] == "com.example.JEcho"  # as sent


def test_unicast_signal_goes_to_its_destination_only(connect: Callable[..., Peer]) -> None:
    emitter, target, bystander = connect(), connect(), connect()
    bystander.add_match("type='signal',interface='com.example.Uni'")
    sig = new_signal(DBusAddress("/u", interface="com.example.Uni"), "Direct", "s", ("for you",))
    sig.header.fields[HeaderFields.destination] = target.unique_name
    emitter.send(sig)
    got = target.wait_for(lambda m: member(m) == "Direct")
    assert got.body == ("for you",) and sender(got) == emitter.unique_name
    bystander.barrier()
    emitter.barrier()
    assert bystander.signals("Direct") == []


def test_many_calls_in_flight_keep_order(bus: Bus, connect: Callable[..., Peer]) -> None:
    with Service(bus.address, {"Echo": echo}, name="com.example.Pipeline"):
        caller = connect()
        addr = DBusAddress("/", bus_name="com.example.Pipeline", interface="com.example.Echo")
        # Fewer than dbus-daemon's default max_replies_per_connection (128):
        # past it, calls fail with LimitsExceeded instead of being queued.
        serials = list(range(1000, 1000 + IN_FLIGHT_CALLS))
        for n in serials:
            caller.conn.send(new_method_call(addr, "Echo", "u", (n,)), serial=n)
        got: list[Message] = []
        while len(got) < len(serials):
            msg = caller.conn.receive(timeout=5)
            if msg.header.message_type is not MessageType.signal:
                got.append(msg)
    assert [r.header.fields[HeaderFields.reply_serial] for r in got] == serials
    assert [r.body[0] for r in got] == serials
