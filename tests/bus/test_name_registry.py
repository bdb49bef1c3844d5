"""The name registry against dbus-daemon's queue semantics.

`ReferenceRegistry` below is a direct, deliberately naive transcription of
dbus-daemon 1.14's bus/services.c (bus_registry_acquire_service,
bus_service_add_owner, bus_service_swap_owner, bus_service_remove_owner,
bus_registry_release_service), kept in this file only. A hypothesis state
machine drives both with random RequestName/ReleaseName/disconnect sequences
and compares replies, queues (order and flags) and the signals each step emits.
"""

from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bootbus.bus import names as nm

ALLOW, REPLACE, DNQ = nm.ALLOW_REPLACEMENT, nm.REPLACE_EXISTING, nm.DO_NOT_QUEUE


@dataclass
class RefOwner:
    peer: int
    allow_replacement: bool
    do_not_queue: bool


def _owner(peer: int, flags: int) -> RefOwner:
    return RefOwner(peer, bool(flags & ALLOW), bool(flags & DNQ))


@dataclass
class ReferenceRegistry:
    """bus/services.c, statement by statement; events in the order it sends them."""

    services: dict[str, list[RefOwner]] = field(default_factory=dict)
    events: list[tuple] = field(default_factory=list)

    def acquire(self, peer: int, name: str, flags: int) -> int:
        owners = self.services.get(name)
        old_owner = owners[0].peer if owners else None
        if owners is None:  # bus_registry_ensure: NameOwnerChanged, then add_owner
            self.events.append(("changed", name, None, peer))
            self.services[name] = owners = []
            self._add_owner(name, peer, flags)
        primary = owners[0]
        if old_owner is None:
            return nm.PRIMARY_OWNER
        if old_owner == peer:
            primary.allow_replacement = bool(flags & ALLOW)
            primary.do_not_queue = bool(flags & DNQ)
            return nm.ALREADY_OWNER
        allow = primary.allow_replacement
        if (flags & DNQ and not allow) or (flags & DNQ and not flags & REPLACE):
            owners[:] = [o for o in owners if o.peer != peer]
            return nm.EXISTS
        if not flags & DNQ and (not flags & REPLACE or not allow):
            self._add_owner(name, peer, flags)
            return nm.IN_QUEUE
        self._add_owner(name, peer, flags)
        if primary.do_not_queue:
            self._remove_owner(name, old_owner)
        else:
            self._swap_owner(name, old_owner)
        return nm.PRIMARY_OWNER

    def release(self, peer: int, name: str) -> int:
        owners = self.services.get(name)
        if owners is None:
            return nm.NON_EXISTENT
        if not any(o.peer == peer for o in owners):
            return nm.NOT_OWNER
        self._remove_owner(name, peer)
        return nm.RELEASED

    def disconnect(self, peer: int) -> None:
        for name in sorted(self.services):
            if any(o.peer == peer for o in self.services[name]):
                self._remove_owner(name, peer)

    def _add_owner(self, name: str, peer: int, flags: int) -> None:
        owners = self.services[name]
        if not owners:
            self.events.append(("acquired", peer, name))
        existing = next((o for o in owners if o.peer == peer), None)
        if existing is None:
            if not flags & REPLACE or not owners:
                owners.append(_owner(peer, flags))
            else:
                owners.insert(1, _owner(peer, flags))
            return
        if flags & REPLACE:
            owners.remove(existing)
            owners.insert(1, existing)
        existing.allow_replacement = bool(flags & ALLOW)
        existing.do_not_queue = bool(flags & DNQ)

    def _swap_owner(self, name: str, peer: int) -> None:
        owners = self.services[name]
        self.events.append(("lost", peer, name))
        self.events.append(("changed", name, peer, owners[1].peer))
        self.events.append(("acquired", owners[1].peer, name))
        owners.insert(1, owners.pop(0))

    def _remove_owner(self, name: str, peer: int) -> None:
        owners = self.services[name]
        if owners[0].peer != peer:
            owners[:] = [o for o in owners if o.peer != peer]
            return
        self.events.append(("lost", peer, name))
        if len(owners) == 1:
            self.events.append(("changed", name, peer, None))
        else:
            self.events.append(("changed", name, peer, owners[1].peer))
            self.events.append(("acquired", owners[1].peer, name))
        owners.pop(0)
        if not owners:
            del self.services[name]


def _queues(registry: nm.NameRegistry) -> dict[str, list[tuple[int, bool, bool]]]:
    return {name: [(o.peer, bool(o.flags & ALLOW), bool(o.flags & DNQ)) for o in queue]
            for name, queue in registry.queues.items()}


def _ref_queues(ref: ReferenceRegistry) -> dict[str, list[tuple[int, bool, bool]]]:
    return {name: [(o.peer, o.allow_replacement, o.do_not_queue) for o in owners]
            for name, owners in ref.services.items()}


PEERS = st.integers(1, 4)
NAMES = st.sampled_from(["com.example.A", "com.example.B", "org.x-y.C"])
FLAGS = st.integers(0, 15)  # 8 is not a flag: it must be ignored


class NameQueues(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.registry = nm.NameRegistry()
        self.ref = ReferenceRegistry()

    @rule(peer=PEERS, name=NAMES, flags=FLAGS)
    def request_name(self, peer: int, name: str, flags: int) -> None:
        self.ref.events = []
        expected = self.ref.acquire(peer, name, flags)
        result, events = self.registry.request(peer, name, flags)
        assert (result, events) == (expected, self.ref.events)

    @rule(peer=PEERS, name=NAMES)
    def release_name(self, peer: int, name: str) -> None:
        self.ref.events = []
        expected = self.ref.release(peer, name)
        result, events = self.registry.release(peer, name)
        assert (result, events) == (expected, self.ref.events)

    @rule(peer=PEERS)
    def disconnect(self, peer: int) -> None:
        self.ref.events = []
        self.ref.disconnect(peer)
        events = self.registry.remove_peer(peer)
        # dbus-daemon walks the peer's names in its own list order; compare per name
        assert _by_name(events) == _by_name(self.ref.events)

    @invariant()
    def same_queues(self) -> None:
        assert _queues(self.registry) == _ref_queues(self.ref)

    @invariant()
    def index_matches_queues(self) -> None:
        for peer in range(1, 5):
            held = {n for n, q in self.registry.queues.items() if any(o.peer == peer for o in q)}
            assert self.registry.names_of(peer) == held
            assert sorted(self.registry.primary_names_of(peer)) == sorted(
                n for n, q in self.registry.queues.items() if q[0].peer == peer)
        for name, queue in self.registry.queues.items():
            assert queue, "a name with an empty queue must not exist"
            assert len({o.peer for o in queue}) == len(queue), "a peer queued twice"
            assert self.registry.owner(name) == queue[0].peer
            assert self.registry.queued(name) == [o.peer for o in queue]

    @invariant()
    def rebuilt_index_is_the_same(self) -> None:
        copy = nm.NameRegistry(queues=self.registry.queues)
        copy.rebuild_index()
        for peer in range(1, 5):
            assert copy.names_of(peer) == self.registry.names_of(peer)


def _by_name(events: list) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for event in events:
        name = event[1] if event[0] == "changed" else event[2]
        grouped.setdefault(name, []).append(event)
    return grouped


TestNameQueues = NameQueues.TestCase
TestNameQueues.settings = settings(max_examples=200, stateful_step_count=30, deadline=None,
                                   database=None)


# -- a few sequences written out, as in the specification's RequestName section ------------

def test_three_owners_queue_in_request_order() -> None:
    reg = nm.NameRegistry()
    assert reg.request(1, "com.example.N", 0) == (
        nm.PRIMARY_OWNER, [("changed", "com.example.N", None, 1), ("acquired", 1, "com.example.N")])
    assert reg.request(2, "com.example.N", 0) == (nm.IN_QUEUE, [])
    assert reg.request(3, "com.example.N", 0) == (nm.IN_QUEUE, [])
    assert reg.queued("com.example.N") == [1, 2, 3]
    assert reg.release(1, "com.example.N") == (nm.RELEASED, [
        ("lost", 1, "com.example.N"), ("changed", "com.example.N", 1, 2),
        ("acquired", 2, "com.example.N")])
    assert reg.release(3, "com.example.N") == (nm.RELEASED, [])  # queued, not primary
    assert reg.queued("com.example.N") == [2]
    assert reg.release(2, "com.example.N") == (nm.RELEASED, [
        ("lost", 2, "com.example.N"), ("changed", "com.example.N", 2, None)])
    assert reg.owner("com.example.N") is None and "com.example.N" not in reg.queues
    assert reg.release(2, "com.example.N") == (nm.NON_EXISTENT, [])


def test_replace_existing_needs_allow_replacement() -> None:
    reg = nm.NameRegistry()
    reg.request(1, "a.b", 0)
    assert reg.request(2, "a.b", REPLACE) == (nm.IN_QUEUE, [])
    assert reg.request(3, "a.b", REPLACE | DNQ) == (nm.EXISTS, [])
    assert reg.queued("a.b") == [1, 2]
    assert reg.request(1, "a.b", ALLOW) == (nm.ALREADY_OWNER, [])
    assert reg.request(3, "a.b", REPLACE) == (nm.PRIMARY_OWNER, [
        ("lost", 1, "a.b"), ("changed", "a.b", 1, 3), ("acquired", 3, "a.b")])
    assert reg.queued("a.b") == [3, 1, 2]  # the old owner waits second


def test_a_replaced_do_not_queue_owner_leaves_the_queue() -> None:
    reg = nm.NameRegistry()
    reg.request(1, "a.b", ALLOW | DNQ)
    reg.request(2, "a.b", 0)
    assert reg.request(3, "a.b", REPLACE) == (nm.PRIMARY_OWNER, [
        ("lost", 1, "a.b"), ("changed", "a.b", 1, 3), ("acquired", 3, "a.b")])
    assert reg.queued("a.b") == [3, 2]
    assert reg.names_of(1) == set()


def test_do_not_queue_when_already_queued_leaves_the_queue() -> None:
    reg = nm.NameRegistry()
    reg.request(1, "a.b", 0)
    reg.request(2, "a.b", 0)
    assert reg.request(2, "a.b", DNQ) == (nm.EXISTS, [])
    assert reg.queued("a.b") == [1] and reg.names_of(2) == set()


def test_release_by_a_stranger() -> None:
    reg = nm.NameRegistry()
    reg.request(1, "a.b", 0)
    assert reg.release(2, "a.b") == (nm.NOT_OWNER, [])


def test_disconnect_drops_every_place() -> None:
    reg = nm.NameRegistry()
    reg.request(1, "a.x", 0)
    reg.request(2, "a.x", 0)
    reg.request(2, "a.y", 0)
    reg.request(1, "a.y", 0)
    events = reg.remove_peer(1)
    assert sorted(events, key=repr) == sorted([
        ("lost", 1, "a.x"), ("changed", "a.x", 1, 2), ("acquired", 2, "a.x")], key=repr)
    assert reg.queued("a.x") == [2] and reg.queued("a.y") == [2]
    assert reg.names_of(1) == set()


@pytest.mark.parametrize(("name", "verb", "text"), [
    (":1.5", "request", "Cannot acquire a service starting with ':' such as \":1.5\""),
    (":1.5", "release", "Cannot release a service starting with ':' such as \":1.5\""),
    ("org.freedesktop.DBus", "request",
     ("Connection is not allowed to own the service \"org.freedesktop.DBus\" because it is "
      "reserved for D-Bus' use only")),
    ("org.freedesktop.DBus", "release",
     "Cannot release the org.freedesktop.DBus service because it is owned by the bus"),
    ("nodots", "request", "Requested bus name \"nodots\" is not valid"),
    ("a..b", "release", "Given bus name \"a..b\" is not valid"),
])
def test_names_that_cannot_be_owned(name: str, verb: str, text: str) -> None:
    reg = nm.NameRegistry()
    with pytest.raises(nm.NameError) as info:
        if verb == "request":
            reg.request(1, name, 0)
        else:
            reg.release(1, name)
    assert str(info.value) == text
    assert reg.queues == {}


@pytest.mark.parametrize("queued_before", [False, True], ids=["new", "already-queued"])
@pytest.mark.parametrize("requester", range(8))
@pytest.mark.parametrize("primary", range(8))
def test_every_flag_combination_against_the_reference(primary: int, requester: int,
                                                      queued_before: bool) -> None:
    # peer 1 owns the name with `primary` flags, peer 3 waits in the queue, and peer 2
    # (new, or queued before peer 3) asks with `requester` flags
    reg, ref = nm.NameRegistry(), ReferenceRegistry()
    setup = [(1, primary)] + ([(2, 0)] if queued_before else []) + [(3, 0)]
    for peer, flags in setup:
        assert reg.request(peer, "a.b", flags)[0] == ref.acquire(peer, "a.b", flags)
    ref.events = []
    assert reg.request(2, "a.b", requester) == (ref.acquire(2, "a.b", requester), ref.events)
    assert _queues(reg) == _ref_queues(ref)
    ref.events = []
    assert reg.release(1, "a.b") == (ref.release(1, "a.b"), ref.events)
    assert _queues(reg) == _ref_queues(ref)
