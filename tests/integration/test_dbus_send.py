"""dbus-send and dbus-monitor (libdbus tools) against the bus."""

from __future__ import annotations

import re
from collections.abc import Callable

from jeepney import DBusAddress, new_signal

from .buses import Bus
from .peers import DRIVER, DRIVER_PATH, Peer, Service, echo, member
from .tools import Background, emit_until_seen, run

REPLY_HEADER = re.compile(
    r"^method return time=[0-9.]+ sender=(\S+) -> destination=(:\S+) serial=\d+ reply_serial=\d+$"
)


def dbus_send(bus: Bus, *args: str, check: bool = True) -> tuple[int, str, str]:
    done = run(["dbus-send", f"--bus={bus.address}", *args], check=check)
    return done.returncode, done.stdout, done.stderr


def reply_body(stdout: str) -> tuple[str, list[str]]:
    """The sender of a --print-reply output and its argument lines."""
    first, *rest = stdout.rstrip("\n").split("\n")
    header = REPLY_HEADER.match(first)
    assert header, f"unexpected reply header {first!r}"
    return header.group(1), [line.strip() for line in rest]


def test_print_reply_get_name_owner(bus: Bus, connect: Callable[..., Peer]) -> None:
    peer = connect()
    peer.driver_ok("RequestName", "su", ("com.example.Send", 0))
    _, out, _ = dbus_send(bus, "--print-reply", f"--dest={DRIVER}", DRIVER_PATH,
                          f"{DRIVER}.GetNameOwner", "string:com.example.Send")
    assert reply_body(out) == (DRIVER, [f'string "{peer.unique_name}"'])


def test_print_reply_list_names(bus: Bus, connect: Callable[..., Peer]) -> None:
    peer = connect()
    _, out, _ = dbus_send(bus, "--print-reply", f"--dest={DRIVER}", DRIVER_PATH,
                          f"{DRIVER}.ListNames")
    sender, lines = reply_body(out)
    assert sender == DRIVER
    assert lines[0] == "array [" and lines[-1] == "]"
    names = {line.removeprefix('string "').removesuffix('"') for line in lines[1:-1]}
    assert {DRIVER, peer.unique_name} <= names


def test_print_reply_from_service(bus: Bus) -> None:
    with Service(bus.address, {"Echo": echo}, name="com.example.SendEcho") as service:
        _, out, _ = dbus_send(bus, "--print-reply", "--dest=com.example.SendEcho",
                              "/com/example/Echo", "com.example.Echo.Echo",
                              "string:hi there", "uint32:7", "array:string:a,b")
    sender, lines = reply_body(out)
    assert sender == service.unique_name
    assert lines == ['string "hi there"', "uint32 7", "array [", 'string "a"', 'string "b"', "]"]


def test_error_name_printed(bus: Bus) -> None:
    code, _, err = dbus_send(bus, "--print-reply", f"--dest={DRIVER}", DRIVER_PATH,
                             f"{DRIVER}.GetNameOwner", "string:com.example.Missing",
                             check=False)
    assert code == 1
    assert err.startswith("Error org.freedesktop.DBus.Error.NameHasNoOwner: ")


def test_signal_reaches_subscriber(bus: Bus, connect: Callable[..., Peer]) -> None:
    listener = connect()
    listener.add_match("type='signal',interface='com.example.Send'")
    dbus_send(bus, "--type=signal", "/com/example/Send", "com.example.Send.Ping",
              "string:payload", "int32:-5")
    msg = listener.wait_for(lambda m: member(m) == "Ping")
    assert msg.body == ("payload", -5)


def test_dbus_monitor_sees_signal(bus: Bus, connect: Callable[..., Peer]) -> None:
    emitter = connect()
    obj = DBusAddress("/com/example/Obj", interface="com.example.Iface")

    def emit() -> None:
        emitter.send(new_signal(obj, "Sig", "s", ("seen by dbus-monitor",)))

    with Background(["dbus-monitor", "--address", bus.address]) as mon:
        header = emit_until_seen(emit, mon, lambda ln: "member=Sig" in ln)
        arg = mon.wait_for_line(lambda ln: True)
    assert header.startswith("signal time=")
    assert (f"sender={emitter.unique_name} -> destination=(null destination)" in header)
    assert header.endswith("path=/com/example/Obj; interface=com.example.Iface; member=Sig")
    assert arg.strip() == 'string "seen by dbus-monitor"'


def test_dbus_monitor_sees_method_call_and_reply(bus: Bus, connect: Callable[..., Peer]) -> None:
    caller = connect()
    with Background(["dbus-monitor", "--address", bus.address,
                     "type='method_call',member='GetNameOwner'",
                     "type='method_return'"]) as mon:
        def call() -> None:
            caller.driver_ok("GetNameOwner", "s", (DRIVER,))

        call_line = emit_until_seen(
            call, mon, lambda ln: ln.startswith("method call") and "member=GetNameOwner" in ln)
        assert f"sender={caller.unique_name} -> destination=org.freedesktop.DBus" in call_line
        ret = mon.wait_for_line(
            lambda ln: ln.startswith("method return") and f"destination={caller.unique_name}" in ln)
        assert "sender=org.freedesktop.DBus" in ret
