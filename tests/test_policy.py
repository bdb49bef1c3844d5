"""bootbus.bus.policy: dbus-daemon's policy semantics.

Three rings: hand-written cases for each rule of dbus-daemon's bus/policy.c; a
property test that the indexed checks give the same answer as a plain
last-match scan; and, against a real dbus-daemon (marked ``reference``),
probes whose outcomes the model must predict exactly, including the
system-style fixture of tests/data/policy run as root and as nobody.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootbus.bus.policy import (
    RULE_FDS_UNBOUNDED,
    ClientPolicy,
    ClientRule,
    Credentials,
    DeliveryVerdict,
    GroupRule,
    MessageFields,
    MessageInfo,
    OwnRule,
    PeerNames,
    Policy,
    PolicyBuilder,
    PolicyError,
    ReceiveRule,
    Scope,
    SendRule,
    UserRule,
    check_delivery,
    name_has_prefix,
    optimize,
    receive_rule_matches,
    requested_reply_for,
    send_rule_matches,
)
from bootbus.bus.policy import engine as policy_engine
from bootbus.io.busconfig import load_config
from bootbus.wire.message import ERROR, METHOD_CALL, METHOD_RETURN, SIGNAL

DATA = os.path.join(os.path.dirname(__file__), "data", "policy")
SYSTEM_STYLE = os.path.join(DATA, "system-style.conf")
BUS = "org.freedesktop.DBus"

ROOT = Credentials(0, (0,))
NOBODY = Credentials(65534, (65534,))
NOBODY_IN_USERS = Credentials(65534, (65534, 100))


def call(destination: str | None = "com.example.S", interface: str | None = "com.example.I",
         member: str = "M", path: str = "/", **kw: object) -> MessageInfo:
    return MessageInfo(METHOD_CALL, path=path, interface=interface, member=member,
                       destination=destination, **kw)  # type: ignore[arg-type]


def reply(kind: int = METHOD_RETURN, destination: str = ":1.1", **kw: object) -> MessageInfo:
    return MessageInfo(kind, destination=destination, reply_serial=7,
                       error_name="com.example.Error" if kind == ERROR else None,
                       **kw)  # type: ignore[arg-type]


def signal(destination: str | None = None, interface: str = "com.example.I",
           member: str = "Changed", sender: str = ":1.2") -> MessageInfo:
    return MessageInfo(SIGNAL, path="/", interface=interface, member=member,
                       destination=destination, sender=sender)


def client(*rules: ClientRule) -> ClientPolicy:
    """Exactly these rules (Policy.client_policy would also optimize them)."""
    return ClientPolicy(rules)


SERVICE = PeerNames(":1.2", {"com.example.S", "com.example.S.Other"})


def sends(rules: ClientPolicy, msg: MessageFields, names: Collection[str] | None = SERVICE,
          requested_reply: bool = False) -> bool:
    return rules.check_send(msg, names, requested_reply=requested_reply).allowed


def receives(rules: ClientPolicy, msg: MessageFields, names: Collection[str] | None = SERVICE,
             requested_reply: bool = False, eavesdropping: bool = False) -> bool:
    return rules.check_receive(msg, names, requested_reply=requested_reply,
                               eavesdropping=eavesdropping).allowed


# -- order ------------------------------------------------------------------------------------


def test_nothing_matching_means_deny() -> None:
    empty = client()
    assert not sends(empty, call())
    assert not receives(empty, call())
    assert not empty.can_own("com.example.S")


def test_last_matching_rule_wins() -> None:
    rules = client(SendRule(True, destination="com.example.S"),
                   SendRule(False, interface="com.example.I"),
                   SendRule(True, member="M", interface="com.example.I"))
    assert sends(rules, call())
    assert not sends(rules, call(member="Other"))
    assert sends(rules, call(interface="com.example.J"))


def test_refusal_counts_matched_rules_like_dbus_daemon() -> None:
    rules = client(SendRule(True, destination="com.example.S"),
                   SendRule(False, interface="com.example.I"),
                   SendRule(True, member="Other", interface="com.example.I"))
    verdict = rules.check_send(call(), SERVICE, requested_reply=False)
    assert (verdict.allowed, verdict.matched_rules) == (False, 2)
    assert rules.check_send(call(member="Other"), SERVICE,
                            requested_reply=False).matched_rules is None


# -- field matching ---------------------------------------------------------------------------


def test_allow_naming_an_interface_needs_one_deny_does_not() -> None:
    allow = client(SendRule(True, interface="com.example.I"))
    assert sends(allow, call())
    assert not sends(allow, call(interface=None))
    deny = client(SendRule(True), SendRule(False, interface="com.example.I"))
    assert not sends(deny, call(interface=None))
    assert sends(deny, call(interface="com.example.J"))
    recv_deny = client(ReceiveRule(True), ReceiveRule(False, interface="com.example.I"))
    assert not receives(recv_deny, call(interface=None))


def test_path_member_and_error_match_messages_without_the_field() -> None:
    rules = client(SendRule(True, path="/a", member="M", interface="com.example.I"))
    assert sends(rules, call(path="/a"))
    assert not sends(rules, call(path="/b"))
    assert not sends(rules, call(path="/a", member="N"))
    errors = client(SendRule(True, error="com.example.Error", requested_reply=False))
    assert sends(errors, reply(ERROR))
    assert not sends(errors, MessageInfo(ERROR, reply_serial=7, error_name="com.example.Other"))
    # a method return has no error name: the error rule still applies
    assert sends(errors, reply(METHOD_RETURN))


def test_message_type() -> None:
    rules = client(SendRule(True, message_type=SIGNAL))
    assert sends(rules, signal())
    assert not sends(rules, call())


def test_send_destination_is_any_name_the_receiver_holds() -> None:
    rules = client(SendRule(True, destination="com.example.S.Other"))
    # addressed by one name, allowed because the receiver also owns (or queues for) another
    assert sends(rules, call(destination="com.example.S"))
    assert sends(rules, call(destination=":1.2"))
    assert not sends(rules, call(), PeerNames(":1.3", {"com.example.S"}))
    by_unique = client(SendRule(True, destination=":1.2"))
    assert sends(by_unique, call())


def test_send_destination_to_the_driver_compares_the_destination_field() -> None:
    rules = client(SendRule(True, destination=BUS, interface=BUS))
    assert sends(rules, call(destination=BUS, interface=BUS), None)
    assert not sends(rules, call(destination="com.example.S", interface=BUS), None)
    assert not sends(rules, call(destination=None, interface=BUS), None)


def test_destination_prefix_matches_whole_elements() -> None:
    rules = client(SendRule(True, destination="com.example", destination_is_prefix=True))
    assert sends(rules, call(), PeerNames(":1.2", {"com.example"}))
    assert sends(rules, call(), PeerNames(":1.2", {"com.example.S.T"}))
    assert not sends(rules, call(), PeerNames(":1.2", {"com.examples"}))
    assert sends(rules, call(destination="com.example.X"), None)
    assert not sends(rules, call(destination="com.exampleX"), None)
    assert not sends(rules, call(destination=None), None)
    assert name_has_prefix("a.b", "a.b") and name_has_prefix("a.b.c", "a.b")
    assert not name_has_prefix("a.bc", "a.b") and not name_has_prefix("a", "a.b")


def test_send_broadcast() -> None:
    broadcast_only = client(SendRule(True, broadcast=True))
    assert sends(broadcast_only, signal(), PeerNames(":1.1"))
    assert not sends(broadcast_only, signal(destination=":1.1"), PeerNames(":1.1"))
    unicast_only = client(SendRule(True, broadcast=False))
    assert not sends(unicast_only, signal(), PeerNames(":1.1"))
    assert sends(unicast_only, signal(destination=":1.1"), PeerNames(":1.1"))
    assert sends(unicast_only, call())


def test_fd_bounds() -> None:
    rules = client(SendRule(True), SendRule(False, min_fds=1))
    assert sends(rules, call(unix_fds=0))
    assert not sends(rules, call(unix_fds=1))
    capped = client(SendRule(True, max_fds=2))
    assert sends(capped, call(unix_fds=2))
    assert not sends(capped, call(unix_fds=3))
    assert RULE_FDS_UNBOUNDED == 2**27 // 4


# -- requested replies and eavesdropping ------------------------------------------------------------


def test_allow_reply_rule_needs_a_requested_reply_by_default() -> None:
    rules = client(SendRule(True, message_type=METHOD_RETURN))
    assert sends(rules, reply(), requested_reply=True)
    assert not sends(rules, reply(), requested_reply=False)
    # requested_reply only concerns replies: a call is not a reply
    assert sends(client(SendRule(True, requested_reply=True)), call())


def test_allow_requested_reply_false_allows_any_reply() -> None:
    rules = client(SendRule(True, message_type=METHOD_RETURN, requested_reply=False))
    assert sends(rules, reply(), requested_reply=False)


def test_allow_eavesdrop_true_also_allows_unrequested_replies() -> None:
    # session.conf's <allow send_destination="*" eavesdrop="true"/> relies on this
    rules = client(SendRule(True, eavesdrop=True))
    assert sends(rules, reply(), requested_reply=False)


def test_deny_reply_rule_spares_requested_replies_by_default() -> None:
    rules = client(SendRule(True, requested_reply=False), SendRule(False, message_type=ERROR))
    assert sends(rules, reply(ERROR), requested_reply=True)
    assert not sends(rules, reply(ERROR), requested_reply=False)
    always = client(SendRule(True, requested_reply=False),
                    SendRule(False, message_type=ERROR, requested_reply=True))
    assert not sends(always, reply(ERROR), requested_reply=True)


def test_receive_requested_reply() -> None:
    rules = client(ReceiveRule(True, message_type=METHOD_RETURN))
    assert receives(rules, reply(), requested_reply=True)
    assert not receives(rules, reply(), requested_reply=False)


def test_receive_eavesdrop() -> None:
    plain = client(ReceiveRule(True))
    assert receives(plain, call())
    assert not receives(plain, call(), eavesdropping=True)
    eavesdropper = client(ReceiveRule(True, eavesdrop=True))
    assert receives(eavesdropper, call(), eavesdropping=True)
    deny_eavesdrop = client(ReceiveRule(True, eavesdrop=True), ReceiveRule(False, eavesdrop=True))
    assert receives(deny_eavesdrop, call())
    assert not receives(deny_eavesdrop, call(), eavesdropping=True)


def test_receive_sender_from_the_driver_compares_the_sender_field() -> None:
    rules = client(ReceiveRule(True, sender=BUS))
    assert receives(rules, signal(sender=BUS), None)
    assert not receives(rules, signal(sender=":1.9"), None)
    assert not receives(rules, signal(sender=BUS), PeerNames(":1.9"))
    peer = client(ReceiveRule(True, sender="com.example.S"))
    assert receives(peer, signal(), SERVICE)


def test_requested_reply_for() -> None:
    answer = reply()
    assert requested_reply_for(answer, from_driver=False, to_driver=False, eavesdropping=False,
                               reply_expected=True)
    assert not requested_reply_for(answer, from_driver=False, to_driver=False,
                                   eavesdropping=True, reply_expected=True)
    assert not requested_reply_for(answer, from_driver=False, to_driver=True,
                                   eavesdropping=False, reply_expected=True)
    assert requested_reply_for(answer, from_driver=True, to_driver=False, eavesdropping=False,
                               reply_expected=False)
    assert not requested_reply_for(answer, from_driver=True, to_driver=False,
                                   eavesdropping=True, reply_expected=False)
    assert not requested_reply_for(call(), from_driver=True, to_driver=False,
                                   eavesdropping=False, reply_expected=True)


# -- owning names ------------------------------------------------------------------------------


def test_own_rules() -> None:
    rules = client(OwnRule(True), OwnRule(False, "com.example.S", prefix=True),
                   OwnRule(True, "com.example.S.Open"))
    assert rules.can_own("org.example.Anything")
    assert not rules.can_own("com.example.S")
    assert not rules.can_own("com.example.S.Child")
    assert rules.can_own("com.example.S.Open")
    assert not rules.can_own("com.example.S.Open.Child")
    assert rules.can_own("com.example.Sibling")


# -- assembling a connection's rules -------------------------------------------------------------


def test_optimize_drops_rules_before_a_blanket_rule_of_the_same_kind() -> None:
    allow_iface = ReceiveRule(True, interface="com.example.I")
    blanket_deny_eavesdrop = ReceiveRule(False, eavesdrop=True)
    own = OwnRule(True, "com.example.S")
    send = SendRule(True, destination="com.example.S")
    kept = optimize([allow_iface, own, send, blanket_deny_eavesdrop])
    assert kept == (own, send, blanket_deny_eavesdrop)
    # the observable effect, confirmed against dbus-daemon 1.14.10 ("0 matched rules"):
    assert not receives(ClientPolicy(kept), call())
    assert receives(ClientPolicy((allow_iface, blanket_deny_eavesdrop)), call())
    assert optimize([own, OwnRule(False)]) == (OwnRule(False),)
    # prefix, type or destination make a rule specific
    specific = [send, SendRule(False, destination="x", destination_is_prefix=True),
                SendRule(False, message_type=SIGNAL)]
    assert optimize(specific) == tuple(specific)
    # broadcast, requested_reply, eavesdrop and fd bounds do not (dbus-daemon ignores them)
    assert optimize([send, SendRule(False, broadcast=True)]) == (SendRule(False, broadcast=True),)


def test_client_policy_order_is_default_groups_user_console_mandatory() -> None:
    def own(allow: bool) -> OwnRule:
        return OwnRule(allow, "com.example.S")

    groups = {5: (own(False),), 3: (own(True),)}
    policy = Policy(default=(own(True),), groups=groups, users={1000: (own(True),)})
    assert not policy.can_own(Credentials(2000, (3, 5)), "com.example.S")  # 5 applies after 3
    assert not policy.can_own(Credentials(2000, (5, 3)), "com.example.S")  # order of gids is moot
    assert policy.can_own(Credentials(2000, (3,)), "com.example.S")
    assert policy.can_own(Credentials(1000, (5,)), "com.example.S")  # user after group
    console = Policy(users={1000: (own(True),)}, at_console=(own(False),),
                     not_at_console=(own(True),))
    assert not console.can_own(Credentials(1000, (), at_console=True), "com.example.S")
    assert console.can_own(Credentials(1000, (), at_console=False), "com.example.S")
    mandatory = Policy(default=(own(True),), users={1000: (own(True),)},
                       mandatory=(own(False),))
    assert not mandatory.can_own(Credentials(1000), "com.example.S")
    # console rules need a uid
    console = Policy(at_console=(own(True),), not_at_console=(own(True),))
    assert not console.can_own(Credentials(None, at_console=True), "com.example.S")
    assert console.can_own(Credentials(1), "com.example.S")


def test_client_policy_is_optimized_and_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = Policy(default=(ReceiveRule(True, interface="com.example.I"),
                             ReceiveRule(False, eavesdrop=True)))
    assert not policy.can_receive(Credentials(1), call(), SERVICE, requested_reply=False)
    first = policy.client_policy(Credentials(1))
    assert policy.client_policy(Credentials(1)) is first
    assert policy.client_policy(Credentials(1, (2,))) is not first
    monkeypatch.setattr(policy_engine, "MAX_CACHED_CLIENT_POLICIES", 2)
    policy.client_policy(Credentials(3))
    assert policy.client_policy(Credentials(1)) is not first  # the cache started over


def test_connect_rules() -> None:
    assert Policy().can_connect(Credentials(1000), bus_uid=1000)
    assert not Policy().can_connect(Credentials(1001), bus_uid=1000)
    policy = Policy(default=(UserRule(True), GroupRule(False, 50), UserRule(True, 7)),
                    mandatory=(UserRule(False, 8),),
                    users={7: ()}, at_console=(UserRule(False),))
    assert policy.can_connect(Credentials(1001, (1001,)), bus_uid=0)
    assert not policy.can_connect(Credentials(1001, (50,)), bus_uid=0)
    assert policy.can_connect(Credentials(7, (50,)), bus_uid=0)
    assert not policy.can_connect(Credentials(8), bus_uid=8)
    assert not policy.can_connect(Credentials(None), bus_uid=0)
    assert not policy.can_connect(Credentials(1001), bus_uid=0, in_user_database=False)
    assert Policy(default=(GroupRule(True),)).can_connect(Credentials(3), bus_uid=0)


def test_connect_rules_are_not_per_connection_rules() -> None:
    policy = Policy(default=(UserRule(True), OwnRule(True)), at_console=(UserRule(False),))
    assert policy.client_policy(Credentials(1, at_console=True)).rules == (OwnRule(True),)


def test_builder_keeps_include_order_and_refuses_per_user_connect_rules() -> None:
    outer, inner = PolicyBuilder(), PolicyBuilder()
    outer.append(Scope("default"), OwnRule(True, "a"))
    inner.append(Scope("default"), OwnRule(True, "b"))
    inner.append(Scope("user", 5), OwnRule(True, "c"))
    inner.append(Scope("at_console", 1), UserRule(False))
    outer.merge(inner)
    outer.append(Scope("default"), OwnRule(True, "d"))
    outer.append(Scope("user", 5), OwnRule(True, "e"))
    policy = outer.build()
    assert [r.name for r in policy.default if isinstance(r, OwnRule)] == ["a", "b", "d"]
    assert [r.name for r in policy.users[5] if isinstance(r, OwnRule)] == ["c", "e"]
    assert policy.at_console == (UserRule(False),)
    with pytest.raises(PolicyError):
        outer.append(Scope("group", 1), GroupRule(True))
    with pytest.raises(PolicyError):
        outer.append(Scope("user", 1), UserRule(True))


def test_peer_names() -> None:
    names = PeerNames(":1.4", {"a.b"})
    assert ":1.4" in names and "a.b" in names and "a" not in names
    assert sorted(names) == [":1.4", "a.b"] and len(names) == 2
    assert list(PeerNames(None)) == [] and len(PeerNames(None)) == 0


# -- the delivery decision ---------------------------------------------------------------------


def test_check_delivery_checks_the_sender_then_the_recipient() -> None:
    sender = client(SendRule(True, destination="com.example.S"))
    recipient = client(ReceiveRule(True, interface="com.example.I"))
    names = PeerNames(":1.1")
    ok = check_delivery(call(sender=":1.1"), sender=sender, sender_names=names,
                        recipient=recipient, recipient_names=SERVICE)
    assert ok.allowed and ok.rejected_by is None
    refused = check_delivery(call(interface="com.example.J"), sender=sender, sender_names=names,
                             recipient=recipient, recipient_names=SERVICE)
    assert (refused.allowed, refused.rejected_by, refused.matched_rules) == (False, "receive", 0)
    elsewhere = check_delivery(call(), sender=sender, sender_names=names, recipient=recipient,
                               recipient_names=PeerNames(":1.3"))
    assert elsewhere.rejected_by == "send"


def test_check_delivery_from_and_to_the_driver() -> None:
    recipient = client(ReceiveRule(True, sender=BUS))
    from_bus = check_delivery(reply(sender=BUS), sender=None, sender_names=PeerNames(":1.7"),
                              recipient=recipient, recipient_names=PeerNames(":1.1"))
    assert from_bus.allowed and from_bus.requested_reply
    sender = client(SendRule(True, destination=BUS))
    to_bus = check_delivery(call(destination=BUS), sender=sender, sender_names=PeerNames(":1.1"),
                            recipient=None, recipient_names=PeerNames(":1.99", {BUS}))
    assert to_bus.allowed
    assert not check_delivery(call(destination="x"), sender=sender, sender_names=None,
                              recipient=None, recipient_names=PeerNames(":1.9", {BUS})).allowed


def test_check_delivery_replies() -> None:
    system_like = client(SendRule(True, message_type=METHOD_RETURN),
                         ReceiveRule(True, message_type=METHOD_RETURN))
    args = {"sender": system_like, "sender_names": PeerNames(":1.2"), "recipient": system_like,
            "recipient_names": PeerNames(":1.1")}
    assert check_delivery(reply(), reply_expected=True, **args).allowed  # type: ignore[arg-type]
    second = check_delivery(reply(), reply_expected=False, **args)  # type: ignore[arg-type]
    assert (second.allowed, second.rejected_by, second.requested_reply) == (False, "send", False)
    spied = check_delivery(reply(), reply_expected=True, eavesdropping=True,
                           **args)  # type: ignore[arg-type]
    assert not spied.allowed and not spied.requested_reply


# -- the indexed checks agree with a plain scan --------------------------------------------------

_NAMES = ["a", "a.b", "a.b.c", "c", ":1.1", ":1.2", BUS]
_maybe_name = st.none() | st.sampled_from(_NAMES)
_maybe_iface = st.none() | st.sampled_from(["i.x", "i.y"])
_maybe_type = st.none() | st.sampled_from([METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL])
_fds = st.sampled_from([(0, RULE_FDS_UNBOUNDED), (1, RULE_FDS_UNBOUNDED), (0, 1)])


@st.composite
def send_rules(draw: st.DrawFn) -> SendRule:
    lo, hi = draw(_fds)
    return SendRule(
        allow=draw(st.booleans()), message_type=draw(_maybe_type),
        path=draw(st.none() | st.sampled_from(["/", "/p"])), interface=draw(_maybe_iface),
        member=draw(st.none() | st.sampled_from(["m", "n"])),
        error=draw(st.none() | st.just("e.E")), destination=draw(_maybe_name),
        destination_is_prefix=draw(st.booleans()), broadcast=draw(st.none() | st.booleans()),
        requested_reply=draw(st.none() | st.booleans()), eavesdrop=draw(st.booleans()),
        min_fds=lo, max_fds=hi, log=draw(st.booleans()))


@st.composite
def receive_rules(draw: st.DrawFn) -> ReceiveRule:
    lo, hi = draw(_fds)
    return ReceiveRule(
        allow=draw(st.booleans()), message_type=draw(_maybe_type),
        path=draw(st.none() | st.sampled_from(["/", "/p"])), interface=draw(_maybe_iface),
        member=draw(st.none() | st.sampled_from(["m", "n"])),
        error=draw(st.none() | st.just("e.E")), sender=draw(_maybe_name),
        requested_reply=draw(st.none() | st.booleans()), eavesdrop=draw(st.booleans()),
        min_fds=lo, max_fds=hi)


@st.composite
def messages(draw: st.DrawFn) -> MessageInfo:
    return MessageInfo(
        type=draw(st.sampled_from([METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL])),
        path=draw(st.none() | st.sampled_from(["/", "/p"])), interface=draw(_maybe_iface),
        member=draw(st.none() | st.sampled_from(["m", "n"])),
        error_name=draw(st.none() | st.sampled_from(["e.E", "e.F"])),
        destination=draw(_maybe_name), sender=draw(_maybe_name),
        reply_serial=draw(st.sampled_from([0, 5])), unix_fds=draw(st.sampled_from([0, 1, 2])))


_peer_names = st.none() | st.builds(
    PeerNames, st.sampled_from([":1.1", ":1.2"]),
    st.frozensets(st.sampled_from(_NAMES[:4] + [BUS]), max_size=3))


@settings(max_examples=400, deadline=None)
@given(st.lists(send_rules(), max_size=12), messages(), _peer_names, st.booleans())
def test_indexed_send_check_equals_a_plain_scan(rules: list[SendRule], msg: MessageInfo,
                                                names: PeerNames | None,
                                                requested: bool) -> None:
    matched = [r for r in rules if send_rule_matches(r, msg, names, requested)]
    verdict = ClientPolicy(tuple(rules)).check_send(msg, names, requested_reply=requested)
    assert verdict.allowed == (matched[-1].allow if matched else False)
    assert verdict.log == (matched[-1].log if matched else False)
    if not verdict.allowed:
        assert verdict.matched_rules == len(matched)


@settings(max_examples=400, deadline=None)
@given(st.lists(receive_rules(), max_size=12), messages(), _peer_names, st.booleans(),
       st.booleans())
def test_indexed_receive_check_equals_a_plain_scan(rules: list[ReceiveRule], msg: MessageInfo,
                                                   names: PeerNames | None, requested: bool,
                                                   eavesdropping: bool) -> None:
    matched = [r for r in rules
               if receive_rule_matches(r, msg, names, requested, eavesdropping)]
    verdict = ClientPolicy(tuple(rules)).check_receive(
        msg, names, requested_reply=requested, eavesdropping=eavesdropping)
    assert verdict.allowed == (matched[-1].allow if matched else False)
    if not verdict.allowed:
        assert verdict.matched_rules == len(matched)


# -- the system-style fixture, decided by the model ---------------------------------------------


@pytest.fixture(scope="module")
def system_style() -> Policy:
    config = load_config(SYSTEM_STYLE, strict_includedir=True)
    assert config.warnings == ()
    return config.policy


def to_bus(member: str, interface: str = BUS) -> MessageInfo:
    return call(destination=BUS, interface=interface, member=member,
                path="/org/freedesktop/DBus")


def test_fixture_reserved_name_is_root_only(system_style: Policy) -> None:
    assert system_style.can_own(ROOT, "com.example.Reserved")
    assert system_style.can_own(ROOT, "com.example.Reserved.Instance.7")
    assert not system_style.can_own(ROOT, "com.example.Reserved.Instance7")
    assert not system_style.can_own(ROOT, "com.example.ReservedX")
    assert not system_style.can_own(NOBODY, "com.example.Reserved")
    assert not system_style.can_own(NOBODY, "com.example.Reserved.Instance.7")
    assert system_style.can_own(NOBODY, "com.example.Nobody")
    assert not system_style.can_own(ROOT, "com.example.Nobody")


def test_fixture_only_root_may_become_a_monitor(system_style: Policy) -> None:
    monitor = to_bus("BecomeMonitor", "org.freedesktop.DBus.Monitoring")
    assert system_style.can_send(ROOT, monitor, None, requested_reply=False)
    assert not system_style.can_send(NOBODY, monitor, None, requested_reply=False)
    assert system_style.can_send(NOBODY, to_bus("Hello"), None, requested_reply=False)
    assert system_style.can_send(NOBODY, to_bus("Introspect",
                                                "org.freedesktop.DBus.Introspectable"),
                                 None, requested_reply=False)


def test_fixture_root_bypasses_nothing(system_style: Policy) -> None:
    for creds in (ROOT, NOBODY):
        assert not system_style.can_send(creds, to_bus("UpdateActivationEnvironment"), None,
                                         requested_reply=False)
    assert not system_style.can_send(
        ROOT, call("com.example.Reserved", "com.example.Reserved", "Shutdown"),
        PeerNames(":1.1", {"com.example.Reserved"}), requested_reply=False)


def test_fixture_denied_interface(system_style: Policy) -> None:
    service = PeerNames(":1.1", {"com.example.Reserved"})
    ping = call("com.example.Reserved", "com.example.Reserved", "Ping")
    admin = call("com.example.Reserved", "com.example.Reserved.Admin", "Reset")
    assert system_style.can_send(NOBODY, ping, service, requested_reply=False)
    assert not system_style.can_send(NOBODY, admin, service, requested_reply=False)
    assert system_style.can_send(ROOT, admin, service, requested_reply=False)
    # other destinations stay closed to method calls, for root too
    assert not system_style.can_send(ROOT, call("com.example.Other"),
                                     PeerNames(":1.5", {"com.example.Other"}),
                                     requested_reply=False)


def test_fixture_group_policy(system_style: Policy) -> None:
    audit = signal(interface="com.example.Reserved.Audit", member="Event", sender=":1.1")
    service = PeerNames(":1.1", {"com.example.Reserved"})
    assert not system_style.can_receive(NOBODY, audit, service, requested_reply=False)
    assert system_style.can_receive(NOBODY_IN_USERS, audit, service, requested_reply=False)
    assert system_style.can_receive(NOBODY, signal(), service, requested_reply=False)


# -- against dbus-daemon -------------------------------------------------------------------------
# The same configuration runs under dbus-daemon and through the model; every
# probe's outcome must agree: delivered or not, which side refused, and the
# matched-rule count dbus-daemon quotes in its AccessDenied text.

needs_dbus_daemon = pytest.mark.skipif(
    shutil.which("dbus-daemon") is None, reason="dbus-daemon is not installed")
ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
IFACE, OTHER_IFACE = "com.example.I", "com.example.J"
WAIT_SECONDS = 5.0


class DbusDaemon:
    """dbus-daemon on a private socket, for as long as a test needs it."""

    def __init__(self, config: str, socket_path: str) -> None:
        self.address = f"unix:path={socket_path}"
        self.proc = subprocess.Popen(
            ["dbus-daemon", "--config-file", config, "--nofork", "--nopidfile", "--nosyslog",
             "--print-address", "--address", self.address],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if not self.proc.stdout.readline():
            raise RuntimeError(f"dbus-daemon did not start: {self.proc.stderr.read()}")  # type: ignore[union-attr]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=WAIT_SECONDS)


class BootbusDaemon(DbusDaemon):
    """bootbus with the same configuration file, so the same probes decide both."""

    def __init__(self, config: str, socket_path: str) -> None:
        self.address = f"unix:path={socket_path}"
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", "-m", "bootbus", "--config", config, "--print-address",
             "--address", self.address, "--runtime-dir", socket_path + ".rt"],
            cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if not self.proc.stdout.readline():
            raise RuntimeError(f"bootbus did not start: {self.proc.stderr.read()}")  # type: ignore[union-attr]
        os.chmod(socket_path, 0o666)


class Probe:
    """One client connection (jeepney, blocking), with an inbox of what it received."""

    def __init__(self, address: str) -> None:
        from jeepney.io.blocking import open_dbus_connection

        self.conn = open_dbus_connection(address)
        self.unique: str = self.conn.unique_name
        self.names: set[str] = set()
        self.inbox: list[Any] = []

    def send(self, msg: Any) -> int:
        serial: int = next(self.conn.outgoing_serial)
        self.conn.send(msg, serial=serial)
        return serial

    def roundtrip(self) -> None:
        """Ask the bus something; whatever was queued for us before its answer is in."""
        from jeepney.bus_messages import message_bus
        from jeepney.low_level import HeaderFields

        serial = self.send(message_bus.GetId())
        while True:
            msg = self.conn.receive(timeout=WAIT_SECONDS)
            if msg.header.fields.get(HeaderFields.reply_serial) == serial:
                return
            self.inbox.append(msg)

    def call_bus(self, msg: Any) -> Any:
        from jeepney.low_level import HeaderFields

        serial = self.send(msg)
        while True:
            reply = self.conn.receive(timeout=WAIT_SECONDS)
            if reply.header.fields.get(HeaderFields.reply_serial) == serial:
                return reply
            self.inbox.append(reply)

    def own(self, name: str) -> bool:
        from jeepney.bus_messages import message_bus
        from jeepney.low_level import MessageType

        reply = self.call_bus(message_bus.RequestName(name))
        if reply.header.message_type == MessageType.method_return:
            self.names.add(name)
            return True
        assert reply.header.fields[4] == ACCESS_DENIED, reply
        return False

    def take(self, member: str | None = None, reply_to: int | None = None) -> list[Any]:
        from jeepney.low_level import HeaderFields

        found = [m for m in self.inbox
                 if (member is None or m.header.fields.get(HeaderFields.member) == member)
                 and (reply_to is None
                      or m.header.fields.get(HeaderFields.reply_serial) == reply_to)]
        self.inbox = [m for m in self.inbox if m not in found]
        return found

    @property
    def peer_names(self) -> PeerNames:
        return PeerNames(self.unique, frozenset(self.names))

    def close(self) -> None:
        self.conn.close()


def observed(sender: Probe, serial: int, delivered: bool) -> tuple[str, int | None]:
    """The outcome as dbus-daemon shows it: delivered, or which side refused and
    how many rules matched (from the AccessDenied text), or silence."""
    from jeepney.low_level import HeaderFields

    if delivered:
        return ("delivered", None)
    errors = sender.take(reply_to=serial)
    for error in errors:
        if error.header.fields.get(HeaderFields.error_name) == ACCESS_DENIED:
            m = re.match(r"Rejected (send|receive) message, (\d+) matched rules", error.body[0])
            assert m, error.body
            return (m.group(1), int(m.group(2)))
    return ("silent", None)


def predicted(verdict: DeliveryVerdict) -> tuple[str, int | None]:
    if verdict.allowed:
        return ("delivered", None)
    return (verdict.rejected_by or "?", verdict.matched_rules)


def agree(what: str, model: tuple[str, int | None], real: tuple[str, int | None]) -> str | None:
    if real[0] == "silent" and model[0] != "delivered":
        return None  # refused without an error (signals): the side is not observable
    return None if model == real else f"{what}: model {model}, dbus-daemon {real}"


SEMANTIC_CASES: dict[str, str] = {
    "system-like": """
        <deny own="*"/>
        <deny send_type="method_call"/>
        <allow send_type="signal"/>
        <allow send_requested_reply="true" send_type="method_return"/>
        <allow send_requested_reply="true" send_type="error"/>
        <allow receive_type="method_call"/>
        <allow receive_type="method_return"/>
        <allow receive_type="error"/>
        <allow receive_type="signal"/>
        <allow send_destination="com.example.S"/>
        <allow own_prefix="org.example"/>
        <deny own="org.example.B"/>
    """,
    "interfaces-paths-members": """
        <allow receive_sender="*"/>
        <allow send_destination="com.example.S" send_interface="com.example.I"/>
        <deny send_destination="com.example.S" send_interface="com.example.J"/>
        <deny send_destination="com.example.S" send_path="/secret"/>
        <deny send_destination="com.example.S" send_interface="com.example.I" send_member="Drop"/>
        <allow send_type="method_return" send_requested_reply="false"/>
        <allow send_type="signal" send_interface="com.example.I"/>
    """,
    "prefixes-and-unique-names": """
        <allow receive_type="*"/>
        <allow send_destination_prefix="com.example.S"/>
        <allow send_destination=":1.1"/>
        <deny send_destination_prefix="com.example.S.Two" send_interface="com.example.J"/>
        <allow send_requested_reply="true" send_type="method_return"/>
        <allow send_requested_reply="true" send_type="error"/>
        <allow own_prefix="org.example.A"/>
    """,
    "broadcasts": """
        <allow receive_sender="*"/>
        <allow send_destination="*"/>
        <deny send_type="signal" send_broadcast="true" send_interface="com.example.J"/>
        <deny send_type="signal" send_broadcast="false"/>
        <deny receive_type="signal" receive_interface="com.example.I" receive_member="Quiet"/>
    """,
    "requested-replies": """
        <allow receive_sender="*"/>
        <allow send_destination="*" send_type="method_call"/>
        <allow send_type="method_return" send_requested_reply="false"/>
        <deny send_type="error"/>
        <allow send_type="error" send_requested_reply="false" send_error="com.example.Error.Fine"/>
        <deny receive_type="method_return" receive_requested_reply="true" receive_sender="com.example.S.Two"/>
    """,
    "receive-rules": """
        <allow send_destination="*" eavesdrop="true"/>
        <allow receive_type="*"/>
        <deny receive_interface="com.example.J"/>
        <deny receive_sender="com.example.S" receive_type="signal"/>
        <allow receive_sender="com.example.S" receive_type="signal" receive_member="Changed" receive_interface="com.example.I"/>
        <deny receive_path="/secret"/>
    """,
    "eavesdropping-allowed": """
        <allow send_destination="*" eavesdrop="true"/>
        <allow eavesdrop="true"/>
        <deny receive_interface="com.example.J" eavesdrop="true"/>
    """,
    "optimized-away": """
        <allow send_destination="com.example.S"/>
        <allow receive_interface="com.example.I"/>
        <allow receive_sender="com.example.S"/>
        <deny eavesdrop="true"/>
        <allow send_type="signal"/>
        <allow send_interface="com.example.I" send_destination="com.example.Sx"/>
        <allow send_destination="*"/>
        <deny send_destination="com.example.Sx"/>
        <allow receive_type="method_call"/>
        <allow own_prefix="org.example.A"/>
        <deny own="*"/>
    """,
}


def _config(tmp_path: Path, rules: str) -> str:
    path = tmp_path / "bus.conf"
    path.write_text(f"""<busconfig>
  <listen>unix:path={tmp_path}/unused</listen>
  <policy context="default">
    <allow user="*"/>
{textwrap.indent(textwrap.dedent(rules).strip(), "    ")}
  </policy>
  <policy context="mandatory">
    <allow send_destination="org.freedesktop.DBus"/>
    <allow receive_sender="org.freedesktop.DBus"/>
    <allow own_prefix="com.example"/>
  </policy>
</busconfig>
""")
    return str(path)


def _creds() -> Credentials:
    return Credentials(os.getuid(), tuple(sorted({os.getegid(), *os.getgroups()})))


@needs_dbus_daemon
@pytest.mark.reference
@pytest.mark.parametrize("case", sorted(SEMANTIC_CASES))
def test_semantics_match_dbus_daemon(tmp_path: Path, case: str) -> None:
    """Probes between three peers of one uid: calls, replies, signals, eavesdropping, names."""
    pytest.importorskip("jeepney")
    config = _config(tmp_path, SEMANTIC_CASES[case])
    policy = load_config(config).policy
    rules = policy.client_policy(_creds())  # every peer has the same credentials
    daemon = DbusDaemon(config, str(tmp_path / "bus"))
    peers: list[Probe] = []
    try:
        a, b, c, e = (Probe(daemon.address) for _ in range(4))
        peers += [a, b, c, e]
        assert b.unique == ":1.1", "the prefixes case relies on the second peer being :1.1"
        assert b.own("com.example.S") and b.own("com.example.S.Two") and c.own("com.example.Sx")
        from jeepney.bus_messages import message_bus

        a.call_bus(message_bus.AddMatch("type='signal'"))
        e.call_bus(message_bus.AddMatch("eavesdrop='true'"))
        problems = _probe_everything(rules, a, b, c, e)
    finally:
        for peer in peers:
            peer.close()
        daemon.stop()
    assert problems == []


def _probe_everything(rules: ClientPolicy, a: Probe, b: Probe, c: Probe,
                      e: Probe) -> list[str]:
    from jeepney import DBusAddress, new_error, new_method_call, new_method_return, new_signal
    from jeepney.low_level import HeaderFields

    problems: list[str] = []

    def settle() -> None:
        for peer in (a, b, c, e):
            peer.roundtrip()

    def check(what: str, model: DeliveryVerdict, real: tuple[str, int | None]) -> None:
        problem = agree(what, predicted(model), real)
        if problem:
            problems.append(problem)

    def deliver(msg: MessageInfo, src: Probe, dst: Probe, eavesdropping: bool = False,
                reply_expected: bool = False) -> DeliveryVerdict:
        return check_delivery(msg, sender=rules, sender_names=src.peer_names, recipient=rules,
                              recipient_names=dst.peer_names, eavesdropping=eavesdropping,
                              reply_expected=reply_expected)

    calls = [("com.example.S", "/", IFACE, "M"), ("com.example.S", "/", None, "M"),
             ("com.example.S", "/secret", IFACE, "M"), ("com.example.S", "/", OTHER_IFACE, "M"),
             ("com.example.S", "/", IFACE, "Drop"), (b.unique, "/", IFACE, "M"),
             ("com.example.S.Two", "/", OTHER_IFACE, "M"), ("com.example.Sx", "/", IFACE, "M"),
             ("com.example.Sx", "/", OTHER_IFACE, "M")]
    for n, (dest, path, iface, member) in enumerate(calls):
        member = f"{member}{n}" if member == "M" else member
        target = c if dest == "com.example.Sx" else b
        serial = a.send(new_method_call(DBusAddress(path, dest, iface), member))
        settle()
        got = target.take(member)
        msg = MessageInfo(METHOD_CALL, path=path, interface=iface, member=member,
                          destination=dest, sender=a.unique)
        check(f"call {dest} {path} {iface} {member}", deliver(msg, a, target),
              observed(a, serial, bool(got)))
        spied = e.take(member)
        check(f"eavesdrop on call {member}", deliver(msg, a, e, eavesdropping=True),
              ("delivered", None) if spied else ("silent", None))

    # replies: requested (the first answer to a delivered call), then the same again
    for kind, error_name in ((METHOD_RETURN, None), (ERROR, "com.example.Error.Fine"),
                             (ERROR, "com.example.Error.Bad")):
        for replier in (b, c):
            dest = "com.example.S.Two" if replier is b else "com.example.Sx"
            a.send(new_method_call(DBusAddress("/", dest, IFACE), "Ask"))
            settle()
            asked = replier.take("Ask")
            a.take()
            if not asked:
                continue
            for attempt, expected in (("requested", True), ("unrequested", False)):
                answer = (new_method_return(asked[0]) if kind == METHOD_RETURN
                          else new_error(asked[0], error_name))
                serial = replier.send(answer)
                settle()
                got = a.take(reply_to=asked[0].header.serial)
                msg = MessageInfo(kind, error_name=error_name, destination=a.unique,
                                  sender=replier.unique, reply_serial=asked[0].header.serial)
                check(f"{attempt} {'return' if kind == METHOD_RETURN else error_name} "
                      f"from {dest}", deliver(msg, replier, a, reply_expected=expected),
                      observed(replier, serial, bool(got)))
                e.take()

    # signals from the service: broadcast and unicast
    for iface, member in ((IFACE, "Changed"), (IFACE, "Quiet"), (OTHER_IFACE, "Changed")):
        for unicast in (False, True):
            sig = new_signal(DBusAddress("/", interface=iface), member)
            if unicast:
                sig.header.fields[HeaderFields.destination] = a.unique
            serial = b.send(sig)
            settle()
            got = a.take(member)
            msg = MessageInfo(SIGNAL, path="/", interface=iface, member=member,
                              destination=a.unique if unicast else None, sender=b.unique)
            check(f"{'unicast' if unicast else 'broadcast'} {iface}.{member}", deliver(msg, b, a),
                  observed(b, serial, bool(got)))
            e.take()

    for name in ("org.example.A", "org.example.A.Sub", "org.example.B", "org.example.C"):
        if a.own(name) != rules.can_own(name):
            problems.append(f"own {name}: model {rules.can_own(name)}")
    return problems


class RemotePeer:
    """probe_client.py as another uid and set of groups."""

    def __init__(self, address: str, uid: int, gid: int, groups: list[int]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(DATA, "probe_client.py"), address],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            user=uid, group=gid, extra_groups=groups)
        self.creds = Credentials(uid, tuple(sorted({gid, *groups})))
        self.unique = self.ask(op="whoami")["unique"]

    def ask(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "probe_client.py died"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        self.proc.communicate(timeout=WAIT_SECONDS)


class Service(threading.Thread):
    """A root peer that answers every method call, and emits signals on request."""

    def __init__(self, probe: Probe) -> None:
        super().__init__(daemon=True)
        self.probe = probe
        self.jobs: queue.Queue[Any] = queue.Queue()
        self.done: queue.Queue[bool] = queue.Queue()
        self.members: list[str] = []
        self.stopping = False

    def run(self) -> None:
        from jeepney import new_method_return
        from jeepney.low_level import HeaderFields, MessageType

        while not self.stopping:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                job = None
            if job is not None:
                self.probe.send(job)
                self.probe.roundtrip()
                self.done.put(True)
            try:
                self.probe.inbox.append(self.probe.conn.receive(timeout=0.05))
            except TimeoutError:
                pass
            for msg in self.probe.take():
                if msg.header.message_type == MessageType.method_call:
                    self.members.append(msg.header.fields[HeaderFields.member])
                    self.probe.send(new_method_return(msg))

    def emit(self, msg: Any) -> None:
        """Send ``msg`` and wait until the bus has taken it."""
        self.jobs.put(msg)
        assert self.done.get(timeout=WAIT_SECONDS)


needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="acting as other uids needs root (CI runs as root)")


@needs_dbus_daemon
@needs_root
@pytest.mark.reference
@pytest.mark.root
@pytest.mark.parametrize("daemon_cls", [DbusDaemon, BootbusDaemon],
                         ids=["dbus-daemon", "bootbus"])
def test_system_style_fixture_against_dbus_daemon(system_style: Policy,
                                                  daemon_cls: type[DbusDaemon]) -> None:
    """The issue's must-show, on dbus-daemon and on bootbus with the same file,
    with the model's answers alongside: nobody cannot own a name reserved for
    root, cannot become a monitor and cannot call the Admin interface; root can.
    Both buses must agree with the model."""
    pytest.importorskip("jeepney")
    sockets = tempfile.mkdtemp(prefix="bootbus-policy-")  # the other uid must reach it
    os.chmod(sockets, 0o711)
    try:
        _against_dbus_daemon(os.path.join(sockets, "bus"), system_style, daemon_cls)
    finally:
        shutil.rmtree(sockets)


def _against_dbus_daemon(socket_path: str, system_style: Policy,
                         daemon_cls: type[DbusDaemon] = DbusDaemon) -> None:
    from jeepney import DBusAddress, new_signal
    from jeepney.bus_messages import Monitoring

    daemon = daemon_cls(SYSTEM_STYLE, socket_path)
    root_creds = Credentials(0, tuple(sorted({os.getegid(), *os.getgroups()})))
    locals_: list[Probe] = []
    remotes: list[RemotePeer] = []
    service: Service | None = None
    try:
        svc = Probe(daemon.address)
        locals_.append(svc)
        # root may own the reserved name, and so is the service
        assert svc.own("com.example.Reserved") and system_style.can_own(root_creds,
                                                                         "com.example.Reserved")
        assert not svc.own("com.example.Nobody")
        assert not system_style.can_own(root_creds, "com.example.Nobody")
        service = Service(svc)
        service.start()
        nobody = RemotePeer(daemon.address, 65534, 65534, [])
        member_of_users = RemotePeer(daemon.address, 65534, 65534, [100])
        remotes += [nobody, member_of_users]
        service_names = PeerNames(svc.unique, frozenset({"com.example.Reserved"}))

        def remote_call(peer: RemotePeer, iface: str, member: str,
                        dest: str = "com.example.Reserved") -> bool:
            answer = peer.ask(op="call", dest=dest, path="/", iface=iface, member=member)
            assert answer["ok"] or answer["error"] == ACCESS_DENIED, answer
            return bool(answer["ok"])

        def model_call(creds: Credentials, iface: str, member: str,
                       dest: str = "com.example.Reserved") -> bool:
            msg = MessageInfo(METHOD_CALL, path="/", interface=iface, member=member,
                              destination=dest)
            names = None if dest == BUS else service_names
            return system_style.can_send(creds, msg, names, requested_reply=False)

        # owning
        for name, expected in (("com.example.Reserved", False),
                               ("com.example.Reserved.Instance.1", False),
                               ("com.example.Nobody", True)):
            real = nobody.ask(op="own", name=name)["ok"]
            assert real == system_style.can_own(nobody.creds, name) == expected, name

        # calling the service: Ping for all, Admin for root only, Shutdown for nobody at all
        cases = [("com.example.Reserved", "Ping", True, True),
                 ("com.example.Reserved.Admin", "Reset", False, True),
                 ("com.example.Reserved", "Shutdown", False, False)]
        root_peer = Probe(daemon.address)
        locals_.append(root_peer)
        for iface, member, nobody_may, root_may in cases:
            assert remote_call(nobody, iface, member) == model_call(
                nobody.creds, iface, member) == nobody_may, (iface, member)
            reply = root_peer.call_bus(
                new_method_call_for(DBusAddress("/", "com.example.Reserved", iface), member))
            assert (reply.header.message_type.name == "method_return") == model_call(
                root_creds, iface, member) == root_may, (iface, member)

        # bus methods: UpdateActivationEnvironment is denied to everyone by the policy
        assert not remote_call(nobody, BUS, "UpdateActivationEnvironment", BUS)
        assert not model_call(nobody.creds, BUS, "UpdateActivationEnvironment", BUS)
        assert not model_call(root_creds, BUS, "UpdateActivationEnvironment", BUS)

        # becoming a monitor
        monitoring = "org.freedesktop.DBus.Monitoring"
        denied = nobody.ask(op="call", dest=BUS, path="/org/freedesktop/DBus",
                            iface=monitoring, member="BecomeMonitor", signature="asu",
                            body=[[], 0])
        assert not denied["ok"] and "Rejected send message" in denied["text"]
        assert not model_call(nobody.creds, monitoring, "BecomeMonitor", BUS)
        monitor = Probe(daemon.address)
        locals_.append(monitor)
        became = monitor.call_bus(Monitoring().BecomeMonitor([]))
        assert became.header.message_type.name == "method_return"
        assert model_call(root_creds, monitoring, "BecomeMonitor", BUS)

        # the Audit signal reaches members of group 100 only
        for peer in (nobody, member_of_users):
            assert peer.ask(op="match", rule="type='signal',interface='com.example.Reserved.Audit'")["ok"]
        service.emit(new_signal(DBusAddress("/", interface="com.example.Reserved.Audit"),
                                "Event"))
        audit = MessageInfo(SIGNAL, path="/", interface="com.example.Reserved.Audit",
                            member="Event", sender=svc.unique)
        for peer, expected in ((nobody, False), (member_of_users, True)):
            got = ["com.example.Reserved.Audit", "Event"] in peer.ask(op="collect")["signals"]
            assert got == system_style.can_receive(peer.creds, audit, service_names,
                                                   requested_reply=False) == expected
    finally:
        if service is not None:
            service.stopping = True
            service.join(timeout=WAIT_SECONDS)
        for remote in remotes:
            remote.close()
        for probe in locals_:
            probe.close()
        daemon.stop()


def new_method_call_for(address: Any, member: str) -> Any:
    from jeepney import new_method_call

    return new_method_call(address, member)
