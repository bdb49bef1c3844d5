"""dbus-daemon's <busconfig> files: reading them into a BusConfig.

Owns: parsing configuration files with expat (so every error names its file
and line), following <include> and <includedir>, turning <policy> elements
into bootbus.bus.policy rules (user and group names become ids here), and
dbus-daemon's defaults for limits and for the standard service directories.
Never opens a socket, never changes the process (no setuid, fork, umask or
pidfile): it only describes what the files ask for. The policy decisions
themselves live in bootbus.bus.policy.

Rules it keeps (dbus-daemon 1.14's bus/config-parser.c):
  * element and attribute errors are fatal and say where; rules with an
    unknown user or group, and policies for an unknown user or group, are
    dropped with a warning;
  * an included file is a whole <busconfig>; its rules land where the
    <include> stands; relative paths are relative to the including file;
    ignore_missing="yes" forgives only a missing file; a file included twice
    on one chain is a circular inclusion;
  * <includedir> reads the *.conf files of a directory (sorted by name here:
    dbus-daemon's order is undefined), ignores a missing directory, and a
    file in it that fails to parse is skipped with a warning, not fatal;
  * limits start at dbus-daemon's defaults, an included file inherits and
    can change them; the last value wins;
  * the top-level file must have at least one <listen>.
Where bootbus is more lenient than dbus-daemon, it says so with a warning:
unknown elements (and their contents) are skipped, unknown limit names are
ignored, text content is stripped of surrounding whitespace.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import xml.parsers.expat
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..bus.policy import (
    MESSAGE_TYPES,
    RULE_FDS_UNBOUNDED,
    GroupRule,
    OwnRule,
    Policy,
    PolicyBuilder,
    PolicyError,
    ReceiveRule,
    Rule,
    Scope,
    SendRule,
    UserRule,
)

MAX_CONFIG_FILE_BYTES = 4 * 1024 * 1024  # Debian's largest system.d file is ~20 KiB
MAX_INCLUDE_DEPTH = 32  # dbus-daemon only refuses cycles; this also bounds the recursion

_MIB = 1024 * 1024
_INT32_MAX = 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1

# dbus-daemon's defaults (bus_config_parser_new()); the same for the system and
# session bus, whose session.conf raises several of them.
DEFAULT_MAX_INCOMING_BYTES = 127 * _MIB
DEFAULT_MAX_INCOMING_UNIX_FDS = 64  # DBUS_DEFAULT_MESSAGE_UNIX_FDS * 4
DEFAULT_MAX_OUTGOING_BYTES = 127 * _MIB
DEFAULT_MAX_OUTGOING_UNIX_FDS = 64
DEFAULT_MAX_MESSAGE_SIZE = 32 * _MIB
DEFAULT_MAX_MESSAGE_UNIX_FDS = 16  # DBUS_DEFAULT_MESSAGE_UNIX_FDS
DEFAULT_SERVICE_START_TIMEOUT_MS = 25_000
DEFAULT_AUTH_TIMEOUT_MS = 30_000  # 5000 in 1.8.8, back to 30 s in 1.9.4 (system.conf's comment is stale)
DEFAULT_PENDING_FD_TIMEOUT_MS = 150_000
DEFAULT_MAX_COMPLETED_CONNECTIONS = 2048
DEFAULT_MAX_INCOMPLETE_CONNECTIONS = 64
DEFAULT_MAX_CONNECTIONS_PER_USER = 256
DEFAULT_MAX_PENDING_SERVICE_STARTS = 512
DEFAULT_MAX_NAMES_PER_CONNECTION = 512
DEFAULT_MAX_MATCH_RULES_PER_CONNECTION = 512
DEFAULT_MAX_REPLIES_PER_CONNECTION = 128
DEFAULT_REPLY_TIMEOUT_MS = -1  # never
DEFAULT_MAX_CONTAINERS = 512
DEFAULT_MAX_CONTAINERS_PER_USER = 16
DEFAULT_MAX_CONTAINER_METADATA_BYTES = 4096
DEFAULT_MAX_CONNECTIONS_PER_CONTAINER = 8

DEFAULT_LIMITS: Mapping[str, int] = {
    "max_incoming_bytes": DEFAULT_MAX_INCOMING_BYTES,
    "max_incoming_unix_fds": DEFAULT_MAX_INCOMING_UNIX_FDS,
    "max_outgoing_bytes": DEFAULT_MAX_OUTGOING_BYTES,
    "max_outgoing_unix_fds": DEFAULT_MAX_OUTGOING_UNIX_FDS,
    "max_message_size": DEFAULT_MAX_MESSAGE_SIZE,
    "max_message_unix_fds": DEFAULT_MAX_MESSAGE_UNIX_FDS,
    "service_start_timeout": DEFAULT_SERVICE_START_TIMEOUT_MS,
    "auth_timeout": DEFAULT_AUTH_TIMEOUT_MS,
    "pending_fd_timeout": DEFAULT_PENDING_FD_TIMEOUT_MS,
    "reply_timeout": DEFAULT_REPLY_TIMEOUT_MS,
    "max_completed_connections": DEFAULT_MAX_COMPLETED_CONNECTIONS,
    "max_incomplete_connections": DEFAULT_MAX_INCOMPLETE_CONNECTIONS,
    "max_connections_per_user": DEFAULT_MAX_CONNECTIONS_PER_USER,
    "max_pending_service_starts": DEFAULT_MAX_PENDING_SERVICE_STARTS,
    "max_names_per_connection": DEFAULT_MAX_NAMES_PER_CONNECTION,
    "max_match_rules_per_connection": DEFAULT_MAX_MATCH_RULES_PER_CONNECTION,
    "max_replies_per_connection": DEFAULT_MAX_REPLIES_PER_CONNECTION,
    "max_containers": DEFAULT_MAX_CONTAINERS,
    "max_containers_per_user": DEFAULT_MAX_CONTAINERS_PER_USER,
    "max_container_metadata_bytes": DEFAULT_MAX_CONTAINER_METADATA_BYTES,
    "max_connections_per_container": DEFAULT_MAX_CONNECTIONS_PER_CONTAINER,
}
# set_limit(): these are C longs; every other limit must also fit a C int.
_LONG_LIMITS = frozenset({"max_incoming_bytes", "max_incoming_unix_fds", "max_outgoing_bytes",
                          "max_outgoing_unix_fds", "max_message_size", "max_message_unix_fds"})

# _dbus_get_standard_system_servicedirs(): /usr/local/share, /usr/share, DBUS_DATADIR
# (/usr/share on Debian) and /lib, each + /dbus-1/system-services, without repeats.
STANDARD_SYSTEM_SERVICEDIRS = (
    "/usr/local/share/dbus-1/system-services",
    "/usr/share/dbus-1/system-services",
    "/lib/dbus-1/system-services",
)
_DBUS_DATADIR = "/usr/share"

# Elements dbus-daemon knows; any other element is skipped with a warning.
_TEXT_ELEMENTS = frozenset({"include", "user", "type", "listen", "pidfile", "auth", "servicedir",
                            "servicehelper", "includedir", "limit"})
_EMPTY_ELEMENTS = frozenset({"fork", "syslog", "keep_umask", "allow_anonymous",
                             "standard_session_servicedirs", "standard_system_servicedirs",
                             "apparmor"})
_KNOWN_ELEMENTS = _TEXT_ELEMENTS | _EMPTY_ELEMENTS | {"busconfig", "policy", "allow", "deny",
                                                     "selinux", "associate"}
_BUSCONFIG_CHILDREN = _TEXT_ELEMENTS | _EMPTY_ELEMENTS | {"policy", "selinux"}

_SEND_ATTRS = ("send_interface", "send_member", "send_error", "send_destination",
               "send_destination_prefix", "send_path", "send_type", "send_broadcast",
               "send_requested_reply")
_RECEIVE_ATTRS = ("receive_interface", "receive_member", "receive_error", "receive_sender",
                  "receive_path", "receive_type", "receive_requested_reply")
_RULE_ATTRS = frozenset(_SEND_ATTRS + _RECEIVE_ATTRS + (
    "eavesdrop", "max_fds", "min_fds", "own", "own_prefix", "user", "group", "log"))
_APPARMOR_MODES = ("required", "enabled", "disabled")
_NUMBER = re.compile(r"[0-9]+")
_STRTOL = re.compile(r"\s*([+-]?[0-9]+)")


class ConfigError(Exception):
    """A configuration file cannot be used; ``line`` is None for whole-file problems."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}" if line is not None else f"{path}: {message}")
        self.path = path
        self.line = line
        self.message = message


class ConfigFileMissing(ConfigError):
    """The file does not exist (what <include ignore_missing="yes"> forgives)."""


class UserDatabase(Protocol):
    """Name -> id lookups for <policy user=...>, user=..., group=...; None if unknown."""

    def uid(self, name: str) -> int | None: ...
    def gid(self, name: str) -> int | None: ...


class SystemUserDatabase:
    """The Name Service Switch, through pwd and grp."""

    def uid(self, name: str) -> int | None:
        try:
            return pwd.getpwnam(name).pw_uid
        except KeyError:
            return None

    def gid(self, name: str) -> int | None:
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            return None


@dataclass(frozen=True, slots=True)
class ServiceDir:
    """A directory of .service files; ``strict_naming``: a file must be named after
    its bus name; ``watch``: dbus-daemon watches it with inotify."""

    path: str
    watch: bool = True
    strict_naming: bool = False


@dataclass(frozen=True)
class BusConfig:
    path: str
    type: str | None
    user: str | None
    listen: tuple[str, ...]
    auth: tuple[str, ...]  # empty: every mechanism the bus knows
    policy: Policy
    limits: Mapping[str, int]
    servicedirs: tuple[ServiceDir, ...]
    servicehelper: str | None
    pidfile: str | None
    fork: bool
    syslog: bool
    keep_umask: bool
    allow_anonymous: bool
    apparmor_mode: str | None
    selinux_contexts: Mapping[str, str]  # <selinux><associate own= context=>
    conf_dirs: tuple[str, ...]  # the <includedir>s that exist, to watch for reloads
    files: tuple[str, ...]  # every file read, in the order read
    warnings: tuple[str, ...]
    # the limits some <limit> element set (``limits`` has dbus-daemon's default for the rest)
    explicit_limits: frozenset[str] = frozenset()


@dataclass
class _Context:
    """What every file of one load shares."""

    users: UserDatabase
    environ: Mapping[str, str]
    selinux_enabled: bool
    selinux_policy_root: str | None
    strict_includedir: bool
    warnings: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    chain: list[str] = field(default_factory=list)


@dataclass
class _Frame:
    name: str
    line: int
    attrs: dict[str, str]
    text: list[str] = field(default_factory=list)
    scope: Scope | None = None  # for <policy>: None when the policy is ignored
    skip: bool = False  # an unknown element, or inside one


def load_config(path: str, *, users: UserDatabase | None = None,
                environ: Mapping[str, str] | None = None,
                selinux_enabled: bool | None = None,
                selinux_policy_root: str | None = None,
                strict_includedir: bool = False,
                require_listen: bool = True) -> BusConfig:
    """Read ``path`` and everything it includes.

    Raises ConfigError naming the file and line of the first fatal problem.
    ``selinux_enabled`` None: SELinux counts as enabled when selinuxfs is
    mounted. ``strict_includedir``: a bad file in an <includedir> is fatal
    instead of skipped (for checking a configuration).
    """
    ctx = _Context(
        users=users if users is not None else SystemUserDatabase(),
        environ=environ if environ is not None else os.environ,
        selinux_enabled=(os.path.exists("/sys/fs/selinux/enforce")
                         if selinux_enabled is None else selinux_enabled),
        selinux_policy_root=selinux_policy_root,
        strict_includedir=strict_includedir,
    )
    top = _FileParser(path, ctx, dict(DEFAULT_LIMITS))
    top.run()
    if require_listen and not top.listen:
        raise ConfigError(path, None, "Configuration file needs one or more <listen> elements "
                                      "giving addresses")
    return BusConfig(
        path=path, type=top.bus_type, user=top.user, listen=tuple(top.listen),
        auth=tuple(top.auth), policy=top.policy.build(), limits=dict(top.limits),
        servicedirs=tuple(top.servicedirs), servicehelper=top.servicehelper,
        pidfile=top.pidfile, fork=top.fork, syslog=top.syslog, keep_umask=top.keep_umask,
        allow_anonymous=top.allow_anonymous, apparmor_mode=top.apparmor_mode,
        selinux_contexts=dict(top.selinux), conf_dirs=tuple(top.conf_dirs),
        files=tuple(ctx.files), warnings=tuple(ctx.warnings),
        explicit_limits=frozenset(top.limits_set))


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigFileMissing(path, None, "Failed to open: no such file") from None
    except OSError as e:
        raise ConfigError(path, None, f"Failed to open: {e.strerror}") from None
    if len(data) > MAX_CONFIG_FILE_BYTES:
        raise ConfigError(path, None, f"larger than {MAX_CONFIG_FILE_BYTES} bytes")
    return data


class _FileParser:
    """One file's contribution, merged into its includer only if it loads whole."""

    def __init__(self, path: str, ctx: _Context, limits: dict[str, int]) -> None:
        self.path = path
        self.basedir = os.path.dirname(os.path.abspath(path))
        self.ctx = ctx
        self.limits = limits
        self.limits_set: set[str] = set()  # names a <limit> set, here or in an included file
        self.stack: list[_Frame] = []
        self.expat = xml.parsers.expat.ParserCreate()
        self.policy = PolicyBuilder()
        self.bus_type: str | None = None
        self.user: str | None = None
        self.listen: list[str] = []
        self.auth: list[str] = []
        self.servicedirs: list[ServiceDir] = []
        self.servicehelper: str | None = None
        self.pidfile: str | None = None
        self.fork = self.syslog = self.keep_umask = self.allow_anonymous = False
        self.apparmor_mode: str | None = None
        self.selinux: dict[str, str] = {}
        self.conf_dirs: list[str] = []

    # -- driving expat ------------------------------------------------------------
    def run(self) -> None:
        data = _read(self.path)
        p = self.expat
        p.buffer_text = True
        p.StartDoctypeDeclHandler = self._doctype
        p.EntityDeclHandler = self._entity
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._text
        self.ctx.chain.append(os.path.realpath(self.path))
        first_file = len(self.ctx.files)
        self.ctx.files.append(self.path)
        try:
            p.Parse(data, True)
        except xml.parsers.expat.ExpatError as e:
            del self.ctx.files[first_file:]
            raise ConfigError(self.path, e.lineno,
                              xml.parsers.expat.ErrorString(e.code)) from None
        except ConfigError:
            del self.ctx.files[first_file:]
            raise
        finally:
            self.ctx.chain.pop()

    def error(self, message: str) -> ConfigError:
        return ConfigError(self.path, self.expat.CurrentLineNumber, message)

    def warn(self, message: str, line: int | None = None) -> None:
        where = line if line is not None else self.expat.CurrentLineNumber
        self.ctx.warnings.append(f"{self.path}:{where}: {message}")

    def _doctype(self, name: str, sysid: str | None, pubid: str | None,
                 has_internal_subset: int) -> None:
        if name != "busconfig":
            raise self.error(f"Configuration file has the wrong document type {name}")

    def _entity(self, name: str, *rest: object) -> None:
        raise self.error(f"entity declarations are not supported (entity {name})")

    def _text(self, data: str) -> None:
        if self.stack and not self.stack[-1].skip:
            self.stack[-1].text.append(data)

    # -- elements -----------------------------------------------------------------
    def _start(self, name: str, attrs: dict[str, str]) -> None:
        line = self.expat.CurrentLineNumber
        if self.stack and self.stack[-1].skip:
            self.stack.append(_Frame(name, line, attrs, skip=True))
            return
        if not self.stack:
            if name != "busconfig":
                raise self.error(f"Unknown element <{name}> at root of configuration file")
            self._no_attributes(name, attrs)
            self.stack.append(_Frame(name, line, attrs))
            return
        parent = self.stack[-1]
        if parent.name not in _TEXT_ELEMENTS:
            self._check_no_text(parent)
        frame = _Frame(name, line, attrs)
        if name not in _KNOWN_ELEMENTS:
            self.warn(f"Unknown element <{name}> inside <{parent.name}> ignored")
            frame.skip = True
        elif parent.name == "busconfig" and name in _BUSCONFIG_CHILDREN:
            self._start_busconfig_child(frame)
        elif parent.name == "policy" and name in ("allow", "deny"):
            self._rule(frame, parent)
        elif parent.name == "selinux" and name == "associate":
            self._associate(frame)
        elif parent.name in ("busconfig", "policy", "selinux"):
            raise self.error(f"Element <{name}> not allowed inside <{parent.name}> in "
                             "configuration file")
        else:
            raise self.error(f"Element <{name}> is not allowed in this context")
        self.stack.append(frame)

    def _end(self, name: str) -> None:
        frame = self.stack.pop()
        if frame.skip:
            return
        if frame.name in _TEXT_ELEMENTS:
            content = "".join(frame.text).strip()
            if not content:
                raise self.error(f"XML element <{frame.name}> was expected to have content "
                                 "inside it")
            self._content(frame, content)
        else:
            self._check_no_text(frame)

    def _check_no_text(self, frame: _Frame) -> None:
        if "".join(frame.text).strip():
            raise self.error(f"No text content expected inside XML element {frame.name} in "
                             "configuration file")
        frame.text.clear()

    def _no_attributes(self, name: str, attrs: Mapping[str, str]) -> None:
        for attr in attrs:
            raise self.error(f'Attribute "{attr}" is invalid on <{name}> element in this '
                             "context")

    def _allowed_attributes(self, name: str, attrs: Mapping[str, str],
                            allowed: frozenset[str] | tuple[str, ...]) -> None:
        for attr in attrs:
            if attr not in allowed:
                raise self.error(f'Attribute "{attr}" is invalid on <{name}> element in this '
                                 "context")

    def _yes_no(self, attrs: Mapping[str, str], attr: str) -> bool:
        value = attrs.get(attr)
        if value is None or value == "no":
            return False
        if value == "yes":
            return True
        raise self.error(f'{attr} attribute must have value "yes" or "no"')

    def _start_busconfig_child(self, frame: _Frame) -> None:
        name, attrs = frame.name, frame.attrs
        if name == "include":
            self._allowed_attributes(name, attrs, ("ignore_missing", "if_selinux_enabled",
                                                   "selinux_root_relative"))
            for attr in attrs:
                self._yes_no(attrs, attr)
        elif name == "limit":
            self._allowed_attributes(name, attrs, ("name",))
            if "name" not in attrs:
                raise self.error('<limit> element must have a "name" attribute')
        elif name == "policy":
            frame.scope = self._policy_scope(attrs)
        elif name == "apparmor":
            self._allowed_attributes(name, attrs, ("mode",))
            mode = attrs.get("mode")
            if mode is not None and mode not in _APPARMOR_MODES:
                raise self.error('Mode attribute on <apparmor> must have value "required", '
                                 f'"enabled" or "disabled", not "{mode}"')
            if mode is not None:
                self.apparmor_mode = mode
        else:
            self._no_attributes(name, attrs)
            self._flag(name)

    def _flag(self, name: str) -> None:
        if name == "fork":
            self.fork = True
        elif name == "syslog":
            self.syslog = True
        elif name == "keep_umask":
            self.keep_umask = True
        elif name == "allow_anonymous":
            self.allow_anonymous = True
        elif name == "standard_system_servicedirs":
            for path in STANDARD_SYSTEM_SERVICEDIRS:
                self._add_servicedir(ServiceDir(path))
        elif name == "standard_session_servicedirs":
            for sdir in standard_session_servicedirs(self.ctx.environ):
                self._add_servicedir(sdir)

    def _add_servicedir(self, sdir: ServiceDir) -> None:
        if all(known.path != sdir.path for known in self.servicedirs):
            self.servicedirs.append(sdir)

    def _policy_scope(self, attrs: Mapping[str, str]) -> Scope | None:
        self._allowed_attributes("policy", attrs, ("context", "user", "group", "at_console"))
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
        return int(name) if _NUMBER.fullmatch(name) else self.ctx.users.uid(name)

    def _gid(self, name: str) -> int | None:
        return int(name) if _NUMBER.fullmatch(name) else self.ctx.users.gid(name)

    def _associate(self, frame: _Frame) -> None:
        self._allowed_attributes("associate", frame.attrs, ("own", "context"))
        own, context = frame.attrs.get("own"), frame.attrs.get("context")
        if own is None or context is None:
            raise self.error('Element <associate> must have attributes own="<servicename>" '
                             'and context="<selinux context>"')
        self.selinux[own] = context

    def _rule(self, frame: _Frame, policy: _Frame) -> None:
        rule = self._build_rule(frame.name, frame.attrs)
        if rule is None or policy.scope is None:
            return
        try:
            self.policy.append(policy.scope, rule)
        except PolicyError as e:
            raise self.error(f"<{frame.name}> {e}") from None

    def _build_rule(self, element: str, attrs: Mapping[str, str]) -> Rule | None:
        """append_rule_from_element(): validate like dbus-daemon, then build."""
        self._allowed_attributes(element, attrs, _RULE_ATTRS)
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
        m = _STRTOL.match(value)
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

    # -- text content ---------------------------------------------------------------
    def _content(self, frame: _Frame, content: str) -> None:
        name = frame.name
        if name == "listen":
            self.listen.append(content)
        elif name == "auth":
            self.auth.append(content)
        elif name == "user":
            self.user = content
        elif name == "type":
            self.bus_type = content
        elif name == "pidfile":
            self.pidfile = content
        elif name == "servicehelper":
            self.servicehelper = self._full_path(content)
        elif name == "servicedir":
            self._add_servicedir(ServiceDir(self._full_path(content)))
        elif name == "limit":
            self._set_limit(frame.attrs["name"], content)
        elif name == "include":
            self._include(frame, content)
        elif name == "includedir":
            self._include_dir(self._full_path(content), frame.line)

    def _full_path(self, path: str) -> str:
        return path if os.path.isabs(path) else os.path.join(self.basedir, path)

    def _set_limit(self, name: str, content: str) -> None:
        m = _STRTOL.match(content)
        value = int(m.group(1)) if m else None
        if value is None or not _LONG_MIN <= value <= _LONG_MAX:
            raise self.error(f'<limit name="{name}"> element has invalid value (could not '
                             "parse as integer)")
        if m is not None and m.end() != len(content):
            self.warn(f'<limit name="{name}">: ignoring "{content[m.end():]}" after the number')
        if name not in DEFAULT_LIMITS:
            self.warn(f'There is no limit called "{name}"; ignored')
            return
        if value < 0:
            raise self.error(f'<limit name="{name}"> must be a positive number')
        if name not in _LONG_LIMITS and value > _INT32_MAX:
            raise self.error(f'<limit name="{name}"> value is too large')
        self.limits[name] = value
        self.limits_set.add(name)

    # -- inclusion ---------------------------------------------------------------------
    def _include(self, frame: _Frame, content: str) -> None:
        attrs = frame.attrs
        if self._yes_no(attrs, "if_selinux_enabled") and not self.ctx.selinux_enabled:
            return
        if self._yes_no(attrs, "selinux_root_relative"):
            root = self.ctx.selinux_policy_root or selinux_policy_root()
            if root is None:
                raise self.error("Could not determine SELinux policy root for relative "
                                 "inclusion")
            path = content if os.path.isabs(content) else os.path.join(root, content)
        else:
            path = self._full_path(content)
        self._include_file(path, self._yes_no(attrs, "ignore_missing"))

    def _include_file(self, path: str, ignore_missing: bool) -> None:
        if os.path.realpath(path) in self.ctx.chain:
            raise self.error(f"Circular inclusion of file '{path}'")
        if len(self.ctx.chain) >= MAX_INCLUDE_DEPTH:
            raise self.error(f"Includes nested more than {MAX_INCLUDE_DEPTH} deep at '{path}'")
        child = _FileParser(path, self.ctx, dict(self.limits))
        child.limits_set = set(self.limits_set)
        try:
            child.run()
        except ConfigFileMissing as e:
            if ignore_missing and e.path == path:
                return
            raise
        self._merge(child)

    def _include_dir(self, path: str, line: int) -> None:
        try:
            entries = sorted(os.listdir(path))
        except FileNotFoundError:
            return
        except OSError as e:
            raise ConfigError(self.path, line,
                              f'Failed to read directory "{path}": {e.strerror}') from None
        for entry in entries:
            if not entry.endswith(".conf"):
                continue
            full = os.path.join(path, entry)
            try:
                self._include_file(full, ignore_missing=True)
            except ConfigError as e:
                if self.ctx.strict_includedir:
                    raise
                self.warn(f"Encountered error '{e}' while parsing '{full}'; file skipped",
                          line)
        self.conf_dirs.append(path)

    def _merge(self, child: _FileParser) -> None:
        """merge_included(). Like dbus-daemon, an included <syslog/> is not merged."""
        self.policy.merge(child.policy)
        self.selinux.update(child.selinux)
        self.user = child.user if child.user is not None else self.user
        self.bus_type = child.bus_type if child.bus_type is not None else self.bus_type
        self.pidfile = child.pidfile if child.pidfile is not None else self.pidfile
        if child.servicehelper is not None:
            self.servicehelper = child.servicehelper
        if child.apparmor_mode is not None:
            self.apparmor_mode = child.apparmor_mode
        self.fork |= child.fork
        self.keep_umask |= child.keep_umask
        self.allow_anonymous |= child.allow_anonymous
        self.listen.extend(child.listen)
        self.auth.extend(child.auth)
        for sdir in child.servicedirs:
            self._add_servicedir(sdir)
        self.conf_dirs.extend(child.conf_dirs)
        self.limits = child.limits
        self.limits_set = child.limits_set


def _wild(value: str | None) -> str | None:
    """In the config "*" is the wildcard; in the rules it is None."""
    return None if value == "*" else value


def standard_session_servicedirs(environ: Mapping[str, str]) -> list[ServiceDir]:
    """_dbus_get_standard_session_servicedirs(), in its order, without repeats."""
    dirs: list[ServiceDir] = []
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime:
        dirs.append(ServiceDir(f"{runtime}/dbus-1/services", watch=False, strict_naming=True))
    data_home = environ.get("XDG_DATA_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".local/share")
    data_dirs = environ.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share"
    for base in [data_home, *data_dirs.split(":"), _DBUS_DATADIR]:
        path = f"{base}/dbus-1/services"
        if base and all(d.path != path for d in dirs):
            dirs.append(ServiceDir(path))
    return dirs


def selinux_policy_root(config: str = "/etc/selinux/config") -> str | None:
    """libselinux's selinux_policy_root(): /etc/selinux/$SELINUXTYPE, or None."""
    try:
        with open(config, encoding="utf-8") as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                if key == "SELINUXTYPE" and value:
                    return os.path.join(os.path.dirname(config), value.strip())
    except OSError:
        return None
    return None
