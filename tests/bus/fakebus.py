"""A real Bus and driver with fake peers: frames in through each peer's framer, out of its queue.

A :class:`Client` builds frames with bootbus.wire.message.build, feeds them to its
peer's framer and dispatches what comes out, as the io layer does with bytes
read from a socket; :meth:`Client.received` joins and parses what the bus queued
for it, as the client would read it from its socket.
"""

from dataclasses import dataclass, field
from typing import Any

from bootbus.bus import driver
from bootbus.bus.peer import Peer
from bootbus.bus.router import Bus
from bootbus.wire import message as m
from bootbus.wire.framer import Framer

BUS = "org.freedesktop.DBus"
BUS_PATH = "/org/freedesktop/DBus"
BUS_UID = 0
MACHINE_ID = "5ad1e5d2c1e2a4c94bc2a5b2c7e3e6f1"


def new_bus() -> Bus:
    bus = Bus(bus_id="0123456789abcdef0123456789abcdef", uid=BUS_UID, pid=1,
              machine_id=MACHINE_ID)
    bus.driver = driver.handle
    return bus


@dataclass
class Client:
    bus: Bus
    peer: Peer
    serial: int = 0
    unique_name: str = ""
    inbox: list[m.Message] = field(default_factory=list)

    # -- sending ---------------------------------------------------------------
    def send(self, mtype: int, fds: list[int] | None = None, **kwargs: Any) -> int:
        self.serial += 1
        raw = m.build(mtype, self.serial, **kwargs)
        for msg in self.peer.framer.feed(raw, fds or []):
            self.bus.dispatch(self.peer, msg)
        return self.serial

    def call(self, destination: str | None, member: str, signature: str = "",
             args: tuple[Any, ...] | list[Any] = (), interface: str | None = None,
             path: str = "/", flags: int = 0, fds: list[int] | None = None,
             unix_fds: int = 0) -> int:
        return self.send(m.METHOD_CALL, fds=fds, path=path, interface=interface, member=member,
                         destination=destination, signature=signature, args=args, flags=flags,
                         unix_fds=unix_fds)

    def call_bus(self, member: str, signature: str = "", args: tuple[Any, ...] = (),
                 interface: str = BUS, path: str = BUS_PATH, flags: int = 0) -> int:
        return self.call(BUS, member, signature, args, interface=interface, path=path,
                         flags=flags)

    def ask_bus(self, member: str, signature: str = "", args: tuple[Any, ...] = (),
                interface: str = BUS, path: str = BUS_PATH) -> m.Message:
        """Call the driver and return its answer (a method return or an error)."""
        serial = self.call_bus(member, signature, args, interface, path)
        return self.reply_to(serial)

    def reply(self, call: m.Message, signature: str = "", args: tuple[Any, ...] = (),
              flags: int = 0) -> int:
        return self.send(m.METHOD_RETURN, reply_serial=call.serial, destination=call.sender,
                         signature=signature, args=args, flags=flags)

    def error(self, call: m.Message, name: str, text: str = "") -> int:
        return self.send(m.ERROR, reply_serial=call.serial, destination=call.sender,
                         error_name=name, signature="s", args=(text,))

    def signal(self, member: str = "Changed", interface: str = "com.example.I",
               path: str = "/com/example", signature: str = "", args: tuple[Any, ...] = (),
               destination: str | None = None, fds: list[int] | None = None,
               unix_fds: int = 0) -> int:
        return self.send(m.SIGNAL, fds=fds, path=path, interface=interface, member=member,
                         signature=signature, args=args, destination=destination,
                         unix_fds=unix_fds)

    def add_match(self, rule: str) -> None:
        answer = self.ask_bus("AddMatch", "s", (rule,))
        assert answer.type == m.METHOD_RETURN, answer.args()

    # -- receiving -------------------------------------------------------------
    def received(self) -> list[m.Message]:
        """Everything the bus queued for this peer and the test has not looked at yet."""
        self._drain()
        out, self.inbox = self.inbox, []
        return out

    def reply_to(self, serial: int) -> m.Message:
        """Take the one reply to ``serial``; other messages stay for received()."""
        self._drain()
        found = [msg for msg in self.inbox
                 if msg.type in (m.METHOD_RETURN, m.ERROR) and msg.reply_serial == serial]
        assert len(found) == 1, f"expected one reply to {serial}, got {found}"
        self.inbox.remove(found[0])
        return found[0]

    def _drain(self) -> None:
        """Read the peer's output queue as the client would read its socket."""
        framer = Framer()
        for frame in self.peer.outq:
            data = b"".join(bytes(buf) for buf in frame.bufs)
            fds = list(frame.fds.fds) if frame.fds is not None else []
            (msg,) = framer.feed(data, fds)
            assert framer.pending == 0 and framer.fds == []
            self.inbox.append(msg)
        peer = self.peer
        peer.outq.clear()
        peer.user.out_bytes -= peer.out_bytes  # as the io layer does when it writes
        peer.user.out_fds -= peer.out_fds
        peer.out_bytes = peer.out_fds = 0
        self.bus.dirty.discard(peer)


def connect(bus: Bus, uid: int = 1000, pid: int = 4242, unix_fd: bool = False,
            hello: bool = True, label: str | None = None) -> Client:
    """A peer past SASL; with ``hello`` it also said Hello and its queue is emptied."""
    peer = bus.add_peer(uid=uid, pid=pid, gids=(uid, 27), label=label, comm="fake")
    bus.authenticated(peer, unix_fd)
    client = Client(bus, peer)
    if hello:
        serial = client.call_bus("Hello")
        answer = client.reply_to(serial)
        client.unique_name = answer.args()[0]
        client.received()  # NameAcquired
    return client


def summary(msg: m.Message) -> tuple[Any, ...]:
    """(type name, sender, destination, member or error name, args) of a message."""
    name = msg.error_name if msg.type == m.ERROR else msg.member
    return (m.TYPE_NAMES[msg.type], msg.sender, msg.destination, name, msg.args())
