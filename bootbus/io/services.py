"""The bus-owned name org.bootbus: one name, several interfaces.

Owns: routing method calls addressed to ``org.bootbus`` to the handler of
their interface (the supervisor, the log, devices, ...). A call without an
interface, or to an interface nobody registered, goes to the fallback.
"""

from collections.abc import Callable

from ..bus.peer import Peer
from ..bus.router import Bus
from ..wire import message as m

SERVICE = "org.bootbus"
Handler = Callable[[Bus, Peer, m.Message], None]


class InterfaceRouter:
    def __init__(self, fallback: Handler) -> None:
        self.fallback = fallback
        self.interfaces: dict[str, Handler] = {}

    def register(self, interface: str, handler: Handler) -> None:
        self.interfaces[interface] = handler

    def __call__(self, bus: Bus, peer: Peer, msg: m.Message) -> None:
        handler = self.interfaces.get(msg.interface or "", self.fallback)
        handler(bus, peer, msg)
