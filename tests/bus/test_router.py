"""Routing with fake peers: Hello, calls and replies, signals, monitors, fds, disconnects."""

import pytest

from bootbus.bus import router
from bootbus.bus.peer import PeerState
from bootbus.bus.router import PeerError
from bootbus.wire import message as m

from .fakebus import BUS, BUS_PATH, Client, connect, new_bus, summary

NOC = "NameOwnerChanged"


# -- Hello -------------------------------------------------------------------------

def test_hello_gives_a_unique_name_then_name_acquired() -> None:
    bus = new_bus()
    watcher = connect(bus)
    watcher.add_match(f"type='signal',member='{NOC}'")
    client = connect(bus, hello=False)
    serial = client.call_bus("Hello")
    reply, acquired = client.received()
    assert (reply.type, reply.reply_serial, reply.sender, reply.destination) == (
        m.METHOD_RETURN, serial, BUS, ":1.2")
    assert reply.args() == [":1.2"]
    assert (acquired.type, acquired.member, acquired.sender, acquired.destination,
            acquired.path, acquired.interface) == (
        m.SIGNAL, "NameAcquired", BUS, ":1.2", BUS_PATH, BUS)
    assert acquired.args() == [":1.2"]
    assert [summary(s) for s in watcher.received()] == [
        ("signal", BUS, None, NOC, [":1.2", "", ":1.2"])]
    assert client.peer.state is PeerState.ACTIVE
    assert bus.lookup(":1.2") is client.peer


def test_a_message_of_an_unknown_type_is_ignored() -> None:
    """Spec: messages of an unknown type are ignored; the sender stays connected."""
    bus = new_bus()
    sender, target = connect(bus), connect(bus)
    raw = m.build(m.SIGNAL, 9, path="/a", interface="a.b", member="M",
                  destination=target.unique_name)
    unknown = raw[:1] + bytes((7,)) + raw[2:]
    (msg,) = sender.peer.framer.feed(unknown)
    bus.dispatch(sender.peer, msg)
    assert target.received() == [] and not bus.doomed
    assert bus.stats["unknown_type_ignored"] == 1
    sender.signal(destination=target.unique_name)
    assert [summary(s)[0] for s in target.received()] == ["signal"]


def test_unique_names_are_never_reused() -> None:
    bus = new_bus()
    names = []
    for _ in range(3):
        client = connect(bus)
        names.append(client.unique_name)
        bus.remove_peer(client.peer)
    assert names == [":1.1", ":1.2", ":1.3"]


@pytest.mark.parametrize("first", [
    {"destination": BUS, "member": "ListNames", "interface": BUS},
    {"destination": None, "member": "Hello", "interface": BUS},
    {"destination": "com.example.X", "member": "Hello", "interface": BUS},
    {"destination": BUS, "member": "Hello", "interface": "com.example.I"},
], ids=["other method", "no destination", "other destination", "other interface"])
def test_a_first_message_other_than_hello_disconnects(first: dict) -> None:
    bus = new_bus()
    client = connect(bus, hello=False)
    with pytest.raises(PeerError):
        client.call(first["destination"], first["member"], interface=first["interface"],
                    path=BUS_PATH)


def test_a_signal_before_hello_disconnects() -> None:
    client = connect(new_bus(), hello=False)
    with pytest.raises(PeerError):
        client.signal()


def test_hello_without_interface_is_accepted() -> None:
    client = connect(new_bus(), hello=False)
    serial = client.call(BUS, "Hello", path=BUS_PATH)
    assert client.reply_to(serial).args() == [":1.1"]


def test_hello_twice_is_an_error() -> None:
    client = connect(new_bus())
    answer = client.ask_bus("Hello")
    assert answer.error_name == "org.freedesktop.DBus.Error.Failed"
    assert answer.args() == ["Already handled an Hello message"]


# -- method calls and replies -------------------------------------------------------

def test_call_and_reply_are_routed_with_the_sender_set() -> None:
    bus = new_bus()
    a, b = connect(bus), connect(bus)
    serial = a.call(b.unique_name, "Frob", "s", ("x",), interface="com.example.I", path="/o")
    (call,) = b.received()
    assert (call.sender, call.destination, call.serial, call.member, call.path) == (
        a.unique_name, b.unique_name, serial, "Frob", "/o")
    assert call.args() == ["x"]
    b.reply(call, "u", (7,))
    (reply,) = a.received()
    assert (reply.type, reply.sender, reply.reply_serial, reply.args()) == (
        m.METHOD_RETURN, b.unique_name, serial, [7])
    assert bus.pending == {}


def test_error_replies_are_routed_like_returns() -> None:
    bus = new_bus()
    a, b = connect(bus), connect(bus)
    serial = a.call(b.unique_name, "Frob")
    (call,) = b.received()
    b.error(call, "com.example.Error.Nope", "no")
    (err,) = a.received()
    assert (err.type, err.error_name, err.reply_serial, err.sender) == (
        m.ERROR, "com.example.Error.Nope", serial, b.unique_name)


def test_the_sender_field_cannot_be_spoofed() -> None:
    bus = new_bus()
    a, b = connect(bus), connect(bus)
    a.send(m.METHOD_CALL, path="/", member="M", destination=b.unique_name, sender=BUS)
    (call,) = b.received()
    assert call.sender == a.unique_name


def test_a_call_to_a_well_known_name_goes_to_its_owner() -> None:
    bus = new_bus()
    a, b = connect(bus), connect(bus)
    assert b.ask_bus("RequestName", "su", ("com.example.Svc", 0)).args() == [1]
    b.received()
    serial = a.call("com.example.Svc", "Frob")
    (call,) = b.received()
    assert call.destination == "com.example.Svc" and call.sender == a.unique_name
    b.reply(call)
    assert a.reply_to(serial).sender == b.unique_name


def test_unexpected_replies_are_dropped() -> None:
    bus = new_bus()
    a, b, c = connect(bus), connect(bus), connect(bus)
    serial = a.call(b.unique_name, "Frob")
    (call,) = b.received()
    c.reply(call)  # c was not called
    c.send(m.METHOD_RETURN, reply_serial=serial, destination=a.unique_name)
    assert a.received() == []
    b.reply(call)
    assert len(a.received()) == 1
    b.reply(call)  # the second reply to the same call
    b.error(call, "com.example.Error.Late")
    assert a.received() == []
    assert bus.stats["replies_unexpected"] == 4


def test_no_reply_expected_calls_get_no_reply() -> None:
    bus = new_bus()
    a, b = connect(bus), connect(bus)
    a.call(b.unique_name, "Frob", flags=m.FLAG_NO_REPLY_EXPECTED)
    (call,) = b.received()
    assert call.flags & m.FLAG_NO_REPLY_EXPECTED
    b.reply(call)
    assert a.received() == [] and bus.pending == {}


def test_a_call_to_a_missing_name_gets_service_unknown() -> None:
    a = connect(new_bus())
    serial = a.call("com.example.Missing", "Frob")
    err = a.reply_to(serial)
    assert (err.error_name, err.sender, err.destination) == (
        "org.freedesktop.DBus.Error.ServiceUnknown", BUS, a.unique_name)
    serial = a.call(":1.99", "Frob")
    assert a.reply_to(serial).error_name == "org.freedesktop.DBus.Error.ServiceUnknown"
    a.call("com.example.Missing", "Frob", flags=m.FLAG_NO_REPLY_EXPECTED)
    assert a.received() == []


def test_replies_and_signals_to_a_missing_name_are_dropped() -> None:
    bus = new_bus()
    a = connect(bus)
    a.send(m.METHOD_RETURN, reply_serial=5, destination=":1.99")
    a.signal(destination="com.example.Missing")
    assert a.received() == []


def test_no_reply_when_the_callee_disconnects() -> None:
    bus = new_bus()
    a, b = connect(bus), connect(bus)
    first = a.call(b.unique_name, "Frob")
    second = a.call(b.unique_name, "Frob2")
    a.call(b.unique_name, "NoAnswerWanted", flags=m.FLAG_NO_REPLY_EXPECTED)
    bus.remove_peer(b.peer)
    errors = [msg for msg in a.received() if msg.type == m.ERROR]
    assert sorted(e.reply_serial for e in errors) == [first, second]
    for err in errors:
        assert (err.error_name, err.sender, err.destination) == (
            "org.freedesktop.DBus.Error.NoReply", BUS, a.unique_name)
    assert bus.pending == {} and a.peer.pending_calls == 0


def test_a_reply_to_a_caller_that_left_is_dropped() -> None:
    bus = new_bus()
    a, b = connect(bus), connect(bus)
    a.call(b.unique_name, "Frob")
    (call,) = b.received()
    bus.remove_peer(a.peer)
    b.reply(call)
    assert b.received() == [] and bus.pending == {}


def test_disconnect_announces_the_unique_name_and_releases_names() -> None:
    bus = new_bus()
    watcher = connect(bus)
    a, b = connect(bus), connect(bus)
    a.ask_bus("RequestName", "su", ("com.example.Svc", 0))
    b.ask_bus("RequestName", "su", ("com.example.Svc", 0))
    b.received()
    watcher.add_match(f"member='{NOC}'")
    bus.remove_peer(a.peer)
    assert [summary(s) for s in watcher.received()] == [
        ("signal", BUS, None, NOC, ["com.example.Svc", a.unique_name, b.unique_name]),
        ("signal", BUS, None, NOC, [a.unique_name, a.unique_name, ""]),
    ]
    assert [summary(s) for s in b.received()] == [
        ("signal", BUS, b.unique_name, "NameAcquired", ["com.example.Svc"])]
    assert bus.lookup(a.unique_name) is None
    assert bus.remove_peer(a.peer) == []  # a second removal does nothing


# -- signals -----------------------------------------------------------------------

def test_broadcast_signals_go_to_matching_peers_once() -> None:
    bus = new_bus()
    sender, fan, other = connect(bus), connect(bus), connect(bus)
    fan.add_match("type='signal',interface='com.example.I'")
    fan.add_match("member='Changed'")  # matches too: still one copy
    other.add_match("type='signal',interface='com.example.Other'")
    sender.signal("Changed", args=("x",), signature="s")
    (got,) = fan.received()
    assert (got.sender, got.member, got.destination, got.args()) == (
        sender.unique_name, "Changed", None, ["x"])
    assert other.received() == [] and sender.received() == []


def test_the_sender_receives_its_own_broadcast_when_it_matches() -> None:
    bus = new_bus()
    sender = connect(bus)
    sender.add_match("type='signal'")
    sender.signal()
    assert [s.member for s in sender.received()] == ["Changed"]


def test_arg0_filters_broadcasts() -> None:
    bus = new_bus()
    sender, fan = connect(bus), connect(bus)
    fan.add_match("type='signal',arg0='wanted'")
    sender.signal(signature="s", args=("unwanted",))
    sender.signal(signature="s", args=("wanted",))
    sender.signal(signature="i", args=(1,))
    assert [s.args() for s in fan.received()] == [["wanted"]]


def test_sender_rule_by_well_known_name_follows_the_owner() -> None:
    bus = new_bus()
    a, b, fan = connect(bus), connect(bus), connect(bus)
    fan.add_match("sender='com.example.Svc'")
    a.ask_bus("RequestName", "su", ("com.example.Svc", 0))
    a.signal("One")
    b.signal("Other")
    a.ask_bus("ReleaseName", "s", ("com.example.Svc",))
    a.signal("Two")
    assert [s.member for s in fan.received()] == ["One"]


def test_remove_match_stops_delivery() -> None:
    bus = new_bus()
    a, fan = connect(bus), connect(bus)
    fan.add_match("type='signal'")
    fan.add_match("type='signal'")  # added twice: removed one at a time
    assert fan.ask_bus("RemoveMatch", "s", ("type='signal'",)).type == m.METHOD_RETURN
    a.signal()
    assert len(fan.received()) == 1
    assert fan.ask_bus("RemoveMatch", "s", ("type='signal'",)).type == m.METHOD_RETURN
    a.signal()
    assert fan.received() == []


def test_unicast_signals_reach_their_destination_not_plain_rules() -> None:
    bus = new_bus()
    a, b, fan, spy = connect(bus), connect(bus), connect(bus), connect(bus)
    fan.add_match("type='signal'")
    spy.add_match("type='signal',eavesdrop='true'")
    a.signal("Direct", destination=b.unique_name)
    (got,) = b.received()
    assert (got.member, got.destination, got.sender) == ("Direct", b.unique_name, a.unique_name)
    assert fan.received() == []
    assert [s.member for s in spy.received()] == ["Direct"]


def test_eavesdroppers_see_calls_and_replies() -> None:
    bus = new_bus()
    a, b, spy = connect(bus), connect(bus), connect(bus)
    spy.add_match("eavesdrop='true'")
    a.call(b.unique_name, "Frob")
    (call,) = b.received()
    b.reply(call)
    assert [m.TYPE_NAMES[x.type] for x in spy.received()] == ["method_call", "method_return"]


def test_signals_from_the_bus_carry_its_name() -> None:
    bus = new_bus()
    fan = connect(bus)
    fan.add_match("sender='org.freedesktop.DBus',member='NameOwnerChanged'")
    connect(bus)
    (sig,) = fan.received()
    assert (sig.sender, sig.path, sig.interface) == (BUS, BUS_PATH, BUS)


# -- monitors ------------------------------------------------------------------------

def become_monitor(client: Client, rules: list[str]) -> None:
    answer = client.ask_bus("BecomeMonitor", "asu", (rules, 0),
                            interface="org.freedesktop.DBus.Monitoring")
    assert answer.type == m.METHOD_RETURN, answer.args()
    client.received()


def test_a_monitor_sees_every_message_and_loses_its_name() -> None:
    bus = new_bus()
    watcher = connect(bus)
    watcher.add_match(f"member='{NOC}'")
    mon = connect(bus, uid=0)
    name = mon.unique_name
    watcher.received()
    become_monitor(mon, [])
    assert mon.peer.state is PeerState.MONITOR
    assert [summary(s) for s in watcher.received()] == [("signal", BUS, None, NOC,
                                                         [name, name, ""])]
    a, b = connect(bus), connect(bus)
    mon.received()
    serial = a.call(b.unique_name, "Frob")
    (call,) = b.received()
    b.reply(call)
    seen = mon.received()
    assert [(m.TYPE_NAMES[x.type], x.sender, x.serial if x.type == m.METHOD_CALL
             else x.reply_serial) for x in seen] == [
        ("method_call", a.unique_name, serial), ("method_return", b.unique_name, serial)]
    assert bus.lookup(name) is None


def test_a_monitor_sees_driver_calls_and_answers() -> None:
    bus = new_bus()
    a, mon = connect(bus), connect(bus, uid=0)
    become_monitor(mon, [])
    serial = a.call_bus("GetId")
    seen = mon.received()
    assert [(m.TYPE_NAMES[x.type], x.sender) for x in seen] == [
        ("method_call", a.unique_name), ("method_return", BUS)]
    assert seen[1].reply_serial == serial


def test_a_monitor_filters_with_its_rules() -> None:
    bus = new_bus()
    a, b, mon = connect(bus), connect(bus), connect(bus, uid=0)
    become_monitor(mon, ["type='signal',member='Wanted'"])
    a.signal("Unwanted")
    a.signal("Wanted")
    a.call(b.unique_name, "Wanted")
    assert [(x.member, m.TYPE_NAMES[x.type]) for x in mon.received()] == [("Wanted", "signal")]


def test_a_monitor_destination_rule_names_the_recipient_connection() -> None:
    # "destination: Matches messages which are being sent to the given unique name."
    # A call addressed to a well-known name is being sent to its owner's unique
    # name; dbus-daemon (bus/signals.c) matches rule->destination against the
    # addressed recipient with connection_is_primary_owner(), so `dbus-monitor
    # destination=:1.5` shows calls to names :1.5 owns.
    bus = new_bus()
    a, b, mon = connect(bus), connect(bus), connect(bus, uid=0)
    b.ask_bus("RequestName", "su", ("com.example.Svc", 0))
    b.received()
    become_monitor(mon, [f"destination='{b.unique_name}'"])
    a.call("com.example.Svc", "ViaWellKnown")
    a.call(b.unique_name, "ViaUnique")
    assert sorted(x.member for x in mon.received()) == ["ViaUnique", "ViaWellKnown"]


def test_a_monitor_may_not_send() -> None:
    bus = new_bus()
    mon = connect(bus, uid=0)
    become_monitor(mon, [])
    with pytest.raises(PeerError):
        mon.signal()


def test_becoming_a_monitor_drops_names_matches_and_pending_calls() -> None:
    bus = new_bus()
    a, mon = connect(bus), connect(bus, uid=0)
    mon.ask_bus("RequestName", "su", ("com.example.Mon", 0))
    mon.add_match("type='signal'")
    serial = a.call(mon.unique_name, "Frob")
    mon.received()
    become_monitor(mon, ["type='error'"])
    assert bus.registry.owner("com.example.Mon") is None
    assert mon.peer.matches == []
    answers = [x for x in a.received() if x.type == m.ERROR]
    assert [(x.error_name, x.reply_serial) for x in answers] == [
        ("org.freedesktop.DBus.Error.NoReply", serial)]


# -- unix fds ------------------------------------------------------------------------

def test_fds_are_delivered_with_the_message() -> None:
    bus = new_bus()
    a, b = connect(bus, unix_fd=True), connect(bus, unix_fd=True)
    a.call(b.unique_name, "TakeFd", "h", (0,), fds=[55], unix_fds=1)
    (call,) = b.received()
    assert call.fds == [55] and call.unix_fds == 1 and call.args() == [0]
    assert bus.fds_to_close == []


def test_fds_to_a_peer_without_fd_support_are_refused_and_closed() -> None:
    bus = new_bus()
    a, b = connect(bus, unix_fd=True), connect(bus, unix_fd=False)
    serial = a.call(b.unique_name, "TakeFd", "h", (0,), fds=[55], unix_fds=1)
    assert b.received() == []
    err = a.reply_to(serial)
    assert err.error_name == "org.freedesktop.DBus.Error.NotSupported"
    assert bus.fds_to_close == [55]


def test_fds_from_a_peer_that_did_not_negotiate_them_disconnect_it() -> None:
    bus = new_bus()
    a, b = connect(bus, unix_fd=False), connect(bus, unix_fd=True)
    with pytest.raises(PeerError):
        a.call(b.unique_name, "TakeFd", "h", (0,), fds=[55], unix_fds=1)


def test_broadcast_fds_skip_subscribers_without_fd_support() -> None:
    bus = new_bus()
    a, yes, no = connect(bus, unix_fd=True), connect(bus, unix_fd=True), connect(bus)
    yes.add_match("type='signal'")
    no.add_match("type='signal'")
    a.signal(signature="h", args=(0,), fds=[77], unix_fds=1)
    (got,) = yes.received()
    assert got.fds == [77]
    assert no.received() == []
    assert bus.fds_to_close == []  # yes's copy still holds it


def test_fds_of_a_message_nobody_receives_are_closed() -> None:
    bus = new_bus()
    a = connect(bus, unix_fd=True)
    a.signal(signature="h", args=(0,), fds=[88], unix_fds=1)
    a.call("com.example.Missing", "M", "h", (0,), fds=[89], unix_fds=1)
    a.call_bus("GetId")
    assert sorted(bus.fds_to_close) == [88, 89]


def test_output_queue_frames_record_their_size() -> None:
    bus = new_bus()
    a, b = connect(bus), connect(bus)
    a.call(b.unique_name, "Frob", "s", ("x" * 100,))
    (frame,) = b.peer.outq
    assert frame.size == sum(len(buf) for buf in frame.bufs) == b.peer.out_bytes
    assert b.peer in bus.dirty


# -- the rest of the routing table ----------------------------------------------------

def test_replies_without_destination_reach_only_monitors() -> None:
    bus = new_bus()
    a, fan, mon = connect(bus), connect(bus), connect(bus, uid=0)
    fan.add_match("")
    become_monitor(mon, [])
    fan.received()
    a.send(m.METHOD_RETURN, reply_serial=3)
    a.send(m.ERROR, reply_serial=3, error_name="com.example.E")
    assert fan.received() == []
    assert [m.TYPE_NAMES[x.type] for x in mon.received()] == ["method_return", "error"]


def test_calls_to_a_service_the_bus_answers_go_to_its_handler() -> None:
    bus = new_bus()
    seen: list[tuple[str, str | None]] = []

    def handler(bus_: object, peer: object, msg: m.Message) -> None:
        seen.append((msg.member or "", msg.sender))
        bus.reply(peer, msg, "s", ("handled",), sender="com.example.Internal")  # type: ignore

    bus.services["com.example.Internal"] = handler
    a = connect(bus)
    serial = a.call("com.example.Internal", "Do")
    answer = a.reply_to(serial)
    assert (answer.sender, answer.args()) == ("com.example.Internal", ["handled"])
    assert seen == [("Do", None)]  # the handler gets the message as it came in


def test_a_peer_that_does_not_read_gets_no_more_calls() -> None:
    bus = new_bus()
    a, slow = connect(bus), connect(bus)
    slow.peer.out_bytes = router.MAX_OUTGOING_BYTES_PER_PEER + 1  # as if its queue were full
    serial = a.call(slow.unique_name, "Frob")
    assert a.reply_to(serial).error_name == "org.freedesktop.DBus.Error.LimitsExceeded"
    assert slow.peer.outq == [] and slow.peer not in bus.doomed


def test_a_peer_that_does_not_read_is_doomed_by_signals_it_asked_for() -> None:
    bus = new_bus()
    a, slow = connect(bus), connect(bus)
    slow.add_match("type='signal'")
    slow.peer.out_bytes = router.MAX_OUTGOING_BYTES_PER_PEER
    a.signal()
    assert slow.peer in bus.doomed
    assert a.peer not in bus.doomed


def test_pending_replies_are_bounded_per_caller() -> None:
    bus = new_bus()
    bus.limits.max_replies = 3
    a, b = connect(bus), connect(bus)
    for _ in range(3):
        a.call(b.unique_name, "Frob")
    serial = a.call(b.unique_name, "Frob")
    assert a.reply_to(serial).error_name == "org.freedesktop.DBus.Error.LimitsExceeded"
    assert len(b.received()) == 3 and a.peer.pending_calls == 3
    a.call(b.unique_name, "Frob", flags=m.FLAG_NO_REPLY_EXPECTED)  # needs no slot
    assert len(b.received()) == 1


def test_a_monitor_that_disconnects_is_forgotten() -> None:
    bus = new_bus()
    a, mon = connect(bus), connect(bus, uid=0)
    become_monitor(mon, [])
    a.signal()
    unsent = bus.remove_peer(mon.peer)
    assert [m.parse(b"".join(bytes(x) for x in f.bufs)).member for f in unsent] == ["Changed"]
    assert mon.peer not in bus.monitors and mon.peer.id not in bus.peers
    a.signal()
    assert mon.peer.outq == []


def test_derived_indexes_rebuild_to_the_same_routing() -> None:
    # a snapshot stores peers, names, matches and pending calls; the indexes are
    # rebuilt after restore and must route exactly as before
    bus = new_bus()
    a, b, c, mon = connect(bus), connect(bus), connect(bus), connect(bus, uid=0)
    b.add_match("type='signal',interface='com.example.I'")
    c.add_match("eavesdrop='true'")
    a.ask_bus("RequestName", "su", ("com.example.A", 0))
    a.call(b.unique_name, "Pending")
    become_monitor(mon, [])
    before = (dict(bus.by_unique), {k: list(v) for k, v in bus.rules_by_interface.items()},
              list(bus.eavesdroppers), list(bus.monitors),
              {p.id: p.pending_calls for p in bus.peers.values()},
              {p: set(n) for p, n in bus.registry.by_peer.items()})
    bus.by_unique, bus.rules_by_interface, bus.eavesdroppers, bus.monitors = {}, {}, [], []
    for peer in bus.peers.values():
        peer.pending_calls = 0
    bus.registry.by_peer = {}
    bus.rebuild_indexes()
    after = (dict(bus.by_unique), {k: list(v) for k, v in bus.rules_by_interface.items()},
             list(bus.eavesdroppers), list(bus.monitors),
             {p.id: p.pending_calls for p in bus.peers.values()},
             {p: set(n) for p, n in bus.registry.by_peer.items() if n})
    assert after == (before[0], before[1], before[2], before[3], before[4],
                     {p: n for p, n in before[5].items() if n})
    for client in (a, b, c, mon):
        client.received()
    a.signal()
    assert [len(x.received()) for x in (b, c, mon)] == [1, 1, 1]


class QueueingActivator:
    """Holds auto-started calls as the real activator does, until the name is owned."""

    def __init__(self) -> None:
        self.held: list[tuple[object, m.Message]] = []

    def can_activate(self, name: str) -> bool:
        return name == "com.example.Lazy"

    def auto_start(self, peer: object, msg: m.Message) -> None:
        self.held.append((peer, msg))


def test_auto_start_holds_the_call_until_the_name_is_owned() -> None:
    bus = new_bus()
    bus.activator = activator = QueueingActivator()
    a = connect(bus)
    serial = a.call("com.example.Lazy", "Frob", "s", ("x",))
    assert a.received() == [] and [msg.serial for _, msg in activator.held] == [serial]
    service = connect(bus)
    service.ask_bus("RequestName", "su", ("com.example.Lazy", 0))
    service.received()
    for peer, msg in activator.held:
        bus.dispatch(peer, msg)  # type: ignore[arg-type]
    (call,) = service.received()
    assert (call.sender, call.serial, call.args()) == (a.unique_name, serial, ["x"])
    service.reply(call, "s", ("done",))
    assert a.reply_to(serial).args() == ["done"]


def test_no_auto_start_skips_the_activator() -> None:
    bus = new_bus()
    bus.activator = activator = QueueingActivator()
    a = connect(bus)
    serial = a.call("com.example.Lazy", "Frob", flags=m.FLAG_NO_AUTO_START)
    assert a.reply_to(serial).error_name == "org.freedesktop.DBus.Error.NameHasNoOwner"
    assert activator.held == []


def test_an_eavesdropper_with_two_matching_rules_gets_one_copy() -> None:
    # dbus-daemon adds each connection once to a message's recipients
    # (bus_connection_mark_stamp in bus/signals.c), however many of its rules match
    bus = new_bus()
    a, b, spy = connect(bus), connect(bus), connect(bus)
    spy.add_match("eavesdrop='true'")
    spy.add_match("eavesdrop='true',type='method_call'")
    a.call(b.unique_name, "Frob")
    a.signal("Direct", destination=b.unique_name)
    # the second AddMatch is a call to the driver the first rule already eavesdrops
    # on (see test_eavesdroppers_see_calls_to_the_driver); each message comes once
    assert [x.member for x in spy.received()] == ["AddMatch", "Frob", "Direct"]


def test_eavesdroppers_see_calls_to_the_driver() -> None:
    # dbus-daemon 1.14 (checked with jeepney peers): a connection with an
    # eavesdrop='true' rule receives other peers' method calls to
    # org.freedesktop.DBus (and its own later AddMatch calls), not the driver's replies
    bus = new_bus()
    a, spy = connect(bus), connect(bus)
    spy.add_match("eavesdrop='true'")
    a.ask_bus("GetId")
    assert [(x.member, x.sender, x.destination) for x in spy.received()] == [
        ("GetId", a.unique_name, BUS)]


def test_eavesdroppers_see_their_own_unicast_messages() -> None:
    # dbus-daemon excludes only the addressed recipient from the match recipients,
    # not the sender (checked: the spy receives a copy of its own call to another peer)
    bus = new_bus()
    b, spy = connect(bus), connect(bus)
    spy.add_match("eavesdrop='true'")
    spy.call(b.unique_name, "OwnCall")
    assert [(x.member, x.sender) for x in spy.received()] == [("OwnCall", spy.unique_name)]
    assert [x.member for x in b.received()] == ["OwnCall"]


@pytest.mark.parametrize("rules", [[], ["type='method_call'"]], ids=["all", "calls only"])
def test_a_new_monitor_gets_name_lost_and_not_its_own_name_owner_changed(
        rules: list[str]) -> None:
    # dbus-daemon 1.14 (checked with jeepney peers): after the reply to BecomeMonitor the
    # new monitor receives NameLost for its unique name whatever its rules, and does not
    # receive the NameOwnerChanged that announces it (other peers and monitors do)
    bus = new_bus()
    old_monitor, watcher = connect(bus, uid=0), connect(bus)
    become_monitor(old_monitor, [])
    watcher.add_match("member='NameOwnerChanged'")
    mon = connect(bus, uid=0)
    old_monitor.received()
    watcher.received()
    serial = mon.call_bus("BecomeMonitor", "asu", (rules, 0),
                          interface="org.freedesktop.DBus.Monitoring")
    got = [(m.TYPE_NAMES[x.type], x.member, x.reply_serial, x.args()) for x in mon.received()]
    assert got == [("method_return", None, serial, []),
                   ("signal", "NameLost", 0, [mon.unique_name])]
    name = mon.unique_name
    assert [x.args() for x in watcher.received()] == [[name, name, ""]]
    assert [x.member for x in old_monitor.received()][-2:] == ["NameLost", "NameOwnerChanged"]
