"""A peer: one connection as the bus sees it.

Owns: a connection's identity (unique name, credentials), its protocol state,
its input framer, its output queue and its match rules, all as plain data.
The socket lives in the io layer; this module never touches it.
"""

import enum
from typing import Any
from dataclasses import dataclass, field

from ..wire.framer import Framer
from ..wire.sasl import SaslServer
from .match import MatchRule
from .quota import UserUsage


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

    def __init__(self, fds: list[int]) -> None:
        self.fds = fds
        self.refs = 0


class OutFrame:
    """One message waiting in a peer's output queue."""

    __slots__ = ("bufs", "fds", "size")

    def __init__(self, bufs: list[bytes | memoryview], fds: SharedFds | None, size: int) -> None:
        self.bufs = bufs
        self.fds = fds
        self.size = size


@dataclass(eq=False, slots=True)
class Peer:
    id: int
    uid: int
    pid: int
    gids: tuple[int, ...] = ()
    label: str | None = None
    comm: str = ""
    state: PeerState = PeerState.AUTH
    unique_name: str = ""
    unix_fd: bool = False
    sasl: SaslServer | None = None
    framer: Framer = field(default_factory=Framer)
    outq: list[OutFrame] = field(default_factory=list)
    out_bytes: int = 0
    out_fds: int = 0  # fds held for frames in outq (the io layer decrements as it sends)
    matches: list[MatchRule] = field(default_factory=list)
    monitor_rules: list[MatchRule] = field(default_factory=list)
    sender_fields: dict[str, bytes] = field(default_factory=dict)
    pending_calls: int = 0  # calls this peer made that await a reply (derived)
    policy: Any = None  # its ClientPolicy under the bus policy (derived, rebuilt on reload)
    connected_at: float = 0.0
    messages_in: int = 0
    messages_out: int = 0
    # its uid's usage, shared with the uid's other peers (derived: Bus.add_peer and
    # Bus.rebuild_indexes attach it; until then a peer counts only for itself)
    user: UserUsage = field(default_factory=UserUsage.detached)

    @property
    def active(self) -> bool:
        return self.state >= PeerState.ACTIVE

    def __hash__(self) -> int:
        return self.id

    def __repr__(self) -> str:
        return f"<Peer {self.id} {self.unique_name or '-'} uid={self.uid} pid={self.pid}>"
