"""What the bus does to the header of a message it routes.

Written with raw peers, because jeepney refuses to parse header fields it does
not know and always fills in the fields itself.
"""

from __future__ import annotations

from . import rawwire as rw
from .buses import Bus

# A header field code no version of the specification assigns.
UNKNOWN_FIELD = 100
IFACE = "com.example.Routing"


def peers(bus: Bus) -> tuple[rw.RawPeer, rw.RawPeer]:
    sender, receiver = rw.RawPeer(bus.socket_path), rw.RawPeer(bus.socket_path)
    for peer in (sender, receiver):
        peer.authenticate()
        peer.hello()
    reply = receiver.call("AddMatch", "s", (f"type='signal',interface='{IFACE}'",))
    assert reply.msg_type == rw.METHOD_RETURN, reply.error_name
    return sender, receiver


def receive_signal(receiver: rw.RawPeer) -> rw.RawMessage:
    while True:
        msg = receiver.read_message()
        if msg.msg_type == rw.SIGNAL and msg.fields.get(rw.INTERFACE) == IFACE:
            return msg


def test_bus_stamps_the_real_sender(bus: Bus) -> None:
    sender, receiver = peers(bus)
    with sender, receiver:
        sender.send(rw.build_message(rw.SIGNAL, 7, {
            rw.PATH: "/r", rw.INTERFACE: IFACE, rw.MEMBER: "Forged",
            rw.SENDER: "org.freedesktop.DBus"}))
        msg = receive_signal(receiver)
    assert msg.fields[rw.SENDER] == sender.unique_name
    assert msg.serial == 7  # the sender's serial is kept


def test_unknown_header_field(bus: Bus) -> None:
    sender, receiver = peers(bus)
    with sender, receiver:
        sender.send(rw.build_message(rw.SIGNAL, 7, {
            rw.PATH: "/r", rw.INTERFACE: IFACE, rw.MEMBER: "Extra", UNKNOWN_FIELD: rw.Typed("s", "future")}))
        msg = receive_signal(receiver)
    assert msg.fields[rw.MEMBER] == "Extra"
    if bus.kind == "dbus-daemon":
        # dbus-daemon advertises the HeaderFiltering feature: it drops header
        # fields it does not know, so a field defined later cannot be forged.
        assert UNKNOWN_FIELD not in msg.fields
    else:
        # bootbus forwards headers it does not need to rewrite as they are (it
        # parses headers only), and says so by not listing HeaderFiltering.
        assert msg.fields[UNKNOWN_FIELD] == "future"
