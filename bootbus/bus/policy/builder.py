"""Collecting a configuration's rules into a Policy, in file order, by context.

Owns: Scope (where a <policy> element puts its rules) and PolicyBuilder, which
the config parser feeds one rule at a time and merges included files into
(bus_policy_merge(), so rules keep the position of their <include>). Never
parses XML or looks users up (bootbus.io.busconfig does), never decides.

Rules it keeps: user= and group= rules (connect rules) are bus-global and may
not stand in a per-user or per-group policy (PolicyError, as dbus-daemon).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .engine import Policy
from .rules import ClientRule, GroupRule, PolicyError, Rule, UserRule


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
