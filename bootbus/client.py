"""A small blocking D-Bus client on top of bootbus.wire, for bootbusctl and tests.

Owns: connecting to an address, SASL EXTERNAL, Hello, and calls that wait for
their reply while queueing other messages (signals) for the caller. It is not
a general client library; jeepney, GLib and sd-bus are those.
"""

import os
import socket
import time
from collections.abc import Iterator
from typing import Any, Self

from .wire import message as m
from .wire.address import parse_addresses
from .wire.errors import AddressError
from .wire.framer import Framer

BUS = "org.freedesktop.DBus"
BUS_PATH = "/org/freedesktop/DBus"
READ_SIZE = 256 * 1024


class CallError(Exception):
    """The peer answered with an error message."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(f"{name}: {text}")
        self.name = name
        self.text = text


def connect_socket(address: str, timeout: float | None = 5.0) -> socket.socket:
    last: Exception | None = None
    for addr in parse_addresses(address):
        if addr.transport != "unix":
            continue
        path = addr.get("path")
        abstract = addr.get("abstract")
        where: str | bytes
        if path is not None:
            where = path
        elif abstract is not None:
            where = b"\0" + abstract.encode()
        else:
            continue
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        try:
            sock.connect(where)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    if last is not None:
        raise last
    raise AddressError(f"no usable unix address in {address!r}")


class Client:
    def __init__(self, address: str, timeout: float | None = 5.0, hello: bool = True) -> None:
        self.sock = connect_socket(address, timeout)
        self.framer = Framer()
        self.serial = 0
        self.queue: list[m.Message] = []
        self.unique_name = ""
        try:
            self._authenticate()
            if hello:
                (self.unique_name,) = self.call(BUS, BUS_PATH, BUS, "Hello")
        except BaseException:
            self.sock.close()
            raise

    def _authenticate(self) -> None:
        uid = str(os.geteuid()).encode().hex()
        self.sock.sendall(b"\0AUTH EXTERNAL " + uid.encode() + b"\r\nNEGOTIATE_UNIX_FD\r\n")
        buf = b""
        while buf.count(b"\r\n") < 2:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("bus closed the connection during authentication")
            buf += chunk
            if buf.startswith(b"REJECTED"):
                raise ConnectionError("bus rejected authentication")
        if not buf.startswith(b"OK "):
            raise ConnectionError(f"unexpected authentication reply {buf!r}")
        self.sock.sendall(b"BEGIN\r\n")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def call_async(self, destination: str, path: str, interface: str | None, member: str,
                   signature: str = "", args: tuple[Any, ...] | list[Any] = (),
                   flags: int = 0) -> int:
        serial = self.next_serial()
        self.send(m.build(m.METHOD_CALL, serial, path=path, interface=interface, member=member,
                          destination=destination, signature=signature, args=args,
                          flags=flags))
        return serial

    def call(self, destination: str, path: str, interface: str | None, member: str,
             signature: str = "", args: tuple[Any, ...] | list[Any] = (),
             timeout: float | None = None) -> list[Any]:
        serial = self.call_async(destination, path, interface, member, signature, args)
        reply = self.wait_reply(serial, timeout)
        if reply.type == m.ERROR:
            text = reply.args()[0] if reply.signature.startswith("s") else ""
            raise CallError(reply.error_name or "", text)
        return reply.args()

    def wait_reply(self, serial: int, timeout: float | None = None) -> m.Message:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for index, msg in enumerate(self.queue):
                if msg.type in (m.METHOD_RETURN, m.ERROR) and msg.reply_serial == serial:
                    return self.queue.pop(index)
            self._read(deadline)

    def _read(self, deadline: float | None) -> None:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no reply from the bus in time")
            self.sock.settimeout(remaining)
        data = self.sock.recv(READ_SIZE)
        if not data:
            raise ConnectionError("the bus closed the connection")
        self.queue.extend(self.framer.feed(data))
        if self.framer.error is not None:
            raise ConnectionError(f"invalid data from the bus: {self.framer.error}")

    def messages(self, timeout: float | None = None) -> Iterator[m.Message]:
        """Yield incoming messages (signals, monitored traffic) as they come."""
        while True:
            while self.queue:
                yield self.queue.pop(0)
            self._read(None if timeout is None else time.monotonic() + timeout)

    def add_match(self, rule: str) -> None:
        self.call(BUS, BUS_PATH, BUS, "AddMatch", "s", (rule,))
