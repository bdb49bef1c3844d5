"""One connection's rules: the ordered list, indexed, and its send/receive/own checks.

Owns: ClientPolicy, the rule list that applies to one connection (built by
.engine's Policy.client_policy), and the index that lets a check visit only
the rules that can match. Never assembles the list (which contexts, in which
order: .engine does), never decides whether a single rule matches (.matching).

Rules it keeps (dbus-daemon 1.14's bus/policy.c): within a connection's list
the last matching rule wins; nothing matching means deny, for sending,
receiving and owning alike; a refusal counts every matching rule (quoted in
dbus-daemon's AccessDenied text).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .matching import own_rule_matches, receive_rule_matches, send_rule_matches
from .rules import ClientRule, MessageFields, OwnRule, ReceiveRule, SendRule, Verdict

_R = TypeVar("_R", SendRule, ReceiveRule)


class _Bucket:
    """Positions of rules, split by the member they name (None: any member)."""

    __slots__ = ("any_member", "by_member", "every")

    def __init__(self, positions: list[tuple[int, str | None]]) -> None:
        self.any_member = tuple(i for i, member in positions if member is None)
        by_member: dict[str, list[int]] = {}
        for i, member in positions:
            if member is not None:
                by_member.setdefault(member, []).append(i)
        self.by_member = {m: tuple(v) for m, v in by_member.items()}
        self.every = tuple(i for i, _ in positions)

    def add_to(self, found: list[int], member: str | None) -> None:
        if member is None:
            found.extend(self.every)
        else:
            found.extend(self.any_member)
            found.extend(self.by_member.get(member, ()))


class _Indexed(Generic[_R]):
    """Rules of one kind, in order, indexed by the exact name and member they need.

    A check only needs the rules that can match. A rule naming an exact
    destination (or sender) can only match when the peer holds that name, and
    one naming a member only a message with that member (or none), so those
    are looked up instead of scanned. The answer is the last match, so the
    candidates are walked from the end.
    """

    __slots__ = ("rules", "unindexed", "by_name")

    def __init__(self, rules: tuple[_R, ...], key: Sequence[str | None]) -> None:
        self.rules: tuple[_R, ...] = rules
        self.unindexed = _Bucket([(i, r.member) for i, (r, k) in enumerate(zip(rules, key))
                                  if k is None])
        by_name: dict[str, list[tuple[int, str | None]]] = {}
        for i, (rule, name) in enumerate(zip(rules, key)):
            if name is not None:
                by_name.setdefault(name, []).append((i, rule.member))
        self.by_name = {name: _Bucket(v) for name, v in by_name.items()}

    def candidates(self, names: Collection[str] | None, field_value: str | None,
                   member: str | None) -> list[int]:
        """Positions of the rules that may match, highest first."""
        found: list[int] = []
        self.unindexed.add_to(found, member)
        if not self.by_name:
            pass
        elif names is None:
            if field_value is not None and field_value in self.by_name:
                self.by_name[field_value].add_to(found, member)
        elif len(names) < len(self.by_name):
            for name in names:
                bucket = self.by_name.get(name)
                if bucket is not None:
                    bucket.add_to(found, member)
        else:
            for name, bucket in self.by_name.items():
                if name in names:
                    bucket.add_to(found, member)
        found.sort(reverse=True)
        return found


@dataclass(frozen=True)
class ClientPolicy:
    """The rules that apply to one connection, in evaluation order.

    Build it once per connection with :meth:`Policy.client_policy` (and again
    after a reload); the checks are then cheap.
    """

    rules: tuple[ClientRule, ...]
    _send: _Indexed[SendRule] = field(init=False, repr=False, compare=False)
    _receive: _Indexed[ReceiveRule] = field(init=False, repr=False, compare=False)
    _own: tuple[OwnRule, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        send = tuple(r for r in self.rules if isinstance(r, SendRule))
        receive = tuple(r for r in self.rules if isinstance(r, ReceiveRule))
        object.__setattr__(self, "_send", _Indexed(
            send, [None if r.destination_is_prefix else r.destination for r in send]))
        object.__setattr__(self, "_receive", _Indexed(receive, [r.sender for r in receive]))
        object.__setattr__(self, "_own", tuple(r for r in self.rules if isinstance(r, OwnRule)))

    def can_own(self, name: str) -> bool:
        for rule in reversed(self._own):
            if own_rule_matches(rule, name):
                return rule.allow
        return False

    def check_send(self, msg: MessageFields, receiver_names: Collection[str] | None, *,
                   requested_reply: bool) -> Verdict:
        """This connection's send rules for ``msg`` to one receiver.

        ``receiver_names``: the names the proposed recipient holds (a PeerNames),
        or None when the recipient is the bus driver or a service to activate.
        """
        index = self._send
        rules = index.rules
        for i in index.candidates(receiver_names, msg.destination, msg.member):
            rule = rules[i]
            if send_rule_matches(rule, msg, receiver_names, requested_reply):
                if rule.allow:
                    return Verdict(True, None, rule.log)
                return Verdict(False, self._count_send(msg, receiver_names, requested_reply),
                               rule.log)
        return Verdict(False, 0)

    def check_receive(self, msg: MessageFields, sender_names: Collection[str] | None, *,
                      requested_reply: bool, eavesdropping: bool) -> Verdict:
        """This connection's receive rules for ``msg`` from one sender.

        ``sender_names``: the names the sender holds, or None when the sender is
        the bus driver (receive_sender is then compared with ``msg.sender``).
        """
        index = self._receive
        rules = index.rules
        for i in index.candidates(sender_names, msg.sender, msg.member):
            rule = rules[i]
            if receive_rule_matches(rule, msg, sender_names, requested_reply, eavesdropping):
                if rule.allow:
                    return Verdict(True)
                return Verdict(False, len([
                    r for r in rules
                    if receive_rule_matches(r, msg, sender_names, requested_reply,
                                            eavesdropping)]))
        return Verdict(False, 0)

    def _count_send(self, msg: MessageFields, receiver_names: Collection[str] | None,
                    requested_reply: bool) -> int:
        return len([r for r in self._send.rules
                    if send_rule_matches(r, msg, receiver_names, requested_reply)])
