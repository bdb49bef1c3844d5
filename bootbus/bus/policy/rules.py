"""The policy's vocabulary: rules as plain data, what a check looks at, what it answers.

Owns: the rule types of dbus-daemon's <policy> (send, receive, own, user and
group rules; None in a field is the config's "*" or an absent attribute), the
bound on a rule's fd counts, the message type names of send_type and
receive_type, the fields of a message a check reads (MessageFields), a
connection's credentials, the names a peer answers to (PeerNames), and the
verdicts the checks return. Never decides anything: matching lives in
.matching, the per-connection checks in .client, the whole policy in .engine;
never imports them (they import this).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Literal, Protocol

from ...wire.message import ERROR, METHOD_CALL, METHOD_RETURN, SIGNAL

# dbus-daemon's DBUS_MAXIMUM_MESSAGE_UNIX_FDS (DBUS_MAXIMUM_MESSAGE_LENGTH / 4): a rule
# whose max_fds is this has no upper bound; min_fds/max_fds must lie in [0, this].
RULE_FDS_UNBOUNDED = (128 * 1024 * 1024) // 4

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
