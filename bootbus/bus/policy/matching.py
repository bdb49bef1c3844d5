"""One rule against one message or name: dbus-daemon's match_rule() tests, and optimize.

Owns: whether a send, receive or own rule applies (bus/policy.c's
bus_client_policy_check_can_send/receive/own loops, one rule at a time), and
bus_client_policy_optimize(). Never walks a connection's rule list or picks
a verdict (.client does), never builds rules (the config parser does).

Rules it keeps (dbus-daemon 1.14's bus/policy.c; where it and the man page
disagree, the code wins):
  * a reply (any message with a reply serial) is matched by an <allow> rule
    whose requested_reply is true (the default for <allow>) only if the reply
    was requested, unless the rule is eavesdrop="true"; a <deny> whose
    requested_reply is false (the default for <deny>) does not match a
    requested reply;
  * receive rules: an <allow> without eavesdrop="true" does not match while
    eavesdropping; a <deny eavesdrop="true"> matches only while eavesdropping;
  * an <allow> naming an interface does not match a message without one, a
    <deny> naming an interface does; path, member and error name match a
    message that lacks the field;
  * send_destination / receive_sender match when the peer is the primary or a
    queued owner of the name (its unique name counts); when the peer is the
    bus itself (or a service not yet activated) the message's destination /
    sender field is compared instead; prefixes match whole dot-separated
    elements ("a.b" matches "a.b" and "a.b.c", not "a.bc");
  * optimize: a send rule that names no type, path, interface, member, error or
    destination drops every earlier send rule, likewise for receive rules and
    own="*". This is observable (a later <deny eavesdrop="true"/> discards
    earlier receive allows), and dbus-daemon 1.14 really does it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from ...wire.message import SIGNAL
from .rules import (
    RULE_FDS_UNBOUNDED,
    ClientRule,
    MessageFields,
    OwnRule,
    ReceiveRule,
    SendRule,
)


def name_has_prefix(name: str, prefix: str) -> bool:
    """dbus-daemon's _dbus_string_starts_with_words_c_str(name, prefix, '.')."""
    return name == prefix or (name.startswith(prefix) and name[len(prefix)] == ".")


def is_broadcast(msg: MessageFields) -> bool:
    return msg.destination is None and msg.type == SIGNAL


def _fields_match(rule: SendRule | ReceiveRule, msg: MessageFields) -> bool:
    """Path, interface, member, error name and fd count: the checks both sides share."""
    if rule.path is not None and msg.path is not None and msg.path != rule.path:
        return False
    if rule.interface is not None:
        if msg.interface is None:
            if rule.allow:
                return False
        elif msg.interface != rule.interface:
            return False
    if rule.member is not None and msg.member is not None and msg.member != rule.member:
        return False
    if rule.error is not None and msg.error_name is not None and msg.error_name != rule.error:
        return False
    if rule.min_fds > 0 or rule.max_fds < RULE_FDS_UNBOUNDED:
        if not rule.min_fds <= msg.unix_fds <= rule.max_fds:
            return False
    return True


def _reply_flags_match(rule: SendRule | ReceiveRule, msg: MessageFields,
                       requested_reply: bool) -> bool:
    if msg.reply_serial == 0:
        return True
    wants_requested = rule.allow if rule.requested_reply is None else rule.requested_reply
    if rule.allow and not requested_reply and wants_requested and not rule.eavesdrop:
        return False
    if not rule.allow and requested_reply and not wants_requested:
        return False
    return True


def send_rule_matches(rule: SendRule, msg: MessageFields, receiver_names: Collection[str] | None,
                      requested_reply: bool) -> bool:
    """Does ``rule`` apply to ``msg`` going to a receiver holding ``receiver_names``
    (None: the receiver is the bus driver, or a service about to be activated)?"""
    if rule.message_type is not None and msg.type != rule.message_type:
        return False
    if not _reply_flags_match(rule, msg, requested_reply):
        return False
    if not _fields_match(rule, msg):
        return False
    if rule.broadcast is not None and rule.broadcast != is_broadcast(msg):
        return False
    if rule.destination is not None:
        if not _destination_matches(rule.destination, rule.destination_is_prefix, msg,
                                    receiver_names):
            return False
    return True


def _destination_matches(name: str, is_prefix: bool, msg: MessageFields,
                         receiver_names: Collection[str] | None) -> bool:
    if receiver_names is None:
        if msg.destination is None:
            return False
        return name_has_prefix(msg.destination, name) if is_prefix else msg.destination == name
    if is_prefix:
        return any(name_has_prefix(owned, name) for owned in receiver_names)
    return name in receiver_names


def receive_rule_matches(rule: ReceiveRule, msg: MessageFields,
                         sender_names: Collection[str] | None, requested_reply: bool,
                         eavesdropping: bool) -> bool:
    """Does ``rule`` apply to ``msg`` from a sender holding ``sender_names``
    (None: the sender is the bus driver, compare the sender field)?"""
    if rule.message_type is not None and msg.type != rule.message_type:
        return False
    if eavesdropping and rule.allow and not rule.eavesdrop:
        return False
    if not eavesdropping and not rule.allow and rule.eavesdrop:
        return False
    if not _reply_flags_match(rule, msg, requested_reply):
        return False
    if not _fields_match(rule, msg):
        return False
    if rule.sender is not None:
        if sender_names is None:
            if msg.sender != rule.sender:
                return False
        elif rule.sender not in sender_names:
            return False
    return True


def own_rule_matches(rule: OwnRule, name: str) -> bool:
    if rule.name is None:
        return True
    return name_has_prefix(name, rule.name) if rule.prefix else name == rule.name


def _is_blanket(rule: ClientRule) -> bool:
    """bus_client_policy_optimize()'s test: does this rule drop earlier rules of its kind?"""
    if isinstance(rule, OwnRule):
        return rule.name is None
    common = (rule.message_type is None and rule.path is None and rule.interface is None
              and rule.member is None and rule.error is None)
    if isinstance(rule, SendRule):
        return common and rule.destination is None
    return common and rule.sender is None


def optimize(rules: Sequence[ClientRule]) -> tuple[ClientRule, ...]:
    """Drop every rule that precedes a blanket rule of the same kind."""
    last_blanket: dict[type, int] = {}
    for index, rule in enumerate(rules):
        if _is_blanket(rule):
            last_blanket[type(rule)] = index
    return tuple(rule for index, rule in enumerate(rules)
                 if index >= last_blanket.get(type(rule), 0))
