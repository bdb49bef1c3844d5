"""Per-user usage and bounds: the sums the bus keeps per uid, and what it refuses.

`recount()` below recomputes every uid's usage from the bus's ground truth
(queues, match lists, name queues, expected replies); the tests compare it
with the sums the bus keeps on every path, and a hypothesis state machine
does so after random sequences of connects, matches, names, calls, replies,
signals, queue drains, monitors and disconnects.
"""

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bootbus.bus import names as nm
from bootbus.bus.peer import PeerState
from bootbus.bus.router import Bus
from bootbus.wire import message as m

from .fakebus import Client, connect, new_bus

E = "org.freedesktop.DBus.Error."
ALICE, BOB = 1000, 1001


def recount(bus: Bus) -> dict[int, tuple[int, int, int, int, int, int]]:
    """Per uid: (peers, queued bytes, queued fds, match rules, names, pending replies)."""
    sums: dict[int, list[int]] = {}
    for peer in bus.peers.values():
        row = sums.setdefault(peer.uid, [0] * 6)
        row[0] += 1
        row[1] += sum(frame.size for frame in peer.outq)
        row[2] += sum(len(frame.fds.fds) for frame in peer.outq if frame.fds is not None)
        row[3] += len(peer.matches)
    for queue in bus.registry.queues.values():
        for owner in queue:
            sums[bus.peers[owner.peer].uid][4] += 1
    for (caller, _serial) in bus.pending:
        sums[bus.peers[caller].uid][5] += 1
    return {uid: (row[0], row[1], row[2], row[3], row[4], row[5]) for uid, row in sums.items()}


def kept(bus: Bus) -> dict[int, tuple[int, int, int, int, int, int]]:
    return {uid: usage.totals() for uid, usage in bus.users.items()}


def assert_exact(bus: Bus) -> None:
    assert kept(bus) == recount(bus)
    for peer in bus.peers.values():
        assert peer.user is bus.users[peer.uid]


def ok(client: Client, member: str, signature: str = "", args: tuple[Any, ...] = ()) -> Any:
    answer = client.ask_bus(member, signature, args)
    assert answer.type == m.METHOD_RETURN, answer.args()
    return answer.args()


def error_of(answer: m.Message) -> tuple[str | None, str]:
    assert answer.type == m.ERROR
    return answer.error_name, answer.args()[0]


# -- the sums on each path ----------------------------------------------------------------

def test_match_rules_are_counted_per_user_on_add_remove_and_disconnect() -> None:
    bus = new_bus()
    a1, a2, b = connect(bus, uid=ALICE), connect(bus, uid=ALICE), connect(bus, uid=BOB)
    a1.add_match("type='signal',interface='com.example.A'")
    a2.add_match("type='signal'")
    a2.add_match("type='error'")
    b.add_match("type='signal'")
    assert (bus.users[ALICE].matches, bus.users[BOB].matches) == (3, 1)
    ok(a2, "RemoveMatch", "s", ("type='error'",))
    assert bus.users[ALICE].matches == 2
    bus.remove_peer(a1.peer)
    assert bus.users[ALICE].matches == 1
    assert_exact(bus)


def test_names_are_counted_through_queueing_transfer_and_replacement() -> None:
    bus = new_bus()
    a, b = connect(bus, uid=ALICE), connect(bus, uid=BOB)
    ok(a, "RequestName", "su", ("com.example.N", nm.ALLOW_REPLACEMENT | nm.DO_NOT_QUEUE))
    assert ok(b, "RequestName", "su", ("com.example.N", 0)) == [nm.IN_QUEUE]
    assert (bus.users[ALICE].names, bus.users[BOB].names) == (1, 1)
    # b takes it over; a asked DO_NOT_QUEUE, so it leaves the queue altogether
    assert ok(b, "RequestName", "su", ("com.example.N", nm.REPLACE_EXISTING)) == [
        nm.PRIMARY_OWNER]
    assert (bus.users[ALICE].names, bus.users[BOB].names) == (0, 1)
    ok(a, "RequestName", "su", ("com.example.N", 0))  # queued behind b
    ok(b, "ReleaseName", "s", ("com.example.N",))  # a becomes the owner: no count changes
    assert (bus.users[ALICE].names, bus.users[BOB].names) == (1, 0)
    assert bus.registry.owner("com.example.N") == a.peer.id
    assert ok(b, "RequestName", "su", ("com.example.N", nm.DO_NOT_QUEUE)) == [nm.EXISTS]
    assert bus.users[BOB].names == 0
    assert_exact(bus)
    bus.remove_peer(a.peer)
    assert ALICE not in bus.users
    assert_exact(bus)


def test_pending_replies_are_counted_through_reply_error_and_no_reply() -> None:
    bus = new_bus()
    a, b, c = connect(bus, uid=ALICE), connect(bus, uid=BOB), connect(bus, uid=BOB)
    first = a.call(b.unique_name, "One")
    a.call(b.unique_name, "Two")
    a.call(c.unique_name, "Three")
    a.call(b.unique_name, "Four", flags=m.FLAG_NO_REPLY_EXPECTED)
    assert bus.users[ALICE].replies == 3 and bus.users[BOB].replies == 0
    one, two, _four = b.received()
    b.reply(one)
    assert bus.users[ALICE].replies == 2
    b.error(two, "com.example.Error.Nope")
    assert bus.users[ALICE].replies == 1
    bus.remove_peer(c.peer)  # the callee goes: NoReply
    assert bus.users[ALICE].replies == 0
    assert a.reply_to(first).type == m.METHOD_RETURN
    assert_exact(bus)
    d = connect(bus, uid=BOB)
    d.call(a.unique_name, "Five")
    assert bus.users[BOB].replies == 1
    bus.remove_peer(d.peer)  # the caller goes: its calls are forgotten
    assert bus.users[BOB].replies == 0
    assert_exact(bus)


def test_queued_bytes_and_fds_follow_delivery_drain_and_disconnect() -> None:
    bus = new_bus()
    a, b = connect(bus, uid=ALICE, unix_fd=True), connect(bus, uid=BOB, unix_fd=True)
    a.call(b.unique_name, "TakeFd", "h", (0,), fds=[55], unix_fds=1)
    usage = bus.users[BOB]
    assert usage.out_bytes == b.peer.out_bytes > 0 and usage.out_fds == b.peer.out_fds == 1
    assert_exact(bus)
    b.received()  # written to the socket
    assert (usage.out_bytes, usage.out_fds) == (0, 0)
    a.call(b.unique_name, "TakeFd", "h", (0,), fds=[56], unix_fds=1)
    bus.remove_peer(b.peer)  # its unsent queue is dropped
    assert BOB not in bus.users
    assert_exact(bus)


def test_a_monitor_gives_up_its_matches_and_names() -> None:
    bus = new_bus()
    mon = connect(bus, uid=0)
    mon.add_match("type='signal'")
    ok(mon, "RequestName", "su", ("com.example.M", 0))
    answer = mon.ask_bus("BecomeMonitor", "asu", ([], 0),
                         interface="org.freedesktop.DBus.Monitoring")
    assert answer.type == m.METHOD_RETURN
    assert (bus.users[0].matches, bus.users[0].names) == (0, 0)
    assert_exact(bus)


def test_usage_is_rebuilt_from_the_peers_after_a_restore() -> None:
    bus = new_bus()
    a, b = connect(bus, uid=ALICE), connect(bus, uid=BOB)
    a.add_match("type='signal'")
    ok(b, "RequestName", "su", ("com.example.R", 0))
    a.call(b.unique_name, "Pending")
    before = kept(bus)
    bus.users = {}  # as a restored bus has them: not stored, to be derived
    for peer in bus.peers.values():
        peer.user = type(peer.user).detached()
    bus.rebuild_indexes()
    assert kept(bus) == before == recount(bus)


# -- the per-user bounds -----------------------------------------------------------------

def test_match_rules_over_the_user_bound_are_refused_while_another_user_adds_his() -> None:
    bus = new_bus()
    bus.limits.max_match_rules, bus.limits.max_match_rules_per_user = 3, 5
    a1, a2 = connect(bus, uid=ALICE), connect(bus, uid=ALICE)
    for i in range(3):
        a1.add_match(f"type='signal',member='M{i}'")
    for i in range(2):
        a2.add_match(f"type='signal',member='M{i}'")
    name, text = error_of(a2.ask_bus("AddMatch", "s", ("type='signal',member='X'",)))
    assert name == E + "LimitsExceeded" and "max_match_rules_per_user=5" in text
    b = connect(bus, uid=BOB)
    for i in range(3):
        b.add_match(f"type='signal',member='M{i}'")
    ok(a1, "RemoveMatch", "s", ("type='signal',member='M0'",))
    a2.add_match("type='signal',member='X'")  # a slot came free
    assert_exact(bus)


def test_root_and_the_bus_uid_are_exempt_from_the_user_bounds() -> None:
    bus = new_bus()
    bus.uid = 101
    bus.limits.max_match_rules_per_user = 1
    bus.limits.max_names_per_user = 1
    for uid in (0, 101):
        one, two = connect(bus, uid=uid), connect(bus, uid=uid)
        one.add_match("type='signal'")
        two.add_match("type='signal'")
        ok(one, "RequestName", "su", (f"com.example.U{uid}a", 0))
        ok(two, "RequestName", "su", (f"com.example.U{uid}b", 0))
        assert bus.users[uid].matches == 2  # counted all the same
    assert_exact(bus)


def test_names_over_the_user_bound_are_refused() -> None:
    bus = new_bus()
    bus.limits.max_names_per_user = 2
    a1, a2, b = connect(bus, uid=ALICE), connect(bus, uid=ALICE), connect(bus, uid=BOB)
    ok(a1, "RequestName", "su", ("com.example.A1", 0))
    ok(a2, "RequestName", "su", ("com.example.A2", 0))
    name, text = error_of(a2.ask_bus("RequestName", "su", ("com.example.A3", 0)))
    assert name == E + "LimitsExceeded" and "max_names_per_user=2" in text
    assert ok(a2, "RequestName", "su", ("com.example.A2", 0)) == [nm.ALREADY_OWNER]
    ok(b, "RequestName", "su", ("com.example.A3", 0))
    assert_exact(bus)


def test_pending_replies_over_the_user_bound_are_refused() -> None:
    bus = new_bus()
    bus.limits.max_replies_per_user = 3
    a1, a2, b = connect(bus, uid=ALICE), connect(bus, uid=ALICE), connect(bus, uid=BOB)
    a1.call(b.unique_name, "One")
    a1.call(b.unique_name, "Two")
    a2.call(b.unique_name, "Three")
    serial = a2.call(b.unique_name, "Four")
    name, text = error_of(a2.reply_to(serial))
    assert name == E + "LimitsExceeded" and "max_replies_per_user=3" in text
    assert [c.member for c in b.received()] == ["One", "Two", "Three"]
    a2.call(b.unique_name, "Five", flags=m.FLAG_NO_REPLY_EXPECTED)  # needs no slot
    assert [c.member for c in b.received()] == ["Five"]
    b.call(a1.unique_name, "Back")  # bob's calls count against bob
    assert_exact(bus)


def test_calls_to_a_user_whose_queues_are_full_are_refused() -> None:
    bus = new_bus()
    bus.limits.max_outgoing_bytes_per_user = 600
    a, b1, b2 = connect(bus, uid=ALICE), connect(bus, uid=BOB), connect(bus, uid=BOB)
    c = connect(bus, uid=1002)
    a.call(b1.unique_name, "Fill", "s", ("x" * 400,))
    a.call(b2.unique_name, "Fill", "s", ("x" * 400,))  # each under 600, together over
    serial = a.call(b2.unique_name, "More")
    assert error_of(a.reply_to(serial))[0] == E + "LimitsExceeded"
    a.call(c.unique_name, "Fine")  # another user's peer is served
    assert [x.member for x in c.received()] == ["Fine"]
    assert not bus.doomed
    assert_exact(bus)


def test_signals_past_the_user_bound_disconnect_the_users_slowest_reader() -> None:
    bus = new_bus()
    bus.limits.max_outgoing_bytes_per_user = 1000
    sender = connect(bus, uid=ALICE)
    slow, quick = connect(bus, uid=BOB), connect(bus, uid=BOB)
    other = connect(bus, uid=1002)
    for peer in (slow, quick, other):
        peer.add_match("type='signal',interface='com.example.I'")
    sender.signal(signature="s", args=("x" * 300,))  # ~420 bytes queued for each
    quick.received()
    other.received()
    assert not bus.doomed
    sender.signal(signature="s", args=("x" * 300,))  # bob: ~1260 bytes, over the bound
    assert list(bus.doomed) == [slow.peer]  # the one holding most, not the last recipient
    assert "uid 1001" in bus.doomed[slow.peer]
    sender.signal(signature="s", args=("x" * 300,))  # one at a time: slow goes first
    assert list(bus.doomed) == [slow.peer]
    bus.remove_peer(slow.peer)
    assert [s.member for s in quick.received()] == ["Changed", "Changed"]
    assert [s.member for s in other.received()] == ["Changed", "Changed"]
    assert_exact(bus)


def test_the_user_bound_on_queued_fds() -> None:
    bus = new_bus()
    bus.limits.max_outgoing_fds_per_user = 2
    a = connect(bus, uid=ALICE, unix_fd=True)
    b1, b2 = connect(bus, uid=BOB, unix_fd=True), connect(bus, uid=BOB, unix_fd=True)
    a.call(b1.unique_name, "TakeFd", "h", (0,), fds=[50], unix_fds=1)
    a.call(b2.unique_name, "TakeFd", "h", (0,), fds=[51], unix_fds=1)
    serial = a.call(b2.unique_name, "TakeFd", "h", (0,), fds=[52], unix_fds=1)
    assert error_of(a.reply_to(serial))[0] == E + "LimitsExceeded"
    assert 52 in bus.fds_to_close  # the refused message's fd is closed, not queued
    assert_exact(bus)


def test_a_reloaded_lower_bound_keeps_what_peers_hold() -> None:
    bus = new_bus()
    a = connect(bus, uid=ALICE)
    for i in range(4):
        a.add_match(f"member='M{i}'")
    bus.limits.max_match_rules_per_user = 2  # as a reload would set it
    assert len(a.peer.matches) == 4
    assert error_of(a.ask_bus("AddMatch", "s", ("member='X'",)))[0] == E + "LimitsExceeded"
    assert_exact(bus)


# -- the property: after any sequence the sums are exact ------------------------------

UIDS = (0, ALICE, BOB)
NAMES = ("com.example.A", "com.example.B", "com.example.C")
RULES = ("type='signal'", "type='signal',member='Changed'", "interface='com.example.I'")


class UsageMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.bus = new_bus()
        self.bus.limits.max_match_rules_per_user = 4  # small bounds, so refusals happen too
        self.bus.limits.max_names_per_user = 2
        self.bus.limits.max_replies_per_user = 3
        self.bus.limits.max_outgoing_bytes_per_user = 3000
        self.clients: list[Client] = []
        self.calls: list[tuple[Client, m.Message]] = []

    def _active(self) -> list[Client]:
        return [c for c in self.clients
                if c.peer.id in self.bus.peers and c.peer.state is PeerState.ACTIVE]

    def _settle(self) -> None:
        """What the io layer does after each batch: doomed peers are disconnected."""
        while self.bus.doomed:
            peer, _reason = self.bus.doomed.popitem()
            self.bus.remove_peer(peer)
        self.bus.fds_to_close.clear()

    @rule(uid=st.sampled_from(UIDS), fds=st.booleans())
    def connect(self, uid: int, fds: bool) -> None:
        if len(self.clients) < 8:
            self.clients.append(connect(self.bus, uid=uid, unix_fd=fds))

    @precondition(lambda self: bool(self._active()))
    @rule(data=st.data(), rule_text=st.sampled_from(RULES), add=st.booleans())
    def match(self, data: st.DataObject, rule_text: str, add: bool) -> None:
        client = data.draw(st.sampled_from(self._active()))
        client.call_bus("AddMatch" if add else "RemoveMatch", "s", (rule_text,))

    @precondition(lambda self: bool(self._active()))
    @rule(data=st.data(), name=st.sampled_from(NAMES), flags=st.integers(0, 7),
          release=st.booleans())
    def name(self, data: st.DataObject, name: str, flags: int, release: bool) -> None:
        client = data.draw(st.sampled_from(self._active()))
        if release:
            client.call_bus("ReleaseName", "s", (name,))
        else:
            client.call_bus("RequestName", "su", (name, flags))

    @precondition(lambda self: len(self._active()) >= 2)
    @rule(data=st.data(), no_reply=st.booleans(), big=st.booleans(), fd=st.booleans())
    def call(self, data: st.DataObject, no_reply: bool, big: bool, fd: bool) -> None:
        caller, callee = data.draw(st.permutations(self._active()))[:2]
        flags = m.FLAG_NO_REPLY_EXPECTED if no_reply else 0
        if fd and caller.peer.unix_fd:
            caller.call(callee.unique_name, "Fd", "h", (0,), flags=flags, fds=[90], unix_fds=1)
        else:
            caller.call(callee.unique_name, "Do", "s", ("x" * (900 if big else 10),),
                        flags=flags)
        self._settle()

    @precondition(lambda self: bool(self._active()))
    @rule(data=st.data(), error=st.booleans())
    def answer(self, data: st.DataObject, error: bool) -> None:
        callee = data.draw(st.sampled_from(self._active()))
        self.calls.extend((callee, msg) for msg in callee.received()
                          if msg.type == m.METHOD_CALL and not msg.flags
                          & m.FLAG_NO_REPLY_EXPECTED)
        mine = [(c, msg) for c, msg in self.calls if c is callee]
        if mine:
            _, call = mine[0]
            self.calls.remove(mine[0])
            if error:
                callee.error(call, "com.example.Error.No")
            else:
                callee.reply(call)
        self._settle()

    @precondition(lambda self: bool(self._active()))
    @rule(data=st.data(), big=st.booleans())
    def signal(self, data: st.DataObject, big: bool) -> None:
        sender = data.draw(st.sampled_from(self._active()))
        sender.signal(signature="s", args=("y" * (1200 if big else 5),))
        self._settle()

    @precondition(lambda self: bool(self._active()))
    @rule(data=st.data())
    def drain(self, data: st.DataObject) -> None:
        data.draw(st.sampled_from(self._active())).received()

    @precondition(lambda self: bool(self.clients))
    @rule(data=st.data())
    def disconnect(self, data: st.DataObject) -> None:
        client = data.draw(st.sampled_from(self.clients))
        self.clients.remove(client)
        self.calls = [(c, msg) for c, msg in self.calls if c is not client]
        self.bus.remove_peer(client.peer)
        self._settle()

    @precondition(lambda self: any(c.peer.uid == 0 for c in self._active()))
    @rule(data=st.data())
    def monitor(self, data: st.DataObject) -> None:
        client = data.draw(st.sampled_from([c for c in self._active() if c.peer.uid == 0]))
        client.ask_bus("BecomeMonitor", "asu", ([], 0),
                       interface="org.freedesktop.DBus.Monitoring")

    @invariant()
    def sums_are_exact(self) -> None:
        assert_exact(self.bus)


TestUsageMachine = UsageMachine.TestCase
TestUsageMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None,
                                     database=None)
