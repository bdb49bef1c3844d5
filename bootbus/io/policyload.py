"""The bus configuration file at run time: load, apply, reload.

Owns: reading dbus-daemon's <busconfig> (``--config FILE``) with
bootbus.io.busconfig, installing its policy into the bus (ownership, the
connect check with the user database, per-message checks in the router),
and reloading it on ReloadConfig or SIGHUP: a file that does not load keeps
the old configuration and the reason is returned to be logged.
"""

import os
import pwd
from collections.abc import Callable
from typing import Any

from ..bus.peer import Peer
from ..bus.policy import Credentials, DeliveryVerdict, PeerNames, Policy, check_delivery
from ..bus.router import Bus
from ..wire.message import Message
from .busconfig import BusConfig, ConfigError, load_config


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
        self._apply()

    def _apply(self) -> None:
        bus = self.bus
        bus.reload_policy(PolicyChecker(self.config.policy))
        bus.policy_can_own = self.can_own
        bus.connect_check = self.can_connect
        bus.reload_config = self.reload
        for warning in self.config.warnings:
            self.log(4, f"configuration: {warning}", CONFIG=self.path)

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
