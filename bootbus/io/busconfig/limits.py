"""<limit>: dbus-daemon's defaults for every limit, and checking one <limit> element.

Owns: the default of each limit name, and set_limit()'s validation of one
value. Never applies a limit (bootbus.io.policyload turns them into the bus's
quotas), never reads files.

Rules it keeps (dbus-daemon 1.14's bus/config-parser.c): a value is read as
strtol() reads it, must fit a C long, must not be negative, and must fit a C
int unless the limit is one of the byte or fd counts. bootbus is more lenient
where it says so with a warning: an unknown limit name is ignored, text after
the number is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping

from .model import STRTOL, Reporter

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


def parse_limit(where: Reporter, name: str, content: str) -> int | None:
    """The value of <limit name=``name``>``content``</limit>; None: ignore it."""
    m = STRTOL.match(content)
    value = int(m.group(1)) if m else None
    if value is None or not _LONG_MIN <= value <= _LONG_MAX:
        raise where.error(f'<limit name="{name}"> element has invalid value (could not '
                          "parse as integer)")
    if m is not None and m.end() != len(content):
        where.warn(f'<limit name="{name}">: ignoring "{content[m.end():]}" after the number')
    if name not in DEFAULT_LIMITS:
        where.warn(f'There is no limit called "{name}"; ignored')
        return None
    if value < 0:
        raise where.error(f'<limit name="{name}"> must be a positive number')
    if name not in _LONG_LIMITS and value > _INT32_MAX:
        raise where.error(f'<limit name="{name}"> value is too large')
    return value
