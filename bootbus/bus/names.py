"""Well-known names and their owner queues, with dbus-daemon's semantics.

Owns: who is the primary owner of each well-known name, who waits in its
queue and with which flags, and which ownership changes a request causes.
Returns the changes as events; it never builds messages and never knows about
connections beyond an integer peer id.

Rules it keeps (from dbus-daemon's bus/services.c and the specification):
  * a queue's head is the primary owner; a name with an empty queue does not exist;
  * REPLACE_EXISTING takes over only if the primary owner allowed replacement;
    the new owner is put second, then swapped in; the old owner stays second
    unless it asked DO_NOT_QUEUE, in which case it leaves the queue;
  * a queued owner asking REPLACE_EXISTING again moves to second place;
  * DO_NOT_QUEUE that cannot own right away answers EXISTS and leaves the queue;
  * events come in dbus-daemon's order: NameLost to the old owner,
    NameOwnerChanged, NameAcquired to the new owner.
"""

from ..plain import Fields
from ..wire.names import is_bus_name

ALLOW_REPLACEMENT = 0x1
REPLACE_EXISTING = 0x2
DO_NOT_QUEUE = 0x4
FLAGS_MASK = 0x7

PRIMARY_OWNER = 1
IN_QUEUE = 2
EXISTS = 3
ALREADY_OWNER = 4

RELEASED = 1
NON_EXISTENT = 2
NOT_OWNER = 3

BUS_NAME = "org.freedesktop.DBus"

# Events: ("lost", peer, name), ("acquired", peer, name), ("changed", name, old, new)
# where old/new are peer ids or None.
PeerEvent = tuple[str, int, str]
ChangeEvent = tuple[str, str, int | None, int | None]
Event = PeerEvent | ChangeEvent


class NameError(Exception):
    """A request names something that cannot be owned or released."""


class Owner(Fields):
    """One entry of a name's queue: a peer id and the flags it asked with."""

    __slots__ = _fields = ("peer", "flags")

    def __init__(self, peer: int, flags: int) -> None:
        self.peer = peer
        self.flags = flags


class NameRegistry:
    def __init__(self, queues: dict[str, list[Owner]] | None = None,
                 by_peer: dict[int, set[str]] | None = None) -> None:
        self.queues: dict[str, list[Owner]] = {} if queues is None else queues
        self.by_peer: dict[int, set[str]] = {} if by_peer is None else by_peer  # derived index

    def owner(self, name: str) -> int | None:
        queue = self.queues.get(name)
        return queue[0].peer if queue else None

    def names_of(self, peer: int) -> set[str]:
        return self.by_peer.get(peer, set())

    def primary_names_of(self, peer: int) -> list[str]:
        return [n for n in self.names_of(peer) if self.queues[n][0].peer == peer]

    def queued(self, name: str) -> list[int]:
        return [o.peer for o in self.queues.get(name, ())]

    def request(self, peer: int, name: str, flags: int) -> tuple[int, list[Event]]:
        _check_ownable(name, "acquire")
        flags &= FLAGS_MASK
        queue = self.queues.get(name)
        events: list[Event] = []
        if not queue:
            self.queues[name] = [Owner(peer, flags)]
            self.by_peer.setdefault(peer, set()).add(name)
            events.append(("changed", name, None, peer))
            events.append(("acquired", peer, name))
            return PRIMARY_OWNER, events
        primary = queue[0]
        if primary.peer == peer:
            primary.flags = flags
            return ALREADY_OWNER, events
        allow = bool(primary.flags & ALLOW_REPLACEMENT)
        if flags & DO_NOT_QUEUE and not (allow and flags & REPLACE_EXISTING):
            self._unlink(name, peer)
            return EXISTS, events
        if not (flags & REPLACE_EXISTING) or not allow:
            self._enqueue(name, peer, flags)
            return IN_QUEUE, events
        self._enqueue(name, peer, flags)
        events.append(("lost", primary.peer, name))
        events.append(("changed", name, primary.peer, peer))
        events.append(("acquired", peer, name))
        queue = self.queues[name]
        old = queue.pop(0)
        if old.flags & DO_NOT_QUEUE:
            self.by_peer[old.peer].discard(name)
        else:
            queue.insert(1, old)
        return PRIMARY_OWNER, events

    def release(self, peer: int, name: str) -> tuple[int, list[Event]]:
        _check_ownable(name, "release")
        queue = self.queues.get(name)
        if not queue:
            return NON_EXISTENT, []
        if not any(o.peer == peer for o in queue):
            return NOT_OWNER, []
        return RELEASED, self._remove(name, peer)

    def remove_peer(self, peer: int) -> list[Event]:
        """Drop every name and queue place of a disconnecting peer."""
        events: list[Event] = []
        for name in sorted(self.by_peer.get(peer, ())):
            events.extend(self._remove(name, peer))
        self.by_peer.pop(peer, None)
        return events

    def _enqueue(self, name: str, peer: int, flags: int) -> None:
        queue = self.queues[name]
        for index, owner in enumerate(queue):
            if owner.peer == peer:
                owner.flags = flags
                if flags & REPLACE_EXISTING:
                    queue.insert(1, queue.pop(index))
                return
        owner = Owner(peer, flags)
        if flags & REPLACE_EXISTING:
            queue.insert(1, owner)
        else:
            queue.append(owner)
        self.by_peer.setdefault(peer, set()).add(name)

    def _unlink(self, name: str, peer: int) -> None:
        queue = self.queues[name]
        queue[:] = [o for o in queue if o.peer != peer]
        self.by_peer.get(peer, set()).discard(name)

    def _remove(self, name: str, peer: int) -> list[Event]:
        queue = self.queues[name]
        if queue[0].peer != peer:
            self._unlink(name, peer)
            return []
        events: list[Event] = [("lost", peer, name)]
        queue.pop(0)
        self.by_peer.get(peer, set()).discard(name)
        if queue:
            events.append(("changed", name, peer, queue[0].peer))
            events.append(("acquired", queue[0].peer, name))
        else:
            events.append(("changed", name, peer, None))
            del self.queues[name]
        return events

    def rebuild_index(self) -> None:
        self.by_peer = {}
        for name, queue in self.queues.items():
            for owner in queue:
                self.by_peer.setdefault(owner.peer, set()).add(name)


def _check_ownable(name: str, verb: str) -> None:
    if not is_bus_name(name):
        raise NameError(f'{"Requested" if verb == "acquire" else "Given"} bus name "{name}" '
                        "is not valid")
    if name.startswith(":"):
        raise NameError(f"Cannot {verb} a service starting with ':' such as \"{name}\"")
    if name == BUS_NAME:
        if verb == "acquire":
            raise NameError(f'Connection is not allowed to own the service "{BUS_NAME}" '
                            "because it is reserved for D-Bus' use only")
        raise NameError(f"Cannot release the {BUS_NAME} service because it is owned by the bus")
