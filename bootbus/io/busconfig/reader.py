"""Reading a <busconfig> file and what it includes: expat, elements, inclusion.

Owns: load_config(), driving expat over each file (so every error names its
file and line), the element tables (which elements dbus-daemon knows, which
take text, which may stand in <busconfig>), the flags and text elements
(<listen>, <auth>, <servicedir>, <fork/>, ...), <selinux>, following
<include> and <includedir>, and merging an included file's contribution.
Hands <policy>/<allow>/<deny> to .rules and <limit> values to .limits.
Never opens a socket, never changes the process (no setuid, fork, umask or
pidfile): it only describes what the files ask for.

Rules it keeps (dbus-daemon 1.14's bus/config-parser.c):
  * element and attribute errors are fatal and say where;
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
unknown elements (and their contents) are skipped; text content is stripped
of surrounding whitespace.
"""

from __future__ import annotations

import os
import xml.parsers.expat
from collections.abc import Mapping
from dataclasses import dataclass, field

from ...bus.policy import PolicyBuilder, PolicyError, Scope
from .limits import DEFAULT_LIMITS, parse_limit
from .model import (
    BusConfig,
    ConfigError,
    ConfigFileMissing,
    ServiceDir,
    SystemUserDatabase,
    UserDatabase,
    allowed_attributes,
)
from .rules import PolicyElements
from .standard import STANDARD_SYSTEM_SERVICEDIRS, selinux_policy_root, standard_session_servicedirs

MAX_CONFIG_FILE_BYTES = 4 * 1024 * 1024  # Debian's largest system.d file is ~20 KiB
MAX_INCLUDE_DEPTH = 32  # dbus-daemon only refuses cycles; this also bounds the recursion

# Elements dbus-daemon knows; any other element is skipped with a warning.
_TEXT_ELEMENTS = frozenset({"include", "user", "type", "listen", "pidfile", "auth", "servicedir",
                            "servicehelper", "includedir", "limit"})
_EMPTY_ELEMENTS = frozenset({"fork", "syslog", "keep_umask", "allow_anonymous",
                             "standard_session_servicedirs", "standard_system_servicedirs",
                             "apparmor"})
_KNOWN_ELEMENTS = _TEXT_ELEMENTS | _EMPTY_ELEMENTS | {"busconfig", "policy", "allow", "deny",
                                                     "selinux", "associate"}
_BUSCONFIG_CHILDREN = _TEXT_ELEMENTS | _EMPTY_ELEMENTS | {"policy", "selinux"}
_APPARMOR_MODES = ("required", "enabled", "disabled")


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
        self.policy_elements = PolicyElements(self, ctx.users)
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
            allowed_attributes(self, name, attrs, ("ignore_missing", "if_selinux_enabled",
                                                   "selinux_root_relative"))
            for attr in attrs:
                self._yes_no(attrs, attr)
        elif name == "limit":
            allowed_attributes(self, name, attrs, ("name",))
            if "name" not in attrs:
                raise self.error('<limit> element must have a "name" attribute')
        elif name == "policy":
            frame.scope = self.policy_elements.scope(attrs)
        elif name == "apparmor":
            allowed_attributes(self, name, attrs, ("mode",))
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

    def _associate(self, frame: _Frame) -> None:
        allowed_attributes(self, "associate", frame.attrs, ("own", "context"))
        own, context = frame.attrs.get("own"), frame.attrs.get("context")
        if own is None or context is None:
            raise self.error('Element <associate> must have attributes own="<servicename>" '
                             'and context="<selinux context>"')
        self.selinux[own] = context

    def _rule(self, frame: _Frame, policy: _Frame) -> None:
        rule = self.policy_elements.rule(frame.name, frame.attrs)
        if rule is None or policy.scope is None:
            return
        try:
            self.policy.append(policy.scope, rule)
        except PolicyError as e:
            raise self.error(f"<{frame.name}> {e}") from None

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
        value = parse_limit(self, name, content)
        if value is not None:
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
