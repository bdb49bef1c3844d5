"""Match rules: parsing the specification's grammar and matching messages.

Owns: the text form of a rule (``key='value',...``) with its quoting rules,
its bounds, and the predicate "does this message match this rule". Sender
rules naming a well-known name are resolved by the caller through a lookup
function, since ownership changes while the rule stays. Never builds messages.
"""

from __future__ import annotations

from collections.abc import Callable

from ..plain import FrozenFields
from ..wire import message as m
from ..wire.names import (
    is_bus_name,
    is_interface_name,
    is_member_name,
    is_object_path,
    is_unique_name,
)
from ..wire.signature import split_signature

TYPE_CHECKING = False  # typing's, without importing typing (see bootbus.plain)
if TYPE_CHECKING:
    from typing import Any

MAX_RULE_LENGTH = 1024  # dbus-daemon's DBUS_MAXIMUM_MATCH_RULE_LENGTH
MAX_ARG_INDEX = 63  # DBUS_MAXIMUM_MATCH_RULE_ARG_NUMBER
_TYPES = {"signal": m.SIGNAL, "method_call": m.METHOD_CALL, "method_return": m.METHOD_RETURN,
          "error": m.ERROR}


class MatchRuleError(Exception):
    """The text is not a valid match rule."""


class MatchRuleTooLong(MatchRuleError):
    """The rule exceeds MAX_RULE_LENGTH (a limit, not a syntax error)."""


class MatchRule(FrozenFields):
    """A parsed rule: read-only, hashable, equal to a rule with the same fields."""

    __slots__ = _fields = ("text", "type", "sender", "interface", "member", "path",
                           "path_namespace", "destination", "args", "arg_paths",
                           "arg0namespace", "eavesdrop")

    text: str
    type: int | None
    sender: str | None
    interface: str | None
    member: str | None
    path: str | None
    path_namespace: str | None
    destination: str | None
    args: tuple[tuple[int, str], ...]
    arg_paths: tuple[tuple[int, str], ...]
    arg0namespace: str | None
    eavesdrop: bool

    def __init__(self, text: str, type: int | None = None, sender: str | None = None,
                 interface: str | None = None, member: str | None = None,
                 path: str | None = None, path_namespace: str | None = None,
                 destination: str | None = None, args: tuple[tuple[int, str], ...] = (),
                 arg_paths: tuple[tuple[int, str], ...] = (), arg0namespace: str | None = None,
                 eavesdrop: bool = False) -> None:
        init = object.__setattr__
        init(self, "text", text)
        init(self, "type", type)
        init(self, "sender", sender)
        init(self, "interface", interface)
        init(self, "member", member)
        init(self, "path", path)
        init(self, "path_namespace", path_namespace)
        init(self, "destination", destination)
        init(self, "args", args)
        init(self, "arg_paths", arg_paths)
        init(self, "arg0namespace", arg0namespace)
        init(self, "eavesdrop", eavesdrop)

    @property
    def needs_body(self) -> bool:
        return bool(self.args or self.arg_paths or self.arg0namespace is not None)

    def key(self) -> tuple[Any, ...]:
        """Rules equal in this key are the same rule (RemoveMatch compares this)."""
        return (self.type, self.sender, self.interface, self.member, self.path,
                self.path_namespace, self.destination, self.args, self.arg_paths,
                self.arg0namespace, self.eavesdrop)


def _tokens(text: str) -> list[tuple[str, str]]:
    """Split ``key='value',...`` honouring the spec's quoting: inside quotes
    everything is literal up to the next quote; outside, ``\\'`` is a quote."""
    pairs = []
    pos = 0
    n = len(text)
    while pos < n:
        while pos < n and text[pos] in " \t\n":
            pos += 1
        if pos >= n:
            break
        eq = text.find("=", pos)
        if eq < 0:
            raise MatchRuleError(f"match rule {text!r}: key without value")
        key = text[pos:eq].strip()
        pos = eq + 1
        value = []
        quoted = False
        while pos < n:
            ch = text[pos]
            if quoted:
                if ch == "'":
                    quoted = False
                else:
                    value.append(ch)
            elif ch == "'":
                quoted = True
            elif ch == "\\" and pos + 1 < n and text[pos + 1] == "'":
                value.append("'")
                pos += 1
            elif ch == ",":
                break
            else:
                value.append(ch)
            pos += 1
        if quoted:
            raise MatchRuleError(f"match rule {text!r}: unterminated quote")
        pairs.append((key, "".join(value)))
        pos += 1
    return pairs


def parse_rule(text: str) -> MatchRule:
    if len(text.encode()) > MAX_RULE_LENGTH:
        raise MatchRuleTooLong(f"Match rule text is {len(text.encode())} bytes, maximum is "
                               f"{MAX_RULE_LENGTH}")
    fields: dict[str, Any] = {}
    args: dict[int, str] = {}
    arg_paths: dict[int, str] = {}
    for key, value in _tokens(text):
        if key in fields and key != "eavesdrop":  # dbus-daemon: eavesdrop may repeat, last wins
            raise MatchRuleError(f"match rule {text!r} has key {key!r} twice")
        if key == "type":
            if value not in _TYPES:
                raise MatchRuleError(f"match rule type {value!r} is not a message type")
            fields[key] = _TYPES[value]
        elif key in ("sender", "destination"):
            if not is_bus_name(value):
                raise MatchRuleError(f"match rule {key} {value!r} is not a bus name")
            fields[key] = value
        elif key == "interface":
            if not is_interface_name(value):
                raise MatchRuleError(f"match rule interface {value!r} is invalid")
            fields[key] = value
        elif key == "member":
            if not is_member_name(value):
                raise MatchRuleError(f"match rule member {value!r} is invalid")
            fields[key] = value
        elif key in ("path", "path_namespace"):
            if not is_object_path(value):
                raise MatchRuleError(f"match rule {key} {value!r} is not an object path")
            fields[key] = value
        elif key == "eavesdrop":
            if value not in ("true", "false"):
                raise MatchRuleError("match rule eavesdrop must be 'true' or 'false'")
            fields[key] = value == "true"
        elif key == "arg0namespace":
            if not _is_namespace(value):
                raise MatchRuleError(f"match rule arg0namespace {value!r} is invalid")
            fields[key] = value
        elif key.startswith("arg"):
            _arg_key(key, value, args, arg_paths, text)
            fields[key] = value
        else:
            raise MatchRuleError(f"match rule {text!r} has unknown key {key!r}")
    if "arg0namespace" in fields and (0 in args or 0 in arg_paths):
        raise MatchRuleError("Argument arg0namespace matched more than once")
    if "path" in fields and "path_namespace" in fields:
        raise MatchRuleError("match rule has both path and path_namespace")
    for dup in ("args", "arg_paths"):
        fields.pop(dup, None)
    return MatchRule(
        text=text, type=fields.get("type"), sender=fields.get("sender"),
        interface=fields.get("interface"), member=fields.get("member"),
        path=fields.get("path"), path_namespace=fields.get("path_namespace"),
        destination=fields.get("destination"), args=tuple(sorted(args.items())),
        arg_paths=tuple(sorted(arg_paths.items())), arg0namespace=fields.get("arg0namespace"),
        eavesdrop=fields.get("eavesdrop", False),
    )


def _arg_key(key: str, value: str, args: dict[int, str], arg_paths: dict[int, str],
             text: str) -> None:
    digits = key[3:]
    is_path = digits.endswith("path")
    if is_path:
        digits = digits[:-4]
    if not digits.isdigit() or (len(digits) > 1 and digits[0] == "0"):
        raise MatchRuleError(f"match rule {text!r} has unknown key {key!r}")
    index = int(digits)
    if index > MAX_ARG_INDEX:
        raise MatchRuleError(f"match rule argument index {index} exceeds {MAX_ARG_INDEX}")
    if index in args or index in arg_paths:
        raise MatchRuleError(f"match rule {text!r} matches argument {index} twice")
    (arg_paths if is_path else args)[index] = value


def _is_namespace(value: str) -> bool:
    # a bus name or interface prefix; a single element is allowed too
    return is_bus_name(value) or is_bus_name(value + ".x")


def _path_prefix_match(rule_path: str, arg: str) -> bool:
    if arg == rule_path:
        return True
    if rule_path.endswith("/") and arg.startswith(rule_path):
        return True
    return arg.endswith("/") and rule_path.startswith(arg)


SenderCheck = Callable[[str, str], bool]  # (rule sender, message sender) -> owns?


def matches(rule: MatchRule, msg: m.Message, sender: str | None,
            sender_owns: SenderCheck, body: Callable[[], list[Any] | None]) -> bool:
    """Does ``msg`` (sent by ``sender``) match ``rule``? ``body`` unmarshals lazily."""
    if rule.type is not None and rule.type != msg.type:
        return False
    if rule.interface is not None and rule.interface != msg.interface:
        return False
    if rule.member is not None and rule.member != msg.member:
        return False
    if rule.path is not None and rule.path != msg.path:
        return False
    if rule.path_namespace is not None:
        ns = rule.path_namespace
        path = msg.path
        if path is None:
            return False
        if ns != "/" and path != ns and not path.startswith(ns + "/"):
            return False
    if rule.destination is not None and rule.destination != msg.destination:
        # the rule names a connection: it matches messages to a name it owns too
        dest = msg.destination
        if dest is None or is_unique_name(dest) or not sender_owns(dest, rule.destination):
            return False
    if rule.sender is not None and rule.sender != sender:
        if sender is None or is_unique_name(rule.sender) or not sender_owns(rule.sender, sender):
            return False
    if rule.needs_body:
        return _match_args(rule, msg, body())
    return True


def _match_args(rule: MatchRule, msg: m.Message, args: list[Any] | None) -> bool:
    if args is None:
        return False
    codes = split_signature(msg.signature)
    for index, expected in rule.args:
        if index >= len(args) or codes[index] != "s" or args[index] != expected:
            return False
    for index, expected in rule.arg_paths:
        if index >= len(args) or codes[index] not in ("s", "o"):
            return False
        if not _path_prefix_match(expected, args[index]):
            return False
    if rule.arg0namespace is not None:
        if not args or codes[0] != "s":
            return False
        ns = rule.arg0namespace
        value = args[0]
        if value != ns and not value.startswith(ns + "."):
            return False
    return True
