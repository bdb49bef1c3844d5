"""The whole policy and its decisions: who may connect, and may a message be delivered.

Owns: Policy (every rule of a configuration, by context), the assembly of one
connection's rule list from the contexts, the connect check, and the
delivery decision for one (sender, recipient) pair, including when a reply
counts as requested. Never reads files, never looks users up, never touches
a socket or a clock: the config parser builds the rules, and the router
passes credentials and the names peers hold.

Rules it keeps (dbus-daemon 1.14's bus/policy.c and bus/bus.c):
  * a connection's list is: default rules, then the rules of each of its groups
    (in ascending gid order), then its uid's rules, then at_console
    (true or false, only for connections with a uid), then mandatory; user= and
    group= rules (connect rules) are not part of it;
  * the list is then optimized (.matching.optimize);
  * connecting: the bus's own uid is allowed, then the default and mandatory
    user=/group= rules apply in order; per-user and per-group policies do not;
  * a message is delivered if the sender's send rules allow it to this
    recipient (with the recipient's names) and the recipient's receive rules
    allow it from this sender; the bus driver has no rules of its own.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from .client import ClientPolicy
from .matching import optimize
from .rules import (
    ClientRule,
    Credentials,
    DeliveryVerdict,
    GroupRule,
    MessageFields,
    OwnRule,
    ReceiveRule,
    Rule,
    SendRule,
    UserRule,
)

# Policy.client_policy() remembers this many credentials' rule lists, then starts over.
MAX_CACHED_CLIENT_POLICIES = 1024


@dataclass(frozen=True)
class Policy:
    """Every rule of a configuration, by context, in file order within each context."""

    default: tuple[Rule, ...] = ()
    mandatory: tuple[Rule, ...] = ()
    users: Mapping[int, tuple[ClientRule, ...]] = field(default_factory=dict)
    groups: Mapping[int, tuple[ClientRule, ...]] = field(default_factory=dict)
    at_console: tuple[Rule, ...] = ()
    not_at_console: tuple[Rule, ...] = ()
    _cache: dict[Credentials, ClientPolicy] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def can_connect(self, creds: Credentials, *, bus_uid: int,
                    in_user_database: bool = True) -> bool:
        """bus_policy_allow_unix_user(): checked once a connection has authenticated.

        dbus-daemon 1.14 takes the groups for this check from the user database
        (getgrouplist), not from the socket; pass those in ``creds.gids``. A
        uid the user database does not know is refused whatever the rules say
        (dbus-daemon cannot get its groups); say so with ``in_user_database``.
        """
        if creds.uid is None or not in_user_database:
            return False
        allowed = creds.uid == bus_uid
        for rules in (self.default, self.mandatory):
            for rule in rules:
                if isinstance(rule, UserRule):
                    if rule.uid is None or rule.uid == creds.uid:
                        allowed = rule.allow
                elif isinstance(rule, GroupRule):
                    if rule.gid is None or rule.gid in creds.gids:
                        allowed = rule.allow
        return allowed

    def client_policy(self, creds: Credentials) -> ClientPolicy:
        """bus_policy_create_client_policy(): the ordered rule list of one connection.

        Remembered per credentials (a few hundred microseconds to build on
        Debian's system bus; a flood of connections from one uid builds one).
        """
        cached = self._cache.get(creds)
        if cached is None:
            if len(self._cache) >= MAX_CACHED_CLIENT_POLICIES:
                self._cache.clear()
            cached = self._cache[creds] = self._build_client_policy(creds)
        return cached

    def _build_client_policy(self, creds: Credentials) -> ClientPolicy:
        rules: list[ClientRule] = _per_client(self.default)
        if self.groups:
            for gid in sorted(set(creds.gids)):
                rules.extend(self.groups.get(gid, ()))
        if creds.uid is not None:
            rules.extend(self.users.get(creds.uid, ()))
            rules.extend(_per_client(self.at_console if creds.at_console
                                     else self.not_at_console))
        rules.extend(_per_client(self.mandatory))
        return ClientPolicy(optimize(rules))

    # Conveniences for one-off questions; the router should keep ClientPolicy objects.
    def can_own(self, creds: Credentials, name: str) -> bool:
        return self.client_policy(creds).can_own(name)

    def can_send(self, creds: Credentials, msg: MessageFields,
                 receiver_names: Collection[str] | None, *, requested_reply: bool) -> bool:
        return self.client_policy(creds).check_send(
            msg, receiver_names, requested_reply=requested_reply).allowed

    def can_receive(self, creds: Credentials, msg: MessageFields,
                    sender_names: Collection[str] | None, *, requested_reply: bool,
                    eavesdropping: bool = False) -> bool:
        return self.client_policy(creds).check_receive(
            msg, sender_names, requested_reply=requested_reply,
            eavesdropping=eavesdropping).allowed


def _per_client(rules: Sequence[Rule]) -> list[ClientRule]:
    return [r for r in rules if isinstance(r, (SendRule, ReceiveRule, OwnRule))]


# -- the delivery decision (bus_context_check_security_policy, policy part) ----------------------


def requested_reply_for(msg: MessageFields, *, from_driver: bool, to_driver: bool,
                        eavesdropping: bool, reply_expected: bool) -> bool:
    """Is ``msg`` a requested reply, in dbus-daemon's sense?

    ``reply_expected``: the router found (and will consume) a pending call from
    the recipient that this message answers. Replies from the bus driver count
    as requested; copies to eavesdroppers and messages to the driver never do.
    """
    if msg.reply_serial == 0:
        return False
    if from_driver:
        return not eavesdropping
    if to_driver or eavesdropping:
        return False
    return reply_expected


def check_delivery(msg: MessageFields, *,
                   sender: ClientPolicy | None, sender_names: Collection[str] | None,
                   recipient: ClientPolicy | None,
                   recipient_names: Collection[str] | None,
                   eavesdropping: bool = False,
                   reply_expected: bool = False) -> DeliveryVerdict:
    """May ``msg`` go from ``sender`` to this one recipient?

    ``sender`` None: the message comes from the bus driver (only the recipient's
    receive rules apply, receive_sender compares ``msg.sender``).
    ``recipient`` None: the message goes to the bus driver or starts an
    activation (only the send rules apply, send_destination compares
    ``msg.destination``); ``recipient_names`` is then ignored.
    ``eavesdropping``: the recipient is not the addressed recipient of a
    message that has a destination (an eavesdropping match rule).
    The send rules are evaluated for every recipient, with that recipient's names.
    """
    to_driver = recipient is None
    requested = requested_reply_for(msg, from_driver=sender is None, to_driver=to_driver,
                                    eavesdropping=eavesdropping,
                                    reply_expected=reply_expected)
    log = False
    if sender is not None:
        names = None if to_driver else recipient_names
        verdict = sender.check_send(msg, names, requested_reply=requested)
        if not verdict.allowed:
            return DeliveryVerdict(False, "send", verdict.matched_rules, requested, verdict.log)
        log = verdict.log
    if recipient is not None:
        verdict = recipient.check_receive(msg, sender_names if sender is not None else None,
                                          requested_reply=requested,
                                          eavesdropping=eavesdropping)
        if not verdict.allowed:
            return DeliveryVerdict(False, "receive", verdict.matched_rules, requested)
    return DeliveryVerdict(True, None, None, requested, log)
