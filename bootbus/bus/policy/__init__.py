"""The bus security policy: dbus-daemon's <policy> rules as plain data, and its decisions.

Owns: the rule model (send, receive, own and connect rules), the assembly of one
connection's rule list from the contexts (default, then its groups, then its user,
then at_console, then mandatory), and the checks dbus-daemon makes with it:
whether a uid may connect, whether a connection may own a name, and whether a
message may be sent by its sender and received by one recipient. Never reads
files, never looks users up, never touches a socket or a clock: the config
parser builds the rules, and the router passes credentials and the names peers
hold.

Rules it keeps: dbus-daemon 1.14's bus/policy.c and bus/bus.c; where those and
the man page disagree, the code wins, because the reference daemon is what the
distribution's files were written against. Each module lists the rules it
implements:
  .rules     the rule types, credentials, PeerNames, verdicts (plain data)
  .matching  one rule against one message or name; the list optimization
  .client    ClientPolicy: one connection's rule list, indexed, and its checks
  .engine    Policy: list assembly, the connect check, the delivery decision
  .builder   Scope and PolicyBuilder, which the config parser fills
Imports go rules <- matching <- client <- engine <- builder; this module only
re-exports their public names, which are the import path the rest of bootbus
and the tests use (a module's bounds stay in that module: patch them there).
"""

from __future__ import annotations

from .builder import PolicyBuilder, Scope
from .client import ClientPolicy
from .engine import Policy, check_delivery, requested_reply_for
from .matching import (
    is_broadcast,
    name_has_prefix,
    optimize,
    own_rule_matches,
    receive_rule_matches,
    send_rule_matches,
)
from .rules import (
    MESSAGE_TYPES,
    RULE_FDS_UNBOUNDED,
    ClientRule,
    Credentials,
    DeliveryVerdict,
    GroupRule,
    MessageFields,
    MessageInfo,
    OwnRule,
    PeerNames,
    PolicyError,
    ReceiveRule,
    Rule,
    SendRule,
    UserRule,
    Verdict,
)

__all__ = [
    "MESSAGE_TYPES",
    "RULE_FDS_UNBOUNDED",
    "ClientPolicy",
    "ClientRule",
    "Credentials",
    "DeliveryVerdict",
    "GroupRule",
    "MessageFields",
    "MessageInfo",
    "OwnRule",
    "PeerNames",
    "Policy",
    "PolicyBuilder",
    "PolicyError",
    "ReceiveRule",
    "Rule",
    "Scope",
    "SendRule",
    "UserRule",
    "Verdict",
    "check_delivery",
    "is_broadcast",
    "name_has_prefix",
    "optimize",
    "own_rule_matches",
    "receive_rule_matches",
    "requested_reply_for",
    "send_rule_matches",
]
