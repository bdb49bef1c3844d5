"""Match rules decide which broadcast signals a subscriber gets.

Each test adds rules on a subscriber, has an emitter send labelled signals
(the label is the last string argument), and compares the labels delivered
with the ones the rule must select. Before reading, the emitter and then the
subscriber round-trip to the driver: the bus has routed every signal, and the
subscriber has read everything routed to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from jeepney import DBusAddress, HeaderFields, Message, new_signal

from .peers import Peer

IFACE = "com.example.Match"


def sig(label: str, *, path: str = "/com/example/m", member: str = "Sig",
        args: Sequence[Any] = (), signature: str | None = None,
        interface: str = IFACE, destination: str | None = None) -> Message:
    types = ("s" * len(args) if signature is None else signature) + "s"
    msg = new_signal(DBusAddress(path, interface=interface), member, types, (*args, label))
    if destination is not None:
        msg.header.fields[HeaderFields.destination] = destination
    return msg


def delivered(emitter: Peer, subscriber: Peer, signals: Sequence[Message]) -> list[str]:
    for msg in signals:
        emitter.send(msg)
    emitter.barrier()
    subscriber.barrier()
    return [str(m.body[-1]) for m in subscriber.signals()
            if m.header.fields.get(HeaderFields.interface) == IFACE]


# (rule, signals to send, labels the rule must let through, in order)
CASES: dict[str, tuple[str, list[Message], list[str]]] = {
    "arg0": (f"type='signal',interface='{IFACE}',arg0='x'", [
        sig("yes", args=["x"]), sig("other", args=["y"]), sig("longer", args=["xx"]),
        sig("prefix", args=["x.y"]), sig("not-string", args=[7], signature="u"),
        sig("no-args"), sig("yes-again", args=["x", "z"]),
    ], ["yes", "yes-again"]),
    "arg1-and-arg0": ("type='signal',arg0='a',arg1='b'", [
        sig("both", args=["a", "b"]), sig("first-only", args=["a", "c"]),
        sig("second-only", args=["c", "b"]),
    ], ["both"]),
    "path": ("type='signal',path='/com/example/exact'", [
        sig("yes", path="/com/example/exact"), sig("child", path="/com/example/exact/x"),
        sig("other", path="/com/example"),
    ], ["yes"]),
    "path_namespace": ("type='signal',path_namespace='/com/example'", [
        sig("itself", path="/com/example"), sig("child", path="/com/example/sub/deeper"),
        sig("sibling-prefix", path="/com/examples"), sig("parent", path="/com"),
    ], ["itself", "child"]),
    "path_namespace-root": ("type='signal',path_namespace='/'", [
        sig("any", path="/x/y"), sig("root", path="/"),
    ], ["any", "root"]),
    "arg0namespace": ("type='signal',arg0namespace='com.example'", [
        sig("itself", args=["com.example"]), sig("child", args=["com.example.Foo.Bar"]),
        sig("sibling-prefix", args=["com.examples"]), sig("parent", args=["com"]),
        sig("not-string", args=[1], signature="u"),
    ], ["itself", "child"]),
    "arg0path": ("type='signal',arg0path='/aa/bb/'", [
        sig("itself", args=["/aa/bb/"]), sig("below", args=["/aa/bb/cc"]),
        sig("ancestor-dir", args=["/aa/"]), sig("root", args=["/"]),
        sig("no-slash", args=["/aa/bb"]), sig("sibling", args=["/aa/bc/"]),
        sig("object-path", args=["/aa/bb/cc"], signature="o"),
    ], ["itself", "below", "ancestor-dir", "root", "object-path"]),
    "member": (f"type='signal',interface='{IFACE}',member='Wanted'", [
        sig("yes", member="Wanted"), sig("no", member="Unwanted"),
    ], ["yes"]),
    "interface": (f"type='signal',interface='{IFACE}'", [
        sig("yes"), sig("other-iface", interface="com.example.Other"),
    ], ["yes"]),
    "type-method-call": (f"type='method_call',interface='{IFACE}'", [sig("never")], []),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_rule_selects(case: str, connect: Callable[..., Peer]) -> None:
    rule, signals, expected = CASES[case]
    emitter, subscriber = connect(), connect()
    subscriber.add_match(rule)
    assert delivered(emitter, subscriber, signals) == expected


def test_sender_by_unique_and_well_known_name(connect: Callable[..., Peer]) -> None:
    alice, bob, subscriber = connect(), connect(), connect()
    alice.driver_ok("RequestName", "su", ("com.example.Alice", 0))
    subscriber.add_match(f"type='signal',sender='{bob.unique_name}'")
    subscriber.add_match("type='signal',sender='com.example.Alice'")
    bob.send(sig("from-bob"))
    bob.barrier()
    assert delivered(alice, subscriber, [sig("from-alice")]) == ["from-bob", "from-alice"]
    carol = connect()
    assert delivered(carol, subscriber, [sig("from-carol")]) == []


def test_destination_with_eavesdrop(connect: Callable[..., Peer]) -> None:
    emitter, target, other, watcher = connect(), connect(), connect(), connect()
    watcher.add_match(f"destination='{target.unique_name}',eavesdrop='true'")
    got = delivered(emitter, watcher, [
        sig("to-target", destination=target.unique_name),
        sig("to-other", destination=other.unique_name),
        sig("broadcast"),
    ])
    assert got == ["to-target"]


def test_unicast_not_seen_without_eavesdrop(connect: Callable[..., Peer]) -> None:
    emitter, target, watcher = connect(), connect(), connect()
    watcher.add_match(f"type='signal',interface='{IFACE}'")
    assert delivered(emitter, watcher, [
        sig("to-target", destination=target.unique_name), sig("broadcast"),
    ]) == ["broadcast"]


def test_overlapping_rules_deliver_once(connect: Callable[..., Peer]) -> None:
    emitter, subscriber = connect(), connect()
    subscriber.add_match(f"type='signal',interface='{IFACE}'")
    subscriber.add_match(f"type='signal',interface='{IFACE}',member='Sig'")
    assert delivered(emitter, subscriber, [sig("once")]) == ["once"]


def test_remove_match_counts_duplicates(connect: Callable[..., Peer]) -> None:
    emitter, subscriber = connect(), connect()
    rule = f"type='signal',interface='{IFACE}'"
    subscriber.add_match(rule)
    subscriber.add_match(rule)
    subscriber.driver_ok("RemoveMatch", "s", (rule,))
    assert delivered(emitter, subscriber, [sig("still")]) == ["still"]
    subscriber.driver_ok("RemoveMatch", "s", (rule,))
    assert delivered(emitter, subscriber, [sig("gone")]) == []


def test_rule_with_spaces_and_escapes(connect: Callable[..., Peer]) -> None:
    """Spaces may precede a key, and '\\'' puts a quote inside a value."""
    emitter, subscriber = connect(), connect()
    subscriber.add_match("  type='signal',  arg0='it'\\''s'")
    assert delivered(emitter, subscriber, [
        sig("quoted", args=["it's"]), sig("plain", args=["its"]),
    ]) == ["quoted"]
