"""Name queues with three owners: replies and signals, step by step.

Three connections A, B and C compete for one name while an observer watches
NameOwnerChanged for it. After every step all four connections round-trip to
the driver, so the log holds every signal the step caused, per connection,
before the next step starts. The log must equal EXPECTED on every bus.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from jeepney import MessageType

from .peers import DRIVER, Peer, error_name, member

NAME = "com.example.Queue"
ALLOW_REPLACEMENT, REPLACE_EXISTING, DO_NOT_QUEUE = 1, 2, 4
PRIMARY_OWNER, IN_QUEUE, EXISTS, ALREADY_OWNER = 1, 2, 3, 4
RELEASED, NON_EXISTENT, NOT_OWNER = 1, 2, 3


class QueueLog:
    """Runs driver calls for labelled peers and logs replies and signals."""

    def __init__(self, owners: dict[str, Peer], observer: Peer) -> None:
        self.owners = dict(owners)
        self.observer = observer
        self.labels = {p.unique_name: label for label, p in owners.items()}
        self.labels[""] = "-"
        self.log: list[tuple[Any, ...]] = []
        observer.add_match(
            f"type='signal',sender='{DRIVER}',interface='{DRIVER}',"
            f"member='NameOwnerChanged',arg0='{NAME}'"
        )

    def request(self, who: str, flags: int) -> None:
        self._call(who, "RequestName", "su", (NAME, flags))

    def release(self, who: str) -> None:
        self._call(who, "ReleaseName", "s", (NAME,))

    def queue(self, who: str) -> None:
        self._call(who, "ListQueuedOwners", "s", (NAME,))

    def disconnect(self, who: str) -> None:
        self.owners.pop(who).close()
        self.log.append((who, "disconnect"))
        self._collect()

    def _call(self, who: str, method: str, sig: str, args: tuple[Any, ...]) -> None:
        reply = self.owners[who].driver(method, sig, args)
        if reply.header.message_type is MessageType.error:
            result: Any = error_name(reply)
        elif method == "ListQueuedOwners":
            result = [self.labels[name] for name in reply.body[0]]
        else:
            (result,) = reply.body
        self.log.append((who, method, *args[1:], result))
        self._collect()

    def _collect(self) -> None:
        for peer in self.owners.values():
            peer.barrier()
        self.observer.barrier()
        for label, peer in sorted(self.owners.items()):
            for sig in peer.signals():
                if member(sig) in ("NameAcquired", "NameLost") and sig.body == (NAME,):
                    self.log.append((f"  {label} gets", member(sig)))
        for sig in self.observer.signals("NameOwnerChanged"):
            _name, old, new = sig.body
            self.log.append(("  NameOwnerChanged", self.labels[old], self.labels[new]))


def _owner_change(old: str, new: str) -> tuple[str, str, str]:
    return ("  NameOwnerChanged", old, new)


# Checked against dbus-daemon 1.14 and the specification's RequestName table.
EXPECTED: list[tuple[Any, ...]] = [
    ("A", "RequestName", ALLOW_REPLACEMENT, PRIMARY_OWNER),
    ("  A gets", "NameAcquired"),
    _owner_change("-", "A"),
    ("A", "RequestName", ALLOW_REPLACEMENT, ALREADY_OWNER),
    ("B", "RequestName", DO_NOT_QUEUE, EXISTS),
    ("B", "RequestName", 0, IN_QUEUE),
    ("C", "RequestName", 0, IN_QUEUE),
    ("C", "ListQueuedOwners", ["A", "B", "C"]),
    # A queued connection asking again with DO_NOT_QUEUE leaves the queue.
    ("C", "RequestName", DO_NOT_QUEUE, EXISTS),
    ("C", "ListQueuedOwners", ["A", "B"]),
    ("C", "RequestName", 0, IN_QUEUE),
    # A allowed replacement and did not say DO_NOT_QUEUE: B takes over, A goes
    # back to the head of the waiting queue.
    ("B", "RequestName", REPLACE_EXISTING, PRIMARY_OWNER),
    ("  A gets", "NameLost"),
    ("  B gets", "NameAcquired"),
    _owner_change("A", "B"),
    ("A", "ListQueuedOwners", ["B", "A", "C"]),
    # B did not allow replacement: C just stays queued.
    ("C", "RequestName", REPLACE_EXISTING, IN_QUEUE),
    ("A", "ReleaseName", RELEASED),
    ("A", "ReleaseName", NOT_OWNER),
    ("A", "ListQueuedOwners", ["B", "C"]),
    # The owner releases: the head of the queue gets the name.
    ("B", "ReleaseName", RELEASED),
    ("  B gets", "NameLost"),
    ("  C gets", "NameAcquired"),
    _owner_change("B", "C"),
    ("B", "RequestName", DO_NOT_QUEUE, EXISTS),
    # The owner asking again updates its flags...
    ("C", "RequestName", ALLOW_REPLACEMENT | DO_NOT_QUEUE, ALREADY_OWNER),
    # ...so A may replace it, and C (DO_NOT_QUEUE) loses the name altogether.
    ("A", "RequestName", REPLACE_EXISTING, PRIMARY_OWNER),
    ("  A gets", "NameAcquired"),
    ("  C gets", "NameLost"),
    _owner_change("C", "A"),
    ("A", "ListQueuedOwners", ["A"]),
    ("B", "RequestName", 0, IN_QUEUE),
    ("B", "ListQueuedOwners", ["A", "B"]),
    # Handover when the owner disconnects.
    ("A", "disconnect"),
    ("  B gets", "NameAcquired"),
    _owner_change("A", "B"),
    ("B", "ListQueuedOwners", ["B"]),
    ("B", "ReleaseName", RELEASED),
    ("  B gets", "NameLost"),
    _owner_change("B", "-"),
    ("C", "ReleaseName", NON_EXISTENT),
    ("C", "ListQueuedOwners", "org.freedesktop.DBus.Error.NameHasNoOwner"),
]


def test_three_owners(connect: Callable[..., Peer]) -> None:
    owners = {"A": connect(), "B": connect(), "C": connect()}
    q = QueueLog(owners, connect())

    q.request("A", ALLOW_REPLACEMENT)
    q.request("A", ALLOW_REPLACEMENT)
    q.request("B", DO_NOT_QUEUE)
    q.request("B", 0)
    q.request("C", 0)
    q.queue("C")
    q.request("C", DO_NOT_QUEUE)
    q.queue("C")
    q.request("C", 0)
    q.request("B", REPLACE_EXISTING)
    q.queue("A")
    q.request("C", REPLACE_EXISTING)
    q.release("A")
    q.release("A")
    q.queue("A")
    q.release("B")
    q.request("B", DO_NOT_QUEUE)
    q.request("C", ALLOW_REPLACEMENT | DO_NOT_QUEUE)
    q.request("A", REPLACE_EXISTING)
    q.queue("A")
    q.request("B", 0)
    q.queue("B")
    q.disconnect("A")
    q.queue("B")
    q.release("B")
    q.release("C")
    q.queue("C")

    assert q.log == EXPECTED, "\n".join(difflib.unified_diff(
        [repr(e) for e in EXPECTED], [repr(e) for e in q.log], "expected", "got", lineterm=""))
