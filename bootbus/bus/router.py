"""The bus: routing messages between peers.

Owns: every piece of bus state (peers, unique names, the name registry, match
rules, expected replies, serial and unique-id counters, the bus id) in one
object, and the routing rules of the specification:

  * the first message of a peer must be Hello; a monitor may not send;
  * the bus sets the sender field of every routed message;
  * a method call records an expected reply unless NO_REPLY_EXPECTED; a reply
    or error is delivered only if it answers such a call, from its callee;
  * messages to a missing name: ServiceUnknown for calls, dropped otherwise;
  * broadcast signals go to every peer with a matching rule, once per peer;
    unicast signals go to their destination, and to eavesdroppers and monitors;
  * a peer disconnecting answers its callers' pending calls with NoReply.

Output is appended to peers' queues (``Peer.outq``) and the peers are added
to ``dirty``; the io layer writes them. Peers to disconnect are added to
``doomed``. Never touches a socket, a file or a clock.
"""

from __future__ import annotations

from collections.abc import Callable

from ..plain import cast
from ..wire import message as m
from ..wire.errors import MarshalError, SignatureError
from ..wire.limits import MAX_UNIX_FDS_PER_MESSAGE
from . import names as nm
from .match import MatchRule, matches
from .peer import OutFrame, Peer, PeerState, SharedFds
from .quota import (
    MAX_MATCH_RULES_PER_PEER,
    MAX_NAMES_PER_PEER,
    MAX_OUTGOING_BYTES_PER_PEER,
    MAX_OUTGOING_FDS_PER_PEER,
    MAX_PENDING_REPLIES_PER_PEER,
    Limits,
    UserUsage,
)

TYPE_CHECKING = False  # typing's, without importing typing (see bootbus.plain)
if TYPE_CHECKING:
    from typing import Any

# PeerState members as plain globals where a message or a subscriber is looked at:
# reading an enum member off its class costs ~35 ns, a global ~15 ns
_ACTIVE = PeerState.ACTIVE
_MONITOR = PeerState.MONITOR
BUS_NAME = "org.freedesktop.DBus"
BUS_PATH = "/org/freedesktop/DBus"

ERR_SERVICE_UNKNOWN = "org.freedesktop.DBus.Error.ServiceUnknown"
ERR_NAME_HAS_NO_OWNER = "org.freedesktop.DBus.Error.NameHasNoOwner"
ERR_NO_REPLY = "org.freedesktop.DBus.Error.NoReply"
ERR_LIMITS_EXCEEDED = "org.freedesktop.DBus.Error.LimitsExceeded"
ERR_NOT_SUPPORTED = "org.freedesktop.DBus.Error.NotSupported"
ERR_ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"


class PeerError(Exception):
    """The peer broke the protocol and must be disconnected."""


Handler = Callable[["Bus", Peer, m.Message], None]


class Bus:
    """All bus state. Equal only to itself (nothing compares buses by value)."""

    def __init__(self, bus_id: str, uid: int = 0, pid: int = 0, machine_id: str = "",
                 peers: dict[int, Peer] | None = None, by_unique: dict[str, Peer] | None = None,
                 registry: nm.NameRegistry | None = None,
                 pending: dict[tuple[int, int], int] | None = None, next_peer_id: int = 1,
                 next_unique: int = 1, serial: int = 0) -> None:
        self.bus_id = bus_id
        self.uid = uid
        self.pid = pid
        self.machine_id = machine_id
        self.peers: dict[int, Peer] = {} if peers is None else peers
        self.by_unique: dict[str, Peer] = {} if by_unique is None else by_unique  # derived
        self.registry = nm.NameRegistry() if registry is None else registry
        # (caller, serial) -> callee
        self.pending: dict[tuple[int, int], int] = {} if pending is None else pending
        self.next_peer_id = next_peer_id
        self.next_unique = next_unique
        self.serial = serial
        # derived indexes, rebuilt by rebuild_indexes()
        self.rules_by_interface: dict[str | None, list[tuple[Peer, MatchRule]]] = {}
        self.eavesdroppers: list[tuple[Peer, MatchRule]] = []
        self.monitors: list[Peer] = []
        # output for the io layer
        self.dirty: set[Peer] = set()
        self.doomed: dict[Peer, str] = {}
        self.fds_to_close: list[int] = []
        # method handlers: the driver, and services the supervisor owns
        self.driver: Handler | None = None
        self.services: dict[str, Handler] = {}
        self.stats: dict[str, int] = {}
        # hooks set by the supervisor: activation, policy and configuration reload
        self.activator: Any = None
        self.name_hooks: list[Callable[[str, str, str], None]] = []
        self.policy_can_own: Callable[[Peer, str], bool] | None = None
        # the configured security policy (a PolicyChecker); None (no --config) allows
        # everything. Held through an interface so that a bus without a policy never
        # imports the engine.
        self.policy: Any = None
        self.connect_check: Callable[[Peer], bool] | None = None
        self.reload_config: Callable[[], str | None] | None = None
        # the effective bounds (bootbus.bus.quota's defaults or the configuration's
        # <limit>s), and per uid the sums over its peers that the per-user bounds limit
        # (derived)
        self.limits = Limits()
        self.users: dict[int, UserUsage] = {}

    # -- peers -------------------------------------------------------------
    def add_peer(self, uid: int, pid: int, gids: tuple[int, ...] = (),
                 label: str | None = None, comm: str = "") -> Peer:
        peer = Peer(id=self.next_peer_id, uid=uid, pid=pid, gids=gids, label=label, comm=comm,
                    user=self._usage_of(uid))
        peer.user.peers += 1
        peer.framer.max_size = self.limits.max_message_size
        peer.framer.max_fds = self.limits.max_message_fds
        self.next_peer_id += 1
        self.peers[peer.id] = peer
        return peer

    def _usage_of(self, uid: int) -> UserUsage:
        usage = self.users.get(uid)
        if usage is None:
            usage = self.users[uid] = UserUsage(uid, exempt=uid in (0, self.uid))
        return usage

    def authenticated(self, peer: Peer, unix_fd: bool) -> None:
        peer.unix_fd = unix_fd
        peer.sasl = None
        peer.state = PeerState.HELLO

    def next_serial(self) -> int:
        self.serial = self.serial % 0xFFFFFFFF + 1
        return self.serial

    def assign_unique_name(self, peer: Peer) -> str:
        name = f":1.{self.next_unique}"
        self.next_unique += 1
        peer.unique_name = name
        peer.state = PeerState.ACTIVE
        self.by_unique[name] = peer
        return name

    def lookup(self, name: str) -> Peer | None:
        peer = self.by_unique.get(name)  # most destinations (every reply) are unique names
        if peer is not None or name.startswith(":"):
            return peer
        queue = self.registry.queues.get(name)  # (registry.owner, inline: every call)
        return self.peers.get(queue[0].peer) if queue else None

    def owns(self, well_known: str, unique: str) -> bool:
        owner = self.registry.owner(well_known)
        if owner is None:
            return False
        peer = self.peers.get(owner)
        return peer is not None and peer.unique_name == unique

    # -- dispatch ----------------------------------------------------------
    def dispatch(self, peer: Peer, msg: m.Message) -> None:
        """Route one message received from ``peer``. Raises PeerError to disconnect."""
        peer.messages_in += 1
        if peer.state is not _ACTIVE:
            if peer.state is _MONITOR:
                raise PeerError("a monitor connection sent a message")
            if not (msg.type == m.METHOD_CALL and msg.destination == BUS_NAME
                    and msg.member == "Hello" and msg.interface in (None, BUS_NAME)):
                raise PeerError("the first message was not Hello")
            if self.connect_check is not None and not self.connect_check(peer):
                raise PeerError(f"uid {peer.uid} is not allowed to connect by the policy")
            self._hello(peer, msg)
            return
        if msg.fds and not peer.unix_fd:
            raise PeerError("fds received on a connection that did not negotiate them")
        if msg.type > m.SIGNAL:  # a type the spec does not define: well-formed, ignored
            self._count("unknown_type_ignored")
            self._release_fds(msg)
            return
        dest = msg.destination
        if dest == BUS_NAME or (dest is None and msg.type == m.METHOD_CALL
                                and msg.interface == BUS_NAME):
            self._to_eavesdroppers(peer, msg, None, None)  # calls to the driver, not its replies
            self._to_monitors(peer, msg)
            self._release_fds(msg)
            if msg.type == m.METHOD_CALL and self.driver is not None:
                if self.policy is None or self._permit(peer, msg, None):
                    self.driver(self, peer, msg)
            return
        if dest is None:
            if msg.type in (m.SIGNAL, m.METHOD_CALL):
                self._broadcast(peer, msg)
            else:
                self._to_monitors(peer, msg)
                self._release_fds(msg)
            return
        handler = self.services.get(dest)
        if handler is not None and msg.type == m.METHOD_CALL:
            self._to_monitors(peer, msg)
            self._release_fds(msg)
            if self.policy is None or self._permit(peer, msg, None):
                handler(self, peer, msg)
            return
        target = self.lookup(dest)
        if msg.type == m.METHOD_CALL:
            self._route_call(peer, msg, target)
        elif msg.type == m.SIGNAL:
            if self.policy is not None and target is not None and not self._permit(
                    peer, msg, target):
                self._release_fds(msg)
                return
            self._route_unicast(peer, msg, target)
        else:
            self._route_reply(peer, msg, target)

    def _hello(self, peer: Peer, msg: m.Message) -> None:
        """The first message: the peer gets its unique name, then sees it announced.

        Handled here rather than in the driver so that monitors see the Hello
        call with its sender already set, as they do on dbus-daemon.
        """
        if msg.signature:
            raise PeerError("Hello takes no arguments")
        name = self.assign_unique_name(peer)
        self._to_monitors(peer, msg)
        self._release_fds(msg)
        self.reply(peer, msg, "s", (name,))
        self.emit_signal(BUS_NAME, "NameOwnerChanged", "sss", (name, "", name))
        self.emit_signal(BUS_NAME, "NameAcquired", "s", (name,), destination=peer)

    def _route_call(self, peer: Peer, msg: m.Message, target: Peer | None) -> None:
        wants_reply = not msg.flags & m.FLAG_NO_REPLY_EXPECTED
        if target is None:
            if (self.activator is not None and not msg.flags & m.FLAG_NO_AUTO_START
                    and self.activator.can_activate(msg.destination)):
                if self.policy is not None and not self._permit(peer, msg, None):
                    self._release_fds(msg)
                    return
                self.activator.auto_start(peer, msg)  # dispatched again once owned
                return
            self._to_monitors(peer, msg)
            self._release_fds(msg)
            if wants_reply and msg.flags & m.FLAG_NO_AUTO_START:
                self.send_error(peer, msg, ERR_NAME_HAS_NO_OWNER,
                                f'Name "{msg.destination}" does not exist')
            elif wants_reply:
                self.send_error(peer, msg, ERR_SERVICE_UNKNOWN,
                                f"The name {msg.destination} was not provided by any "
                                ".service files")
            return
        if msg.fds and not target.unix_fd:
            self._release_fds(msg)
            if wants_reply:
                self.send_error(peer, msg, ERR_NOT_SUPPORTED,
                                "Tried to send message with Unix file descriptors to a client "
                                "that doesn't support that.")
            return
        if self.policy is not None and not self._permit(peer, msg, target):
            self._release_fds(msg)
            return
        limits = self.limits
        usage = target.user
        if (target.out_bytes > limits.max_outgoing_bytes
                or target.out_fds + len(msg.fds) > limits.max_outgoing_fds
                or not usage.exempt and (
                    usage.out_bytes > limits.max_outgoing_bytes_per_user
                    or usage.out_fds + len(msg.fds) > limits.max_outgoing_fds_per_user)):
            self._release_fds(msg)
            if wants_reply:
                self.send_error(peer, msg, ERR_LIMITS_EXCEEDED,
                                f"The destination {msg.destination} is not reading its messages")
            return
        if wants_reply:
            key = (peer.id, msg.serial)
            if key not in self.pending:
                if (peer.pending_calls >= limits.max_replies
                        or peer.user.replies >= limits.max_replies_per_user):
                    refused = self._replies_refused(peer)  # (exempt users pass here)
                    if refused:
                        self._release_fds(msg)
                        self.send_error(peer, msg, ERR_LIMITS_EXCEEDED, refused)
                        return
                peer.pending_calls += 1
                peer.user.replies += 1
            self.pending[key] = target.id
        if (not msg.fds and not self.eavesdroppers and not self.monitors
                and target.state is _ACTIVE):
            self._deliver(target, peer, msg, None)  # (_route_unicast's common case)
        else:
            self._route_unicast(peer, msg, target)

    def _replies_refused(self, caller: Peer) -> str:
        """Why one more expected reply for ``caller`` is refused, or ''."""
        if caller.pending_calls >= self.limits.max_replies:
            return "The maximum number of pending replies per connection has been reached"
        usage = caller.user
        if not usage.exempt and usage.replies >= self.limits.max_replies_per_user:
            return (f"The maximum number of pending replies of uid {usage.uid} has been "
                    f"reached (max_replies_per_user={self.limits.max_replies_per_user})")
        return ""

    def _route_reply(self, peer: Peer, msg: m.Message, target: Peer | None) -> None:
        if target is None:
            self._count("replies_dropped")
            self._release_fds(msg)
            return
        key = (target.id, msg.reply_serial)
        if self.pending.get(key) != peer.id:
            self._count("replies_unexpected")
            self._release_fds(msg)
            return
        if self.policy is not None and not self._permit(peer, msg, target, reply_expected=True):
            self._release_fds(msg)  # the call stays pending, as in dbus-daemon
            return
        del self.pending[key]
        target.pending_calls -= 1
        target.user.replies -= 1
        if (not msg.fds and not self.eavesdroppers and not self.monitors
                and target.state is _ACTIVE):
            self._deliver(target, peer, msg, None)  # (_route_unicast's common case)
        else:
            self._route_unicast(peer, msg, target)

    def _route_unicast(self, peer: Peer, msg: m.Message, target: Peer | None) -> None:
        if (not msg.fds and not self.eavesdroppers and not self.monitors
                and target is not None and target.state is _ACTIVE):
            self._deliver(target, peer, msg, None)  # the common case: one copy, no fds
            return
        shared = SharedFds(msg.fds) if msg.fds else None
        if target is not None and target.active:
            if target.state is PeerState.MONITOR:
                pass  # monitors get their copy below, as monitors
            elif not msg.fds or target.unix_fd:
                self._deliver(target, peer, msg, shared)
        self._to_eavesdroppers(peer, msg, target, shared)
        self._to_monitors(peer, msg, shared)
        self._settle(shared)

    def _to_eavesdroppers(self, peer: Peer, msg: m.Message, target: Peer | None,
                          shared: SharedFds | None) -> None:
        """One copy per eavesdropping connection (the sender too, as dbus-daemon does)."""
        if not self.eavesdroppers:
            return
        seen: set[int] = set()
        for eavesdropper, rule in self.eavesdroppers:
            if (eavesdropper is target or eavesdropper.id in seen
                    or eavesdropper.state is not PeerState.ACTIVE
                    or (msg.fds and not eavesdropper.unix_fd)):
                continue
            if self._match(rule, msg, peer):
                seen.add(eavesdropper.id)
                if self.policy is None or self._verdict(
                        peer, msg, eavesdropper, eavesdropping=True).allowed:
                    self._deliver(eavesdropper, peer, msg, shared)

    def _broadcast(self, peer: Peer, msg: m.Message) -> None:
        shared = SharedFds(msg.fds) if msg.fds else None
        seen: set[int] = set()
        for key in (msg.interface, None):
            for subscriber, rule in self.rules_by_interface.get(key, ()):
                if subscriber.id in seen or subscriber.state is not _ACTIVE:
                    continue
                if self._match(rule, msg, peer):
                    seen.add(subscriber.id)
                    if (not msg.fds or subscriber.unix_fd) and (
                            self.policy is None
                            or self._verdict(peer, msg, subscriber).allowed):
                        self._deliver(subscriber, peer, msg, shared)
        self._to_monitors(peer, msg, shared)
        self._settle(shared)

    # -- policy ----------------------------------------------------------------
    def client_policy(self, peer: Peer) -> Any:
        """The peer's rule list under the bus policy (cached on the peer)."""
        if peer.policy is None and self.policy is not None:
            peer.policy = self.policy.client_policy(peer)
        return peer.policy

    def _verdict(self, sender: Peer, msg: m.Message, recipient: Peer | None, *,
                 eavesdropping: bool = False, reply_expected: bool = False) -> Any:
        return self.policy.check(self, sender, msg, recipient, eavesdropping=eavesdropping,
                                 reply_expected=reply_expected)

    def _permit(self, sender: Peer, msg: m.Message, recipient: Peer | None, *,
                reply_expected: bool = False) -> bool:
        """Check an addressed message; a refusal answers the sender with AccessDenied."""
        verdict = self._verdict(sender, msg, recipient, reply_expected=reply_expected)
        if verdict.allowed:
            return True
        self._count("policy_rejected")
        text = (f"Rejected {verdict.rejected_by} message, {verdict.matched_rules} matched "
                f'rules; type="{m.TYPE_NAMES.get(msg.type, msg.type)}", '
                f'sender="{sender.unique_name}" interface="{msg.interface or "(unset)"}" '
                f'member="{msg.member or "(unset)"}" error name="{msg.error_name or "(unset)"}" '
                f'requested_reply="{int(verdict.requested_reply)}" '
                f'destination="{msg.destination or "(unset)"}"')
        self.send_error(sender, msg, ERR_ACCESS_DENIED, text)
        return False

    def apply_limits(self, limits: Limits) -> None:
        """New bounds (a configuration's <limit>s): what peers already hold is kept, and
        every later operation, including each connection's next message, is checked
        against them."""
        self.limits = limits
        for peer in self.peers.values():
            peer.framer.max_size = limits.max_message_size
            peer.framer.max_fds = limits.max_message_fds

    def reload_policy(self, policy: Any) -> None:
        self.policy = policy
        for peer in self.peers.values():
            peer.policy = None

    def _match(self, rule: MatchRule, msg: m.Message, sender: Peer | None) -> bool:
        # messages the bus emits carry their sender: the driver's or org.bootbus
        sender_name = sender.unique_name if sender is not None else (msg.sender or BUS_NAME)
        return matches(rule, msg, sender_name, self.owns, lambda: _body_args(msg))

    def _to_monitors(self, peer: Peer | None, msg: m.Message,
                     shared: SharedFds | None = None) -> None:
        if not self.monitors:
            return
        own = shared is None and msg.fds
        if own:
            shared = SharedFds(msg.fds)
        for monitor in self.monitors:
            if msg.fds and not monitor.unix_fd:
                continue
            if not monitor.monitor_rules or any(
                    self._match(rule, msg, peer) for rule in monitor.monitor_rules):
                self._deliver(monitor, peer, msg, shared)
        if own:
            msg.fds = []
            self._settle(shared)

    def _deliver(self, target: Peer, sender: Peer | None, msg: m.Message,
                 shared: SharedFds | None) -> None:
        fwd = msg.fwd
        if fwd is None:
            fwd = msg.fwd = _forwarded(sender, msg)
        bufs, size = fwd
        usage = target.user
        if shared is not None:
            shared.refs += 1
            target.out_fds += len(shared.fds)
            usage.out_fds += len(shared.fds)
        target.outq.append(OutFrame(bufs, shared, size))  # (bufs is shared, never mutated)
        target.out_bytes += size
        usage.out_bytes += size
        target.messages_out += 1
        self.dirty.add(target)
        if msg.type != m.METHOD_CALL:  # calls were refused before this if over a bound
            limits = self.limits
            if (target.out_bytes > limits.max_outgoing_bytes
                    or target.out_fds > limits.max_outgoing_fds):
                self.doomed.setdefault(target, "output queue exceeded "
                                       f"{limits.max_outgoing_bytes} bytes or "
                                       f"{limits.max_outgoing_fds} fds (not reading)")
            elif not usage.exempt and (usage.out_bytes > limits.max_outgoing_bytes_per_user
                                       or usage.out_fds > limits.max_outgoing_fds_per_user):
                self._shed(usage)

    def _shed(self, usage: UserUsage) -> None:
        """A user's queued output passed its bound: disconnect its slowest reader.

        The same answer as the per-connection bound (the peer that does not read
        goes, nobody else's messages are dropped), applied to the user's peer with
        the most queued, which need not be the one this message was for. One at a
        time: the next is chosen only once the last one is gone, if still needed.
        """
        if usage.shed is not None and usage.shed in self.doomed:
            return
        victim = max((p for p in self.peers.values() if p.user is usage and p not in self.doomed),
                     key=lambda p: (p.out_bytes, p.out_fds), default=None)
        usage.shed = None
        if victim is None or not (victim.out_bytes or victim.out_fds):
            return
        usage.shed = victim
        limits = self.limits
        self.doomed.setdefault(victim, f"output queued for uid {usage.uid} exceeded "
                               f"{limits.max_outgoing_bytes_per_user} bytes or "
                               f"{limits.max_outgoing_fds_per_user} fds; this connection had "
                               f"{victim.out_bytes} bytes queued (not reading)")

    def _release_fds(self, msg: m.Message) -> None:
        if msg.fds:
            self.fds_to_close.extend(msg.fds)
            msg.fds = []

    def _settle(self, shared: SharedFds | None) -> None:
        if shared is not None and shared.refs == 0:
            self.fds_to_close.extend(shared.fds)

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    # -- messages from the bus itself ---------------------------------------
    def send_from_bus(self, target: Peer, raw: bytes) -> None:
        """Queue a message the bus built (sender already set) for one peer."""
        if target.state in (PeerState.ACTIVE, PeerState.HELLO):
            target.outq.append(OutFrame([raw], None, len(raw)))
            target.out_bytes += len(raw)
            usage = target.user
            usage.out_bytes += len(raw)
            target.messages_out += 1
            self.dirty.add(target)
            limits = self.limits
            if target.out_bytes > limits.max_outgoing_bytes:  # it does not read its replies
                self.doomed.setdefault(target, "output queue exceeded "
                                       f"{limits.max_outgoing_bytes} bytes (not reading)")
            elif not usage.exempt and usage.out_bytes > limits.max_outgoing_bytes_per_user:
                self._shed(usage)
        if self.monitors:
            self._to_monitors(None, m.parse(raw))

    def reply(self, peer: Peer, call: m.Message, signature: str = "",
              args: tuple[Any, ...] | list[Any] = (), sender: str = BUS_NAME) -> None:
        if call.flags & m.FLAG_NO_REPLY_EXPECTED:
            return
        raw = m.build(m.METHOD_RETURN, self.next_serial(), reply_serial=call.serial,
                      destination=peer.unique_name or None, sender=sender,
                      signature=signature, args=args)
        self.send_from_bus(peer, raw)

    def send_error(self, peer: Peer, call: m.Message, name: str, text: str,
                   sender: str = BUS_NAME) -> None:
        if call.flags & m.FLAG_NO_REPLY_EXPECTED:
            return
        raw = m.build(m.ERROR, self.next_serial(), error_name=name, reply_serial=call.serial,
                      destination=peer.unique_name or None, sender=sender,
                      signature="s", args=(text,))
        self.send_from_bus(peer, raw)

    def emit_signal(self, interface: str, member: str, signature: str,
                    args: tuple[Any, ...], destination: Peer | None = None,
                    path: str = BUS_PATH, sender: str = BUS_NAME) -> None:
        """Emit a signal from the bus: unicast to ``destination`` or broadcast by match."""
        if (destination is None and not self.monitors
                and not self.rules_by_interface.get(interface)
                and not self.rules_by_interface.get(None)):
            return  # nobody could receive it: most NameOwnerChanged of short connections
        raw = m.build(m.SIGNAL, self.next_serial(), path=path, interface=interface,
                      member=member, sender=sender, signature=signature, args=args,
                      destination=destination.unique_name if destination else None)
        if destination is not None:
            self.send_from_bus(destination, raw)
            return
        msg = m.parse(raw)
        msg.fwd = ([raw], len(raw))
        seen: set[int] = set()
        for key in (interface, None):
            for subscriber, rule in self.rules_by_interface.get(key, ()):
                if subscriber.id in seen or subscriber.state is not _ACTIVE:
                    continue
                if self._match(rule, msg, None):
                    seen.add(subscriber.id)
                    self._deliver(subscriber, None, msg, None)
        self._to_monitors(None, msg)

    def name_events(self, events: list[nm.Event]) -> None:
        """Turn registry events into NameOwnerChanged / NameLost / NameAcquired."""
        for event in events:
            if len(event) == 4:
                _, name, old, new = cast(nm.ChangeEvent, event)
                args = (name, self._unique(old), self._unique(new))
                self.emit_signal(BUS_NAME, "NameOwnerChanged", "sss", args)
                for hook in self.name_hooks:
                    hook(*args)
            else:
                kind, peer_id, name = cast(nm.PeerEvent, event)
                target = self.peers.get(peer_id)
                if target is not None and target.state is PeerState.ACTIVE:
                    member = "NameLost" if kind == "lost" else "NameAcquired"
                    self.emit_signal(BUS_NAME, member, "s", (name,), destination=target)

    def _unique(self, peer_id: int | None) -> str:
        peer = self.peers.get(peer_id) if peer_id is not None else None
        return peer.unique_name if peer is not None else ""

    # -- match rules --------------------------------------------------------
    def add_match(self, peer: Peer, rule: MatchRule) -> None:
        peer.matches.append(rule)
        peer.user.matches += 1
        self._index_rule(peer, rule)

    def match_refused(self, peer: Peer) -> str:
        """Why ``peer`` may not add a match rule now (a LimitsExceeded text), or ''."""
        limits = self.limits
        if len(peer.matches) >= limits.max_match_rules:
            return ("Connection is not allowed to add more match rules "
                    f"(max_match_rules_per_connection={limits.max_match_rules})")
        usage = peer.user
        if not usage.exempt and usage.matches >= limits.max_match_rules_per_user:
            return (f"Connections of uid {usage.uid} are not allowed to add more match rules "
                    f"(max_match_rules_per_user={limits.max_match_rules_per_user})")
        return ""

    def remove_match(self, peer: Peer, rule: MatchRule) -> bool:
        for index, existing in enumerate(peer.matches):
            if existing.key() == rule.key():
                del peer.matches[index]
                peer.user.matches -= 1
                self._unindex_rule(peer, existing)
                return True
        return False

    def _drop_matches(self, peer: Peer) -> None:
        for rule in peer.matches:
            self._unindex_rule(peer, rule)
        peer.user.matches -= len(peer.matches)
        peer.matches = []

    # -- names ----------------------------------------------------------------
    def name_refused(self, peer: Peer, name: str) -> str:
        """Why ``peer`` may not own or queue for one more name (LimitsExceeded), or ''."""
        held = self.registry.names_of(peer.id)
        if name in held:
            return ""
        limits = self.limits
        if len(held) >= limits.max_names:
            return (f'Connection "{peer.unique_name}" is not allowed to own more services '
                    f"(max_names_per_connection={limits.max_names})")
        usage = peer.user
        if not usage.exempt and usage.names >= limits.max_names_per_user:
            return (f'Connection "{peer.unique_name}" is not allowed to own more services: '
                    f"uid {usage.uid} has reached max_names_per_user="
                    f"{limits.max_names_per_user}")
        return ""

    def request_name(self, peer: Peer, name: str, flags: int) -> int:
        """RequestName: change the registry, count the names each peer holds, signal.

        Raises names.NameError (before changing anything) for a name that cannot be owned.
        """
        affected = {peer.id}
        primary = self.registry.owner(name)
        if primary is not None:
            affected.add(primary)  # a replaced owner that asked DO_NOT_QUEUE loses the name
        before = {pid: len(self.registry.names_of(pid)) for pid in affected}
        result, events = self.registry.request(peer.id, name, flags)
        self._recount_names(before)
        self.name_events(events)
        return result

    def release_name(self, peer: Peer, name: str) -> int:
        """ReleaseName: only the releasing peer's count changes (the next in line was queued)."""
        before = {peer.id: len(self.registry.names_of(peer.id))}
        result, events = self.registry.release(peer.id, name)
        self._recount_names(before)
        self.name_events(events)
        return result

    def _recount_names(self, before: dict[int, int]) -> None:
        for pid, count in before.items():
            holder = self.peers.get(pid)
            if holder is not None:
                holder.user.names += len(self.registry.names_of(pid)) - count

    def _drop_names(self, peer: Peer) -> list[nm.Event]:
        peer.user.names -= len(self.registry.names_of(peer.id))
        return self.registry.remove_peer(peer.id)

    def _index_rule(self, peer: Peer, rule: MatchRule) -> None:
        if rule.eavesdrop:
            self.eavesdroppers.append((peer, rule))
        self.rules_by_interface.setdefault(rule.interface, []).append((peer, rule))

    def _unindex_rule(self, peer: Peer, rule: MatchRule) -> None:
        if rule.eavesdrop:
            self.eavesdroppers.remove((peer, rule))
        bucket = self.rules_by_interface[rule.interface]
        bucket.remove((peer, rule))
        if not bucket:
            del self.rules_by_interface[rule.interface]

    def become_monitor(self, peer: Peer, rules: list[MatchRule]) -> None:
        self._drop_matches(peer)
        self.name_events(self._drop_names(peer))
        self._answer_pending_of(peer)
        unique = peer.unique_name
        # NameLost of its unique name reaches the new monitor whatever its rules;
        # the NameOwnerChanged that follows goes to everyone else, not to it.
        self.emit_signal(BUS_NAME, "NameLost", "s", (unique,), destination=peer)
        peer.monitor_rules = rules
        peer.state = PeerState.MONITOR
        self.by_unique.pop(unique, None)
        self.emit_signal(BUS_NAME, "NameOwnerChanged", "sss", (unique, unique, ""))
        self.monitors.append(peer)

    # -- disconnect ----------------------------------------------------------
    def remove_peer(self, peer: Peer) -> list[OutFrame]:
        """Forget a disconnected peer; return its unsent frames (their fds to close)."""
        if peer.id not in self.peers:
            return []
        self.dirty.discard(peer)
        self.doomed.pop(peer, None)
        self._drop_matches(peer)
        if peer in self.monitors:
            self.monitors.remove(peer)
        was_active = peer.state is PeerState.ACTIVE
        peer.state = PeerState.AUTH  # nothing more is delivered to it
        if was_active:
            self.name_events(self._drop_names(peer))
        self._answer_pending_of(peer)
        if was_active:
            self.by_unique.pop(peer.unique_name, None)
            self.emit_signal(BUS_NAME, "NameOwnerChanged", "sss",
                             (peer.unique_name, peer.unique_name, ""))
        del self.peers[peer.id]  # only now: the events above name the peer's unique name
        frames, peer.outq = peer.outq, []
        self._forget_usage(peer)
        return frames

    def _forget_usage(self, peer: Peer) -> None:
        """A removed peer's queue is dropped: take it out of its user's sums."""
        usage = peer.user
        usage.out_bytes -= peer.out_bytes
        usage.out_fds -= peer.out_fds
        peer.out_bytes = peer.out_fds = 0
        if usage.shed is peer:
            usage.shed = None
        usage.peers -= 1
        if usage.peers <= 0 and self.users.get(usage.uid) is usage:
            del self.users[usage.uid]
        peer.user = UserUsage.detached()  # a stale reference (the io layer's) counts nothing

    def _answer_pending_of(self, peer: Peer) -> None:
        """Calls to ``peer`` get NoReply; calls ``peer`` made are forgotten."""
        own = 0
        for key, callee in list(self.pending.items()):
            caller_id, serial = key
            if caller_id == peer.id:
                del self.pending[key]
                own += 1
            elif callee == peer.id:
                del self.pending[key]
                caller = self.peers.get(caller_id)
                if caller is None:
                    continue
                caller.pending_calls -= 1
                caller.user.replies -= 1
                if caller.state is PeerState.ACTIVE:
                    raw = m.build(m.ERROR, self.next_serial(), error_name=ERR_NO_REPLY,
                                  reply_serial=serial, destination=caller.unique_name,
                                  sender=BUS_NAME, signature="s",
                                  args=(("Message recipient disconnected from message bus "
                                         "without replying"),))
                    self.send_from_bus(caller, raw)
        peer.user.replies -= own
        peer.pending_calls = 0

    # -- derived state --------------------------------------------------------
    def rebuild_indexes(self) -> None:
        self.by_unique = {p.unique_name: p for p in self.peers.values()
                          if p.state is PeerState.ACTIVE}
        self.rules_by_interface = {}
        self.eavesdroppers = []
        self.monitors = [p for p in self.peers.values() if p.state is PeerState.MONITOR]
        for peer in self.peers.values():
            for rule in peer.matches:
                self._index_rule(peer, rule)
            peer.pending_calls = 0
            peer.out_bytes = sum(f.size for f in peer.outq)
            peer.out_fds = sum(len(f.fds.fds) for f in peer.outq if f.fds is not None)
            peer.framer.max_size = self.limits.max_message_size
            peer.framer.max_fds = self.limits.max_message_fds
        for caller_id, _serial in self.pending:
            caller = self.peers.get(caller_id)
            if caller is not None:
                caller.pending_calls += 1
        self.registry.rebuild_index()
        self.rebuild_usage()

    def rebuild_usage(self) -> None:
        """Sum every uid's usage from its peers (after a restore; derived, never stored)."""
        self.users = {}
        for peer in self.peers.values():
            usage = peer.user = self._usage_of(peer.uid)
            usage.peers += 1
            usage.out_bytes += peer.out_bytes
            usage.out_fds += peer.out_fds
            usage.matches += len(peer.matches)
            usage.names += len(self.registry.names_of(peer.id))
            usage.replies += peer.pending_calls


def _body_args(msg: m.Message) -> list[Any] | None:
    try:
        return msg.args()
    except (MarshalError, SignatureError):
        return None


def _forwarded(sender: Peer | None, msg: m.Message) -> tuple[list[bytes | memoryview], int]:
    """The buffers that forward ``msg`` with the sender field of ``sender`` (a message
    from the bus itself carries its sender already), and their size."""
    if sender is None:
        return [msg.raw], len(msg.raw)
    field = sender.sender_fields.get(msg.endian)
    if field is None:
        field = sender.sender_fields[msg.endian] = m.SenderField(sender.unique_name,
                                                                 msg.endian)
    return field.forward(msg)


__all__ = [
    "BUS_NAME",
    "BUS_PATH",
    "MAX_MATCH_RULES_PER_PEER",
    "MAX_NAMES_PER_PEER",
    "MAX_OUTGOING_BYTES_PER_PEER",
    "MAX_OUTGOING_FDS_PER_PEER",
    "MAX_PENDING_REPLIES_PER_PEER",
    "MAX_UNIX_FDS_PER_MESSAGE",
    "Bus",
    "PeerError",
]
