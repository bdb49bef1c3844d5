"""gdbus (GDBus) against the bus: call, introspect, monitor."""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from collections.abc import Callable

from jeepney import DBusAddress, new_signal

from .buses import Bus
from .peers import DRIVER, DRIVER_PATH, Peer, Service, echo
from .tools import Background, emit_until_seen, run

# The driver's methods and their (in, out) signatures, from the specification.
DRIVER_METHODS = {
    "Hello": ("", "s"), "RequestName": ("su", "u"), "ReleaseName": ("s", "u"),
    "StartServiceByName": ("su", "u"), "UpdateActivationEnvironment": ("a{ss}", ""),
    "NameHasOwner": ("s", "b"), "ListNames": ("", "as"), "ListActivatableNames": ("", "as"),
    "AddMatch": ("s", ""), "RemoveMatch": ("s", ""), "GetNameOwner": ("s", "s"),
    "ListQueuedOwners": ("s", "as"), "GetConnectionUnixUser": ("s", "u"),
    "GetConnectionUnixProcessID": ("s", "u"), "GetAdtAuditSessionData": ("s", "ay"),
    "GetConnectionSELinuxSecurityContext": ("s", "ay"), "ReloadConfig": ("", ""),
    "GetId": ("", "s"), "GetConnectionCredentials": ("s", "a{sv}"),
}


def gdbus_text(bus: Bus, dest: str, path: str, method: str, *args: str) -> str:
    """The reply of gdbus call, in GVariant text form."""
    out = run(["gdbus", "call", "--address", bus.address, "--dest", dest,
               "--object-path", path, "--method", method, *args]).stdout
    return out.strip()


def gdbus_call(bus: Bus, dest: str, path: str, method: str, *args: str) -> object:
    """The reply of gdbus call as Python values (strings and arrays of them only)."""
    return ast.literal_eval(gdbus_text(bus, dest, path, method, *args))


def test_call_driver(bus: Bus, connect: Callable[..., Peer]) -> None:
    peer = connect()
    peer.driver_ok("RequestName", "su", ("com.example.G", 0))
    assert gdbus_call(bus, DRIVER, DRIVER_PATH, f"{DRIVER}.GetNameOwner", "com.example.G") == (
        peer.unique_name,)
    reply = gdbus_call(bus, DRIVER, DRIVER_PATH, f"{DRIVER}.ListNames")
    assert isinstance(reply, tuple) and len(reply) == 1
    names = reply[0]
    assert {DRIVER, peer.unique_name, "com.example.G"} <= set(names)
    assert gdbus_text(bus, DRIVER, DRIVER_PATH, f"{DRIVER}.NameHasOwner", "com.example.G") == (
        "(true,)")
    assert gdbus_text(bus, DRIVER, DRIVER_PATH, "org.freedesktop.DBus.Peer.Ping") == "()"


def test_call_service(bus: Bus) -> None:
    with Service(bus.address, {"Echo": echo}, name="com.example.GEcho"):
        reply = gdbus_call(bus, "com.example.GEcho", "/com/example/Echo",
                           "com.example.Echo.Echo", "hello from gdbus")
    assert reply == ("hello from gdbus",)


def test_call_missing_name_fails_with_service_unknown(bus: Bus) -> None:
    done = run(["gdbus", "call", "--address", bus.address, "--dest", "com.example.Nobody",
                "--object-path", "/", "--method", "com.example.X.Y"], check=False)
    assert done.returncode != 0
    assert "org.freedesktop.DBus.Error.ServiceUnknown" in done.stderr


def test_introspect_driver(bus: Bus) -> None:
    text = run(["gdbus", "introspect", "--address", bus.address, "--dest", DRIVER,
                "--object-path", DRIVER_PATH]).stdout
    assert text.startswith(f"node {DRIVER_PATH} {{")
    assert "interface org.freedesktop.DBus {" in text
    assert "Hello(out s arg_0);" in text

    xml = run(["gdbus", "introspect", "--address", bus.address, "--dest", DRIVER,
               "--object-path", DRIVER_PATH, "--xml"]).stdout
    root = ET.fromstring(xml)
    ifaces = {i.get("name"): i for i in root.findall("interface")}
    assert {"org.freedesktop.DBus", "org.freedesktop.DBus.Introspectable",
            "org.freedesktop.DBus.Peer", "org.freedesktop.DBus.Properties",
            "org.freedesktop.DBus.Monitoring"} <= set(ifaces)
    methods = {}
    for m in ifaces[DRIVER].findall("method"):
        args = m.findall("arg")
        methods[m.get("name")] = (
            "".join(a.get("type", "") for a in args if a.get("direction", "in") == "in"),
            "".join(a.get("type", "") for a in args if a.get("direction") == "out"),
        )
    assert methods == DRIVER_METHODS
    signals = {s.get("name"): "".join(a.get("type", "") for a in s.findall("arg"))
               for s in ifaces[DRIVER].findall("signal")}
    core = {"NameOwnerChanged": "sss", "NameLost": "s", "NameAcquired": "s"}
    if bus.kind == "dbus-daemon":
        # dbus-daemon has service activation, hence this signal; bootbus has none.
        assert signals == {**core, "ActivatableServicesChanged": ""}
    else:
        assert signals == core
    props = {p.get("name"): (p.get("type"), p.get("access"))
             for p in ifaces[DRIVER].findall("property")}
    assert props == {"Features": ("as", "read"), "Interfaces": ("as", "read")}


def test_monitor_sees_signal(bus: Bus, connect: Callable[..., Peer]) -> None:
    emitter = connect()
    emitter.driver_ok("RequestName", "su", ("com.example.GEmitter", 0))
    obj = DBusAddress("/com/example/Obj", interface="com.example.Iface")

    def emit() -> None:
        emitter.send(new_signal(obj, "Sig", "su", ("hello", 42)))

    with Background(["gdbus", "monitor", "--address", bus.address,
                     "--dest", "com.example.GEmitter"]) as mon:
        line = emit_until_seen(emit, mon, lambda ln: "com.example.Iface.Sig" in ln)
    assert line == "/com/example/Obj: com.example.Iface.Sig ('hello', uint32 42)"
    assert f"The name com.example.GEmitter is owned by {emitter.unique_name}" in mon.lines
