"""A 1 MiB string round-trips through an echo service, and fans out as a signal."""

from __future__ import annotations

from collections.abc import Callable

from jeepney import DBusAddress, new_signal

from .buses import Bus
from .peers import Peer, Service, echo, error_name, member

MIB = 1024 * 1024


def one_mib_text() -> str:
    """Exactly 1 MiB of UTF-8, with multi-byte characters, not a constant fill."""
    pattern = "bootbus ⇄ dbus-daemon · €1 · ありがとう · "
    text = (pattern * (MIB // len(pattern.encode()) + 1))
    while len(text.encode()) > MIB:
        text = text[:-1]
    return text + "x" * (MIB - len(text.encode()))


def test_one_mib_string_round_trips(bus: Bus, connect: Callable[..., Peer]) -> None:
    text = one_mib_text()
    assert len(text.encode()) == MIB
    with Service(bus.address, {"Echo": echo}, name="com.example.Big") as service:
        reply = connect().call("com.example.Big", "/", "com.example.Echo", "Echo", "s", (text,),
                               timeout=10)
    assert error_name(reply) is None, reply.body
    assert reply.body == (text,)
    assert service.calls[0].body == (text,)


def test_one_mib_signal_reaches_every_subscriber(connect: Callable[..., Peer]) -> None:
    payload = bytes(range(256)) * (MIB // 256)
    emitter, subscribers = connect(), [connect(), connect()]
    for sub in subscribers:
        sub.add_match("type='signal',interface='com.example.Big'")
    emitter.send(new_signal(DBusAddress("/big", interface="com.example.Big"), "Blob", "ay",
                            (payload,)))
    for sub in subscribers:
        assert sub.wait_for(lambda m: member(m) == "Blob", timeout=10).body == (payload,)
