"""<policy>, <allow> and <deny>: turning the elements into bootbus.bus.policy rules.

Owns: the attributes a rule element may carry and which go together
(append_rule_from_element() in dbus-daemon 1.14's bus/config-parser.c), the
values they take, the Scope of a <policy> element, and user and group names
turned into ids. Never decides what a rule allows (bootbus.bus.policy does),
never follows the XML itself: the file parser in .reader hands it one
element's attributes at a time and it reports through that parser.

Rules it keeps: element and attribute errors are fatal and say where; rules
with an unknown user or group, and policies for an unknown user or group, are
dropped with a warning; "*" is the wildcard, which the rules spell None.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ...bus.policy import (
    MESSAGE_TYPES,
    RULE_FDS_UNBOUNDED,
    GroupRule,
    OwnRule,
    ReceiveRule,
    Rule,
    Scope,
    SendRule,
    UserRule,
)
from .model import STRTOL, ConfigError, Reporter, UserDatabase, allowed_attributes

_SEND_ATTRS = ("send_interface", "send_member", "send_error", "send_destination",
               "send_destination_prefix", "send_path", "send_type", "send_broadcast",
               "send_requested_reply")
_RECEIVE_ATTRS = ("receive_interface", "receive_member", "receive_error", "receive_sender",
                  "receive_path", "receive_type", "receive_requested_reply")
_RULE_ATTRS = frozenset(_SEND_ATTRS + _RECEIVE_ATTRS + (
    "eavesdrop", "max_fds", "min_fds", "own", "own_prefix", "user", "group", "log"))
_NUMBER = re.compile(r"[0-9]+")


class PolicyElements:
    """Reads one file's <policy> and <allow>/<deny> elements; errors and warnings
    go to ``where`` (the file parser, which knows the line)."""

    def __init__(self, where: Reporter, users: UserDatabase) -> None:
        self.where = where
        self.users = users

    def error(self, message: str) -> ConfigError:
        return self.where.error(message)

    def warn(self, message: str, line: int | None = None) -> None:
        self.where.warn(message, line)

    def scope(self, attrs: Mapping[str, str]) -> Scope | None:
        """The Scope of a <policy> element; None: the policy is ignored (unknown
        user or group)."""
        allowed_attributes(self, "policy", attrs, ("context", "user", "group", "at_console"))
        if len(attrs) != 1:
            raise self.error("<policy> element must have exactly one of "
                             "(context|user|group|at_console) attributes")
        ((attr, value),) = attrs.items()
        if attr == "context":
            if value == "default":
                return Scope("default")
            if value == "mandatory":
                return Scope("mandatory")
            raise self.error('context attribute on <policy> must have the value "default" or '
                             f'"mandatory", not "{value}"')
        if attr == "at_console":
            if value not in ("true", "false"):
                raise self.error(f'Unknown value "{value}" for at_console in message bus '
                                 "configuration file")
            return Scope("at_console", int(value == "true"))
        if attr == "user":
            uid = self._uid(value)
            if uid is None:
                self.warn(f'Unknown username "{value}" in message bus configuration file')
                return None
            return Scope("user", uid)
        gid = self._gid(value)
        if gid is None:
            self.warn(f'Unknown group "{value}" in message bus configuration file')
            return None
        return Scope("group", gid)

    def _uid(self, name: str) -> int | None:
        return int(name) if _NUMBER.fullmatch(name) else self.users.uid(name)

    def _gid(self, name: str) -> int | None:
        return int(name) if _NUMBER.fullmatch(name) else self.users.gid(name)

    def rule(self, element: str, attrs: Mapping[str, str]) -> Rule | None:
        """append_rule_from_element(): validate like dbus-daemon, then build."""
        allowed_attributes(self, element, attrs, _RULE_ATTRS)
        any_send = any(a in attrs for a in _SEND_ATTRS)
        any_receive = any(a in attrs for a in _RECEIVE_ATTRS) or (
            not any_send and "eavesdrop" in attrs)
        any_message = any_send or any_receive or any(
            a in attrs for a in ("eavesdrop", "max_fds", "min_fds"))
        others = [a for a in ("own", "own_prefix", "user", "group") if a in attrs]
        if not (any_send or any_receive or others):
            raise self.error(f"Element <{element}> must have one or more attributes")
        for side in ("send", "receive"):
            if (f"{side}_member" in attrs and f"{side}_interface" not in attrs
                    and f"{side}_path" not in attrs):
                raise self.error(f"On element <{element}>, if you specify a member you must "
                                 "specify an interface or a path. Keep in mind that not all "
                                 "messages have an interface field.")
        invalid = f"Invalid combination of attributes on element <{element}>: "
        if any_message + len(others) > 1:
            raise self.error(invalid + "own, own_prefix, user, group and the message-related "
                                       "attributes cannot be combined")
        if any_send and any_receive:
            raise self.error(invalid + "send and receive attributes cannot be combined")
        for side in ("send", "receive"):
            if f"{side}_error" in attrs and (f"{side}_member" in attrs
                                             or f"{side}_interface" in attrs):
                raise self.error(invalid + f"{side}_error cannot be combined with "
                                           f"{side}_member or {side}_interface")
        if "send_destination" in attrs and "send_destination_prefix" in attrs:
            raise self.error(invalid + "send_destination cannot be combined with "
                                       "send_destination_prefix")
        allow = element == "allow"
        if any_send:
            return self._send_rule(allow, attrs)
        if any_receive:
            return self._receive_rule(allow, attrs)
        return self._other_rule(element, allow, attrs)

    def _bool(self, attrs: Mapping[str, str], attr: str) -> bool | None:
        value = attrs.get(attr)
        if value is None:
            return None
        if value not in ("true", "false"):
            raise self.error(f'Bad value "{value}" for {attr} attribute, must be true or false')
        return value == "true"

    def _message_type(self, attrs: Mapping[str, str], attr: str) -> int | None:
        value = _wild(attrs.get(attr))
        if value is None:
            return None
        if value not in MESSAGE_TYPES:
            raise self.error(f'Bad message type "{value}"')
        return MESSAGE_TYPES[value]

    def _fds(self, attrs: Mapping[str, str], attr: str, default: int) -> int:
        value = attrs.get(attr)
        if value is None:
            return default
        m = STRTOL.match(value)
        number = int(m.group(1)) if m and m.end() == len(value) else -1
        if not 0 <= number <= RULE_FDS_UNBOUNDED:
            raise self.error(f'Bad value "{value}" for {attr} attribute, must be an integer in '
                             f"range 0 to {RULE_FDS_UNBOUNDED} inclusive")
        return number

    def _send_rule(self, allow: bool, attrs: Mapping[str, str]) -> SendRule:
        message_type = self._message_type(attrs, "send_type")
        eavesdrop = self._bool(attrs, "eavesdrop")
        broadcast = self._bool(attrs, "send_broadcast")
        destination = _wild(attrs.get("send_destination"))
        if destination is not None and broadcast:
            raise self.error(f'Rule with send_broadcast="true" and send_destination='
                             f'"{destination}" cannot match anything')
        requested_reply = self._bool(attrs, "send_requested_reply")
        max_fds = self._fds(attrs, "max_fds", RULE_FDS_UNBOUNDED)
        min_fds = self._fds(attrs, "min_fds", 0)
        prefix = attrs.get("send_destination_prefix")
        return SendRule(
            allow=allow, message_type=message_type, path=_wild(attrs.get("send_path")),
            interface=_wild(attrs.get("send_interface")), member=_wild(attrs.get("send_member")),
            error=_wild(attrs.get("send_error")),
            destination=prefix if prefix is not None else destination,
            destination_is_prefix=prefix is not None, broadcast=broadcast,
            requested_reply=requested_reply, eavesdrop=bool(eavesdrop),
            min_fds=min_fds, max_fds=max_fds, log=attrs.get("log") == "true")

    def _receive_rule(self, allow: bool, attrs: Mapping[str, str]) -> ReceiveRule:
        message_type = self._message_type(attrs, "receive_type")
        eavesdrop = self._bool(attrs, "eavesdrop")
        requested_reply = self._bool(attrs, "receive_requested_reply")
        max_fds = self._fds(attrs, "max_fds", RULE_FDS_UNBOUNDED)
        min_fds = self._fds(attrs, "min_fds", 0)
        return ReceiveRule(
            allow=allow, message_type=message_type, path=_wild(attrs.get("receive_path")),
            interface=_wild(attrs.get("receive_interface")),
            member=_wild(attrs.get("receive_member")), error=_wild(attrs.get("receive_error")),
            sender=_wild(attrs.get("receive_sender")), requested_reply=requested_reply,
            eavesdrop=bool(eavesdrop), min_fds=min_fds, max_fds=max_fds)

    def _other_rule(self, element: str, allow: bool, attrs: Mapping[str, str]) -> Rule | None:
        if "own" in attrs:
            return OwnRule(allow, _wild(attrs["own"]))
        if "own_prefix" in attrs:
            return OwnRule(allow, attrs["own_prefix"], prefix=True)
        if "user" in attrs:
            user = attrs["user"]
            if user == "*":
                return UserRule(allow)
            uid = self._uid(user)
            if uid is None:
                self.warn(f'Unknown username "{user}" on element <{element}>')
                return None
            return UserRule(allow, uid)
        group = attrs["group"]
        if group == "*":
            return GroupRule(allow)
        gid = self._gid(group)
        if gid is None:
            self.warn(f'Unknown group "{group}" on element <{element}>')
            return None
        return GroupRule(allow, gid)


def _wild(value: str | None) -> str | None:
    """In the config "*" is the wildcard; in the rules it is None."""
    return None if value == "*" else value
