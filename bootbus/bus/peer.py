"""A peer: one connection as the bus sees it.

Owns: a connection's identity (unique name, credentials), its protocol state,
its input framer, its output queue and its match rules, all as plain data.
The socket lives in the io layer; this module never touches it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from ..wire.framer import Framer
from ..wire.message import SenderField
from ..wire.sasl import SaslServer
from .match import MatchRule
from .quota import UserUsage

TYPE_CHECKING = False  # typing's, without importing typing (see bootbus.plain)
if TYPE_CHECKING:
    from typing import Any


class PeerState(enum.IntEnum):
    AUTH = 0  # SASL exchange in progress
    HELLO = 1  # authenticated, the first message must be Hello
    ACTIVE = 2  # has a unique name
    MONITOR = 3  # became a monitor: receives copies, may not send


class SharedFds:
    """fds attached to one message queued for several recipients.

    The io layer closes them once every recipient's copy is sent or dropped.
    """

    __slots__ = ("fds", "refs")

    def __init__(self, fds: Sequence[int]) -> None:
        self.fds = fds
        self.refs = 0


class OutFrame:
    """One message waiting in a peer's output queue.

    ``bufs`` is shared by every recipient's frame of one message: replace it, never
    change it in place."""

    __slots__ = ("bufs", "fds", "size")

    def __init__(self, bufs: list[bytes | memoryview], fds: SharedFds | None, size: int) -> None:
        self.bufs = bufs
        self.fds = fds
        self.size = size


class Peer:
    """Equal only to itself, hashed by id."""

    __slots__ = ("id", "uid", "pid", "gids", "label", "comm", "state", "unique_name",
                 "unix_fd", "sasl", "framer", "outq", "out_bytes", "out_fds", "matches",
                 "monitor_rules", "sender_fields", "pending_calls", "policy", "connected_at",
                 "messages_in", "messages_out", "user")

    def __init__(self, id: int, uid: int, pid: int, gids: tuple[int, ...] = (),
                 label: str | None = None, comm: str = "", state: PeerState = PeerState.AUTH,
                 unique_name: str = "", unix_fd: bool = False, sasl: SaslServer | None = None,
                 framer: Framer | None = None, outq: list[OutFrame] | None = None,
                 out_bytes: int = 0, out_fds: int = 0, matches: list[MatchRule] | None = None,
                 monitor_rules: list[MatchRule] | None = None,
                 sender_fields: dict[str, SenderField] | None = None, pending_calls: int = 0,
                 policy: Any = None, connected_at: float = 0.0, messages_in: int = 0,
                 messages_out: int = 0, user: UserUsage | None = None) -> None:
        self.id = id
        self.uid = uid
        self.pid = pid
        self.gids = gids
        self.label = label
        self.comm = comm
        self.state = state
        self.unique_name = unique_name
        self.unix_fd = unix_fd
        self.sasl = sasl
        self.framer = Framer() if framer is None else framer
        self.outq: list[OutFrame] = [] if outq is None else outq
        self.out_bytes = out_bytes
        self.out_fds = out_fds  # fds held for frames in outq (the io layer decrements as it sends)
        self.matches: list[MatchRule] = [] if matches is None else matches
        self.monitor_rules: list[MatchRule] = [] if monitor_rules is None else monitor_rules
        self.sender_fields: dict[str, SenderField] = {} if sender_fields is None else sender_fields
        self.pending_calls = pending_calls  # calls this peer made that await a reply (derived)
        # its ClientPolicy under the bus policy (derived, rebuilt on reload)
        self.policy: Any = policy
        self.connected_at = connected_at
        self.messages_in = messages_in
        self.messages_out = messages_out
        # its uid's usage, shared with the uid's other peers (derived: Bus.add_peer and
        # Bus.rebuild_indexes attach it; until then a peer counts only for itself)
        self.user = UserUsage.detached() if user is None else user

    @property
    def active(self) -> bool:
        return self.state >= PeerState.ACTIVE

    def __hash__(self) -> int:
        return self.id

    def __repr__(self) -> str:
        return f"<Peer {self.id} {self.unique_name or '-'} uid={self.uid} pid={self.pid}>"
