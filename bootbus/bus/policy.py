"""The bus security policy: dbus-daemon's <policy> rules as plain data, and its decisions.

Owns: the rule model (send, receive, own and connect rules), the assembly of one
connection's rule list from the contexts (default, then its groups, then its user,
then at_console, then mandatory), and the checks dbus-daemon makes with it:
whether a uid may connect, whether a connection may own a name, and whether a
message may be sent by its sender and received by one recipient. Never reads
files, never looks users up, never touches a socket or a clock: the config
parser builds the rules, and the router passes credentials and the names peers
hold.

Rules it keeps (dbus-daemon 1.14's bus/policy.c and bus/bus.c; where those and
the man page disagree, the code wins, because the reference daemon is what the
distribution's files were written against):
  * within a connection's list the last matching rule wins; nothing matching
    means deny, for sending, receiving and owning alike;
  * a connection's list is: default rules, then the rules of each of its groups
    (in ascending gid order), then its uid's rules, then at_console
    (true or false, only for connections with a uid), then mandatory; user= and
    group= rules (connect rules) are not part of it;
  * the list is then "optimized" as dbus-daemon does: a send rule that names no
    type, path, interface, member, error or destination drops every earlier
    send rule, likewise for receive rules and own="*". This is observable
    (a later <deny eavesdrop="true"/> discards earlier receive allows), and
    dbus-daemon 1.14 really does it;
  * connecting: the bus's own uid is allowed, then the default and mandatory
    user=/group= rules apply in order; per-user and per-group policies do not;
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
    elements ("a.b" matches "a.b" and "a.b.c", not "a.bc").
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Generic, Literal, Protocol, TypeVar

from ..wire.message import ERROR, METHOD_CALL, METHOD_RETURN, SIGNAL

# dbus-daemon's DBUS_MAXIMUM_MESSAGE_UNIX_FDS (DBUS_MAXIMUM_MESSAGE_LENGTH / 4): a rule
# whose max_fds is this has no upper bound; min_fds/max_fds must lie in [0, this].
RULE_FDS_UNBOUNDED = (128 * 1024 * 1024) // 4

# Policy.client_policy() remembers this many credentials' rule lists, then starts over.
MAX_CACHED_CLIENT_POLICIES = 1024

# The message type names of <allow send_type="..."> and receive_type, as in
# dbus_message_type_from_string().
MESSAGE_TYPES: Mapping[str, int] = {
    "method_call": METHOD_CALL,
    "method_return": METHOD_RETURN,
    "error": ERROR,
    "signal": SIGNAL,
}


class PolicyError(Exception):
    """A rule cannot go where it was put (e.g. a connect rule in a per-user policy)."""


# -- what the checks look at ------------------------------------------------------------


class MessageFields(Protocol):
    """The header fields the policy reads; bootbus.wire.message.Message has them all."""

    @property
    def type(self) -> int: ...
    @property
    def path(self) -> str | None: ...
    @property
    def interface(self) -> str | None: ...
    @property
    def member(self) -> str | None: ...
    @property
    def error_name(self) -> str | None: ...
    @property
    def destination(self) -> str | None: ...
    @property
    def sender(self) -> str | None: ...
    @property
    def reply_serial(self) -> int: ...
    @property
    def unix_fds(self) -> int: ...


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """A plain MessageFields, for tests and for checks on messages not yet built."""

    type: int
    path: str | None = None
    interface: str | None = None
    member: str | None = None
    error_name: str | None = None
    destination: str | None = None
    sender: str | None = None
    reply_serial: int = 0
    unix_fds: int = 0


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who is on the other end of a connection.

    ``uid`` is None only for ANONYMOUS connections. ``gids`` are the groups
    dbus-daemon 1.14 uses for <policy group=...>: the effective gid from
    SO_PEERCRED plus the supplementary groups from SO_PEERGROUPS; their order
    does not matter, group policies apply in ascending gid order (measured
    against dbus-daemon 1.14.10). For :meth:`Policy.can_connect` pass the
    user database's groups instead (getgrouplist). ``at_console`` is logind's
    answer to "does this uid have a seat" (sd_uid_get_seats() > 0).
    """

    uid: int | None
    gids: tuple[int, ...] = ()
    at_console: bool = False


class PeerNames(Collection[str]):
    """The names a peer answers to for send_destination/receive_sender: its unique
    name plus every well-known name it owns or is queued for. A view, not a copy."""

    __slots__ = ("unique", "well_known")

    def __init__(self, unique: str | None, well_known: AbstractSet[str] = frozenset()) -> None:
        self.unique = unique
        self.well_known = well_known

    def __contains__(self, name: object) -> bool:
        return name == self.unique or name in self.well_known

    def __iter__(self) -> Iterator[str]:
        if self.unique is not None:
            yield self.unique
        yield from self.well_known

    def __len__(self) -> int:
        return (self.unique is not None) + len(self.well_known)


# -- rules ---------------------------------------------------------------------------------
# Field values of None are wildcards (the config's "*" or an absent attribute).


@dataclass(frozen=True, slots=True)
class SendRule:
    allow: bool
    message_type: int | None = None
    path: str | None = None
    interface: str | None = None
    member: str | None = None
    error: str | None = None
    destination: str | None = None
    destination_is_prefix: bool = False
    broadcast: bool | None = None
    requested_reply: bool | None = None  # None: the default, which is ``allow``
    eavesdrop: bool = False
    min_fds: int = 0
    max_fds: int = RULE_FDS_UNBOUNDED
    log: bool = False


@dataclass(frozen=True, slots=True)
class ReceiveRule:
    allow: bool
    message_type: int | None = None
    path: str | None = None
    interface: str | None = None
    member: str | None = None
    error: str | None = None
    sender: str | None = None
    requested_reply: bool | None = None  # None: the default, which is ``allow``
    eavesdrop: bool = False
    min_fds: int = 0
    max_fds: int = RULE_FDS_UNBOUNDED


@dataclass(frozen=True, slots=True)
class OwnRule:
    allow: bool
    name: str | None = None  # None: own="*"
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class UserRule:
    """<allow user="..."/>: may a connection with this uid stay connected."""

    allow: bool
    uid: int | None = None  # None: user="*"


@dataclass(frozen=True, slots=True)
class GroupRule:
    allow: bool
    gid: int | None = None  # None: group="*"


Rule = SendRule | ReceiveRule | OwnRule | UserRule | GroupRule
ClientRule = SendRule | ReceiveRule | OwnRule


@dataclass(frozen=True, slots=True)
class Verdict:
    """One side's answer: the last matching rule's allow and log flag, and, for a
    refusal, how many rules matched (dbus-daemon quotes it in its AccessDenied
    text; it is not counted when the answer is yes)."""

    allowed: bool
    matched_rules: int | None = None
    log: bool = False


@dataclass(frozen=True, slots=True)
class DeliveryVerdict:
    """The answer for one (sender, recipient) pair; ``rejected_by`` says which side
    refused ("Rejected send message" / "Rejected receive message" in dbus-daemon)."""

    allowed: bool
    rejected_by: Literal["send", "receive"] | None
    matched_rules: int | None
    requested_reply: bool
    log: bool = False


# -- matching helpers ---------------------------------------------------------------------


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


# -- one connection's rules -----------------------------------------------------------------


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


# -- the whole policy ------------------------------------------------------------------------


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


# -- building -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a <policy> puts its rules: kind is default, mandatory, user, group or
    at_console; ``ident`` is the uid, gid, or 1/0 for at_console true/false."""

    kind: Literal["default", "mandatory", "user", "group", "at_console"]
    ident: int = 0


class PolicyBuilder:
    """Collects rules in file order; ``merge`` appends an included file's rules
    (bus_policy_merge), so rules keep the position of their <include>."""

    def __init__(self) -> None:
        self.default: list[Rule] = []
        self.mandatory: list[Rule] = []
        self.users: dict[int, list[ClientRule]] = {}
        self.groups: dict[int, list[ClientRule]] = {}
        self.console: dict[bool, list[Rule]] = {True: [], False: []}

    def append(self, scope: Scope, rule: Rule) -> None:
        if scope.kind == "default":
            self.default.append(rule)
        elif scope.kind == "mandatory":
            self.mandatory.append(rule)
        elif scope.kind == "at_console":
            self.console[bool(scope.ident)].append(rule)
        else:
            if isinstance(rule, (UserRule, GroupRule)):
                raise PolicyError(f"rule cannot be per-{scope.kind} because it has "
                                  "bus-global semantics")
            table = self.users if scope.kind == "user" else self.groups
            table.setdefault(scope.ident, []).append(rule)

    def merge(self, other: PolicyBuilder) -> None:
        self.default.extend(other.default)
        self.mandatory.extend(other.mandatory)
        for flag in (True, False):
            self.console[flag].extend(other.console[flag])
        for mine, theirs in ((self.users, other.users), (self.groups, other.groups)):
            for ident, rules in theirs.items():
                mine.setdefault(ident, []).extend(rules)

    def build(self) -> Policy:
        return Policy(
            default=tuple(self.default),
            mandatory=tuple(self.mandatory),
            users={uid: tuple(rules) for uid, rules in self.users.items()},
            groups={gid: tuple(rules) for gid, rules in self.groups.items()},
            at_console=tuple(self.console[True]),
            not_at_console=tuple(self.console[False]),
        )
