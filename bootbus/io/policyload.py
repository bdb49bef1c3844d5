"""The bus configuration file at run time: load, apply, reload.

Owns: reading dbus-daemon's <busconfig> (``--config FILE``) with
bootbus.io.busconfig, installing its policy into the bus (ownership, the
connect check with the user database, per-message checks in the router),
mapping its ``<limit>``s onto the bus's bounds (bus.limits), and reloading it
on ReloadConfig or SIGHUP: a file that does not load keeps the old
configuration and the reason is returned to be logged.

Only limits a ``<limit>`` element sets are applied; the others keep bootbus's
defaults (bootbus.bus.quota), which differ from dbus-daemon's on purpose.
A limit bootbus has no mechanism for is warned about once, never fatal.
"""

import os
import pwd
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..bus.peer import Peer
from ..bus.policy import Credentials, DeliveryVerdict, PeerNames, Policy, check_delivery
from ..bus.quota import Limits
from ..bus.router import Bus
from ..wire.limits import MAX_MESSAGE_SIZE, MAX_UNIX_FDS_PER_MESSAGE
from ..wire.message import Message
from .busconfig import BusConfig, ConfigError, load_config

_MS = 0.001
# <limit name> -> (the Limits attribute it sets, the unit's factor, the per-user bound
# that must not bite before it: a per-connection bound a configuration raises
# lifts the user's bound to it, so one connection can always reach its own bound)
_APPLIED: Mapping[str, tuple[str, float, str | None]] = {
    "max_outgoing_bytes": ("max_outgoing_bytes", 1, "max_outgoing_bytes_per_user"),
    "max_outgoing_unix_fds": ("max_outgoing_fds", 1, "max_outgoing_fds_per_user"),
    "max_match_rules_per_connection": ("max_match_rules", 1, "max_match_rules_per_user"),
    "max_names_per_connection": ("max_names", 1, "max_names_per_user"),
    "max_replies_per_connection": ("max_replies", 1, "max_replies_per_user"),
    "max_message_size": ("max_message_size", 1, None),
    "max_message_unix_fds": ("max_message_fds", 1, None),
    "max_connections_per_user": ("max_connections_per_user", 1, None),
    "max_incomplete_connections": ("max_incomplete_connections", 1, None),
    "auth_timeout": ("auth_timeout", _MS, None),
    "service_start_timeout": ("activation_timeout", _MS, None),
    "max_pending_service_starts": ("max_pending_activations", 1, None),
}
# The specification's maxima: a configuration may lower them, not raise them.
_CEILINGS: Mapping[str, int] = {
    "max_message_size": MAX_MESSAGE_SIZE,
    "max_message_unix_fds": MAX_UNIX_FDS_PER_MESSAGE,
}
_NOT_APPLIED: Mapping[str, str] = {
    "max_incoming_bytes": "bootbus routes each message as it is read; it holds at most one "
                          "partial message per connection (max_message_size)",
    "max_incoming_unix_fds": "bootbus holds at most four messages' fds ahead of their message",
    "max_completed_connections": "bootbus bounds connections per user "
                                 "(max_connections_per_user), not in total",
    "pending_fd_timeout": "bootbus has no fd timeout; queued fds are bounded per connection "
                          "and per user instead",
    "reply_timeout": "bootbus has no reply timeout; an expected reply is held until the callee "
                     "answers or disconnects",
    "max_containers": "bootbus has no org.freedesktop.DBus.Containers1",
    "max_containers_per_user": "bootbus has no org.freedesktop.DBus.Containers1",
    "max_container_metadata_bytes": "bootbus has no org.freedesktop.DBus.Containers1",
    "max_connections_per_container": "bootbus has no org.freedesktop.DBus.Containers1",
}


def limits_from_config(values: Mapping[str, int],
                       explicit: Iterable[str]) -> tuple[Limits, dict[str, str]]:
    """The bounds the ``explicit`` limits give (defaults for the rest), and the
    limits that were not applied as given, each with why."""
    limits = Limits()
    not_applied: dict[str, str] = {}
    for name in sorted(explicit):
        value = values[name]
        if name in _NOT_APPLIED:
            not_applied[name] = _NOT_APPLIED[name]
            continue
        if name not in _APPLIED:
            not_applied[name] = "bootbus does not know this limit"
            continue
        ceiling = _CEILINGS.get(name)
        if ceiling is not None and value > ceiling:
            not_applied[name] = f"above the specification's maximum; {ceiling} used"
            value = ceiling
        attr, factor, per_user = _APPLIED[name]
        setattr(limits, attr, value * factor if factor != 1 else value)
        if per_user is not None and getattr(limits, per_user) < value:
            setattr(limits, per_user, value)
    return limits, not_applied


class PolicyChecker:
    """What the router asks (bus.policy): a peer's rule list, and one delivery's verdict."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def client_policy(self, peer: Peer) -> Any:
        return self.policy.client_policy(Credentials(peer.uid, peer.gids))

    def check(self, bus: Bus, sender: Peer, msg: Message, recipient: Peer | None, *,
              eavesdropping: bool, reply_expected: bool) -> DeliveryVerdict:
        return check_delivery(
            msg, sender=bus.client_policy(sender), sender_names=_names(bus, sender),
            recipient=bus.client_policy(recipient) if recipient is not None else None,
            recipient_names=_names(bus, recipient) if recipient is not None else None,
            eavesdropping=eavesdropping, reply_expected=reply_expected)


def _names(bus: Bus, peer: Peer) -> PeerNames:
    return PeerNames(peer.unique_name or None, bus.registry.names_of(peer.id))


class ConfigManager:
    def __init__(self, path: str, bus: Bus, log: Callable[..., None]) -> None:
        self.path = path
        self.bus = bus
        self.log = log
        self.config: BusConfig = load_config(path)  # raises ConfigError: the caller exits
        self._warned: set[str] = set()  # limits already warned about (once per daemon)
        self._apply()

    def _apply(self) -> None:
        bus = self.bus
        bus.reload_policy(PolicyChecker(self.config.policy))
        bus.policy_can_own = self.can_own
        bus.connect_check = self.can_connect
        bus.reload_config = self.reload
        for warning in self.config.warnings:
            self.log(4, f"configuration: {warning}", CONFIG=self.path)
        self._apply_limits()

    def _apply_limits(self) -> None:
        """New operations are checked against the new bounds; what peers hold stays."""
        limits, not_applied = limits_from_config(self.config.limits,
                                                 self.config.explicit_limits)
        self.bus.apply_limits(limits)
        for name, why in not_applied.items():
            if name not in self._warned:
                self._warned.add(name)
                self.log(4, f'configuration: <limit name="{name}"> not applied: {why}',
                         CONFIG=self.path, LIMIT=name)

    def can_own(self, peer: Peer, name: str) -> bool:
        policy: Any = self.bus.client_policy(peer)
        return policy is None or bool(policy.can_own(name))

    def can_connect(self, peer: Peer) -> bool:
        try:
            entry = pwd.getpwuid(peer.uid)
            groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
            known = True
        except KeyError:
            groups, known = peer.gids, False
        creds = Credentials(peer.uid, groups)
        return self.config.policy.can_connect(creds, bus_uid=self.bus.uid,
                                              in_user_database=known)

    def reload(self) -> str | None:
        """Load the file again; on failure keep the old policy and return why."""
        try:
            config = load_config(self.path)
        except (ConfigError, OSError) as exc:
            self.log(3, f"configuration reload failed, keeping the old one: {exc}",
                     CONFIG=self.path)
            return f"configuration reload failed: {exc}"
        self.config = config
        self._apply()
        self.log(5, f"configuration reloaded from {self.path}", CONFIG=self.path)
        return None
