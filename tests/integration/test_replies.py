"""Expected replies: NO_REPLY_EXPECTED, unsolicited replies, NoReply on disconnect."""

from __future__ import annotations

from collections.abc import Callable

from jeepney import (
    DBusAddress,
    HeaderFields,
    Message,
    MessageFlag,
    MessageType,
    new_method_call,
    new_method_return,
)

from .buses import Bus
from .peers import DRIVER, DRIVER_ADDR, Peer, Service, echo, error_name

ECHO = DBusAddress("/", bus_name="com.example.Replies", interface="com.example.Echo")


def replies_in(peer: Peer) -> list[Message]:
    return [m for m in peer.inbox if m.header.message_type is not MessageType.signal]


def test_no_reply_expected_to_a_service(bus: Bus, connect: Callable[..., Peer]) -> None:
    caller = connect()
    with Service(bus.address, {"Echo": echo}, name="com.example.Replies") as service:
        call = new_method_call(ECHO, "Echo", "s", ("fire and forget",))
        call.header.flags = MessageFlag.no_reply_expected
        caller.send(call)
        # A normal call afterwards: the service answers both in order, so once
        # this reply is here the bus has routed (or dropped) the first one.
        sync = caller.call("com.example.Replies", "/", "com.example.Echo", "Echo", "s", ("sync",))
        assert sync.body == ("sync",)
        received = service.calls[0]
        # The flag reaches the service, which (being jeepney's echo) replies anyway.
        assert received.header.flags & MessageFlag.no_reply_expected
    caller.barrier()
    if bus.kind == "dbus-daemon":
        # dbus-daemon with a session-bus policy forwards replies nobody waits for.
        assert [m.body for m in replies_in(caller)] == [("fire and forget",)]
    else:
        # bootbus tracks expected replies and drops this one, as the issue asks
        # ("replies only to pending calls"), like dbus-broker.
        assert replies_in(caller) == []


def test_no_reply_expected_to_the_driver(bus: Bus, connect: Callable[..., Peer]) -> None:
    caller = connect()
    call = new_method_call(DRIVER_ADDR, "RequestName", "su", ("com.example.Quiet", 0))
    call.header.flags = MessageFlag.no_reply_expected
    caller.send(call)
    caller.barrier()
    # The call is carried out either way.
    assert caller.driver_ok("GetNameOwner", "s", ("com.example.Quiet",)) == (caller.unique_name,)
    if bus.kind == "dbus-daemon":
        # dbus-daemon's driver ignores the flag and answers anyway.
        assert [m.body for m in replies_in(caller)] == [(1,)]
    else:
        # bootbus honours the flag, as the specification says the reply "should be omitted".
        assert replies_in(caller) == []


def test_unsolicited_reply(bus: Bus, connect: Callable[..., Peer]) -> None:
    forger, victim = connect(), connect()
    fake_call = new_method_call(DBusAddress("/", bus_name=victim.unique_name, interface="x.y"), "Z")
    fake_call.header.serial = 77
    fake_call.header.fields[HeaderFields.sender] = victim.unique_name
    forger.send(new_method_return(fake_call, "s", ("unsolicited",)))
    forger.barrier()
    victim.barrier()
    if bus.kind == "dbus-daemon":
        # dbus-daemon only drops unrequested replies when its policy says so
        # (the system bus does; a session-bus policy lets them through).
        assert [m.body for m in replies_in(victim)] == [("unsolicited",)]
    else:
        # bootbus never delivers a reply to a call that is not pending.
        assert replies_in(victim) == []


def test_second_reply_to_one_call_is_dropped(bus: Bus, connect: Callable[..., Peer]) -> None:
    sent: list[Service] = []

    def twice(msg: Message) -> Message:
        sent[0].conn.send(new_method_return(msg, "s", ("first",)))
        return new_method_return(msg, "s", ("second",))

    with Service(bus.address, {"Twice": twice}, name="com.example.Replies") as service:
        sent.append(service)
        caller = connect()
        reply = caller.call("com.example.Replies", "/", "com.example.Echo", "Twice")
        assert reply.body == ("first",)
        caller.call("com.example.Replies", "/", "com.example.Echo", "Echo", "s", ("sync",))
    caller.barrier()
    extra = [m.body for m in replies_in(caller)]
    if bus.kind == "dbus-daemon":
        assert extra == [("second",)]  # forwarded: see test_unsolicited_reply
    else:
        assert extra == []


def test_service_disconnects_with_pending_call(bus: Bus, connect: Callable[..., Peer]) -> None:
    caller = connect()
    service = Service(bus.address, {"Hang": lambda msg: None}, name="com.example.Replies")
    with service:
        serial = 4242
        caller.conn.send(new_method_call(ECHO, "Hang"), serial=serial)
        service.wait_calls(1)
    # The service is gone without replying: the bus answers for it.
    reply = caller.wait_for(
        lambda m: bool(m.header.fields.get(HeaderFields.reply_serial) == serial))
    assert error_name(reply) == "org.freedesktop.DBus.Error.NoReply"
    assert reply.header.fields[HeaderFields.sender] == DRIVER
    assert reply.header.fields[HeaderFields.destination] == caller.unique_name


def test_caller_disconnects_before_reply(bus: Bus, connect: Callable[..., Peer]) -> None:
    """A reply to a caller that has gone is dropped; the bus and the service carry on."""
    pending: list[Message] = []

    def later(msg: Message) -> None:
        pending.append(msg)  # answered below, after the caller has gone

    with Service(bus.address, {"Later": later, "Echo": echo},
                 name="com.example.Replies") as service:
        caller = connect()
        caller.send(new_method_call(ECHO, "Later"))
        service.wait_calls(1)
        caller.close()
        service.conn.send(new_method_return(pending[0], "s", ("too late",)))
        other = connect()
        reply = other.call("com.example.Replies", "/", "com.example.Echo", "Echo", "s", ("ok",))
    assert reply.body == ("ok",)
