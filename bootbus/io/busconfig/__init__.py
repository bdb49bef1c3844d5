"""dbus-daemon's <busconfig> files: reading them into a BusConfig.

Owns: parsing configuration files with expat (so every error names its file
and line), following <include> and <includedir>, turning <policy> elements
into bootbus.bus.policy rules (user and group names become ids here), and
dbus-daemon's defaults for limits and for the standard service directories.
Never opens a socket, never changes the process (no setuid, fork, umask or
pidfile): it only describes what the files ask for. The policy decisions
themselves live in bootbus.bus.policy.

The parts, imported one way (model <- limits, standard, rules <- reader):
  .model     BusConfig, ServiceDir, ConfigError, the user database, Reporter
  .limits    dbus-daemon's default limits and the <limit> element's value
  .standard  the standard service directories and the SELinux policy root
  .rules     <policy>, <allow> and <deny> into bootbus.bus.policy rules
  .reader    load_config(): expat, the element tables, <include>/<includedir>
This module only re-exports their public names, which are the import path the
rest of bootbus and the tests use (patch a module's names in that module).
"""

from __future__ import annotations

from .limits import (
    DEFAULT_AUTH_TIMEOUT_MS,
    DEFAULT_LIMITS,
    DEFAULT_MAX_COMPLETED_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_CONTAINER,
    DEFAULT_MAX_CONNECTIONS_PER_USER,
    DEFAULT_MAX_CONTAINER_METADATA_BYTES,
    DEFAULT_MAX_CONTAINERS,
    DEFAULT_MAX_CONTAINERS_PER_USER,
    DEFAULT_MAX_INCOMING_BYTES,
    DEFAULT_MAX_INCOMING_UNIX_FDS,
    DEFAULT_MAX_INCOMPLETE_CONNECTIONS,
    DEFAULT_MAX_MATCH_RULES_PER_CONNECTION,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_MESSAGE_UNIX_FDS,
    DEFAULT_MAX_NAMES_PER_CONNECTION,
    DEFAULT_MAX_OUTGOING_BYTES,
    DEFAULT_MAX_OUTGOING_UNIX_FDS,
    DEFAULT_MAX_PENDING_SERVICE_STARTS,
    DEFAULT_MAX_REPLIES_PER_CONNECTION,
    DEFAULT_PENDING_FD_TIMEOUT_MS,
    DEFAULT_REPLY_TIMEOUT_MS,
    DEFAULT_SERVICE_START_TIMEOUT_MS,
)
from .model import (
    BusConfig,
    ConfigError,
    ConfigFileMissing,
    ServiceDir,
    SystemUserDatabase,
    UserDatabase,
)
from .reader import MAX_CONFIG_FILE_BYTES, MAX_INCLUDE_DEPTH, load_config
from .standard import (
    STANDARD_SYSTEM_SERVICEDIRS,
    selinux_policy_root,
    standard_session_servicedirs,
)

__all__ = [
    "DEFAULT_AUTH_TIMEOUT_MS",
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_COMPLETED_CONNECTIONS",
    "DEFAULT_MAX_CONNECTIONS_PER_CONTAINER",
    "DEFAULT_MAX_CONNECTIONS_PER_USER",
    "DEFAULT_MAX_CONTAINERS",
    "DEFAULT_MAX_CONTAINERS_PER_USER",
    "DEFAULT_MAX_CONTAINER_METADATA_BYTES",
    "DEFAULT_MAX_INCOMING_BYTES",
    "DEFAULT_MAX_INCOMING_UNIX_FDS",
    "DEFAULT_MAX_INCOMPLETE_CONNECTIONS",
    "DEFAULT_MAX_MATCH_RULES_PER_CONNECTION",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_MESSAGE_UNIX_FDS",
    "DEFAULT_MAX_NAMES_PER_CONNECTION",
    "DEFAULT_MAX_OUTGOING_BYTES",
    "DEFAULT_MAX_OUTGOING_UNIX_FDS",
    "DEFAULT_MAX_PENDING_SERVICE_STARTS",
    "DEFAULT_MAX_REPLIES_PER_CONNECTION",
    "DEFAULT_PENDING_FD_TIMEOUT_MS",
    "DEFAULT_REPLY_TIMEOUT_MS",
    "DEFAULT_SERVICE_START_TIMEOUT_MS",
    "MAX_CONFIG_FILE_BYTES",
    "MAX_INCLUDE_DEPTH",
    "STANDARD_SYSTEM_SERVICEDIRS",
    "BusConfig",
    "ConfigError",
    "ConfigFileMissing",
    "ServiceDir",
    "SystemUserDatabase",
    "UserDatabase",
    "load_config",
    "selinux_policy_root",
    "standard_session_servicedirs",
]
