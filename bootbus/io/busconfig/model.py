"""What loading a <busconfig> produces and how it fails, and what its parts share.

Owns: BusConfig and ServiceDir (the result), ConfigError and
ConfigFileMissing (the failures, naming file and line), the user database the
parser resolves user and group names with, the Reporter through which the
element readers raise errors and warnings at the current line, and the two
bits of syntax every part checks alike: allowed attributes, and numbers as
C's strtol() reads them. Never reads a file or parses XML (.reader does),
never imports the other busconfig modules (they import this).
"""

from __future__ import annotations

import grp
import pwd
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from ...bus.policy import Policy

# What strtol() accepts as a whole number: blanks, a sign, digits (dbus-daemon
# reads <limit> values and min_fds/max_fds with it).
STRTOL = re.compile(r"\s*([+-]?[0-9]+)")


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


class Reporter(Protocol):
    """Where the parts of the parser report: the file parser, which knows the
    file and the current line."""

    def error(self, message: str) -> ConfigError: ...
    def warn(self, message: str, line: int | None = None) -> None: ...


def allowed_attributes(where: Reporter, name: str, attrs: Mapping[str, str],
                       allowed: frozenset[str] | tuple[str, ...]) -> None:
    for attr in attrs:
        if attr not in allowed:
            raise where.error(f'Attribute "{attr}" is invalid on <{name}> element in this '
                              "context")
