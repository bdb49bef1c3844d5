"""busctl (sd-bus) against the bus: list, call, introspect, get-property, monitor."""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Callable

from jeepney import DBusAddress, new_signal

from .buses import Bus
from .peers import DRIVER, DRIVER_PATH, Peer
from .tools import Background, emit_until_seen, run


def busctl(bus: Bus, *args: str, check: bool = True) -> str:
    return run(["busctl", f"--address={bus.address}", "--no-pager", *args], check=check).stdout


def busctl_driver_call(bus: Bus, method: str, *args: str) -> object:
    out = busctl(bus, "--json=short", "call", DRIVER, DRIVER_PATH, DRIVER, method, *args)
    return json.loads(out)


def test_list_shows_driver_and_peers(bus: Bus, connect: Callable[..., Peer]) -> None:
    peer = connect()
    peer.driver_ok("RequestName", "su", ("com.example.Listed", 0))
    rows = {row["name"]: row for row in json.loads(busctl(bus, "--json=short", "list"))}

    assert rows[DRIVER]["pid"] == bus.process.pid
    assert rows[peer.unique_name]["pid"] == os.getpid()
    assert rows[peer.unique_name]["user"] == pwd.getpwuid(os.getuid()).pw_name
    assert rows["com.example.Listed"]["connection"] == peer.unique_name
    assert rows["com.example.Listed"]["pid"] == os.getpid()
    # busctl's own connection is listed too: a unique name other than ours.
    uniques = [name for name in rows if name.startswith(":")]
    assert len(uniques) == 2 and peer.unique_name in uniques


def test_call_get_id(bus: Bus, connect: Callable[..., Peer]) -> None:
    reply = busctl_driver_call(bus, "GetId")
    (bus_id,) = connect().driver_ok("GetId")
    assert reply == {"type": "s", "data": [bus_id]}
    assert len(bus_id) == 32 and int(bus_id, 16) >= 0


def test_call_list_names(bus: Bus, connect: Callable[..., Peer]) -> None:
    peer = connect()
    peer.driver_ok("RequestName", "su", ("com.example.Names", 0))
    reply = busctl_driver_call(bus, "ListNames")
    assert isinstance(reply, dict) and reply["type"] == "as"
    names = reply["data"][0]
    assert {DRIVER, peer.unique_name, "com.example.Names"} <= set(names)
    assert len([n for n in names if n.startswith(":")]) == 2  # us and busctl


def test_call_get_name_owner(bus: Bus, connect: Callable[..., Peer]) -> None:
    peer = connect()
    peer.driver_ok("RequestName", "su", ("com.example.Owned", 0))
    assert busctl_driver_call(bus, "GetNameOwner", "s", "com.example.Owned") == {
        "type": "s", "data": [peer.unique_name]}
    assert busctl_driver_call(bus, "GetNameOwner", "s", DRIVER) == {
        "type": "s", "data": [DRIVER]}
    failed = run(["busctl", f"--address={bus.address}", "call", DRIVER, DRIVER_PATH, DRIVER,
                  "GetNameOwner", "s", "com.example.Missing"], check=False)
    assert failed.returncode != 0
    assert "com.example.Missing" in failed.stderr


def test_introspect_driver(bus: Bus) -> None:
    rows = [line.split() for line in busctl(bus, "introspect", DRIVER, DRIVER_PATH).splitlines()]
    members = {(row[0], row[1]): row[2:] for row in rows[1:] if len(row) >= 3}
    assert members[(DRIVER, "interface")][0] == "-"
    expected_methods = {
        ".Hello": ("-", "s"), ".RequestName": ("su", "u"), ".ReleaseName": ("s", "u"),
        ".ListQueuedOwners": ("s", "as"), ".ListNames": ("-", "as"),
        ".NameHasOwner": ("s", "b"), ".GetNameOwner": ("s", "s"),
        ".AddMatch": ("s", "-"), ".RemoveMatch": ("s", "-"), ".GetId": ("-", "s"),
        ".GetConnectionUnixUser": ("s", "u"), ".GetConnectionUnixProcessID": ("s", "u"),
        ".GetConnectionCredentials": ("s", "a{sv}"), ".StartServiceByName": ("su", "u"),
    }
    for name, (args, result) in expected_methods.items():
        assert members.get((name, "method"), [])[:2] == [args, result], name
    assert members[(".Features", "property")][0] == "as"
    assert members[(".Interfaces", "property")][0] == "as"
    for iface in ("org.freedesktop.DBus.Introspectable", "org.freedesktop.DBus.Peer",
                  "org.freedesktop.DBus.Properties"):
        assert (iface, "interface") in members, iface


def test_get_property_features_and_interfaces(bus: Bus) -> None:
    out = busctl(bus, "--json=short", "get-property", DRIVER, DRIVER_PATH, DRIVER,
                 "Features", "Interfaces")
    features, interfaces = (json.loads(line) for line in out.splitlines())
    assert features["type"] == "as" and interfaces["type"] == "as"
    assert "org.freedesktop.DBus.Monitoring" in interfaces["data"]
    if bus.kind == "dbus-daemon":
        assert features["data"] == ["ActivatableServicesChanged", "HeaderFiltering"]
        assert interfaces["data"] == ["org.freedesktop.DBus.Monitoring",
                                      "org.freedesktop.DBus.Debug.Stats"]
    else:
        # bootbus differs on purpose and says so: it has no service activation
        # (no ActivatableServicesChanged), forwards unknown header fields instead
        # of filtering them (see test_routing.py), and has no Debug.Stats.
        assert features["data"] == []
        assert interfaces["data"] == ["org.freedesktop.DBus.Monitoring"]


def test_monitor_sees_signal(bus: Bus, connect: Callable[..., Peer]) -> None:
    emitter = connect()
    obj = DBusAddress("/com/example/Obj", interface="com.example.Iface")

    def emit() -> None:
        emitter.send(new_signal(obj, "Sig", "s", ("hello",)))

    with Background(["busctl", f"--address={bus.address}", "monitor", "--json=short"]) as mon:
        line = emit_until_seen(emit, mon, lambda ln: '"member":"Sig"' in ln)
    event = json.loads(line)
    assert event["type"] == "signal"
    assert event["sender"] == emitter.unique_name
    assert (event["path"], event["interface"]) == ("/com/example/Obj", "com.example.Iface")
    assert event["payload"] == {"type": "s", "data": ["hello"]}
