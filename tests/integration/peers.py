"""Well-behaved peers on the bus, built on jeepney's blocking API.

This module owns two things: `Peer`, a client connection that keeps every
message it did not explicitly wait for in an inbox (so a test can assert the
exact signals a connection saw, in order), and `Service`, a thread that serves
method calls on its own connection with handlers a test provides.

It must never import bootbus, never block without a timeout, and never leave a
thread or a received fd behind: `Service.stop()` joins the thread and re-raises
whatever the handlers raised.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Self

from jeepney import (
    DBusAddress,
    HeaderFields,
    MatchRule,
    Message,
    MessageType,
    new_error,
    new_method_call,
    new_method_return,
)
from jeepney.io.blocking import DBusConnection, open_dbus_connection

DRIVER = "org.freedesktop.DBus"
DRIVER_PATH = "/org/freedesktop/DBus"
DRIVER_ADDR = DBusAddress(DRIVER_PATH, bus_name=DRIVER, interface=DRIVER)
# Seconds a peer waits for any single reply or signal.
REPLY_TIMEOUT_S = 5.0
# How long a service thread blocks in one receive before checking for stop.
SERVICE_POLL_S = 0.05

Handler = Callable[[Message], "Message | None"]


def error_name(msg: Message) -> str | None:
    if msg.header.message_type is not MessageType.error:
        return None
    return str(msg.header.fields[HeaderFields.error_name])


def member(msg: Message) -> str | None:
    value = msg.header.fields.get(HeaderFields.member)
    return None if value is None else str(value)


def sender(msg: Message) -> str | None:
    value = msg.header.fields.get(HeaderFields.sender)
    return None if value is None else str(value)


class Peer:
    """One client connection whose unsolicited messages land in `inbox`."""

    def __init__(self, address: str, *, enable_fds: bool = False) -> None:
        self.conn: DBusConnection = open_dbus_connection(
            bus=address, enable_fds=enable_fds, auth_timeout=REPLY_TIMEOUT_S
        )
        self.unique_name: str = self.conn.unique_name
        self.inbox: deque[Message] = deque()
        self._all = self.conn.filter(MatchRule(), queue=self.inbox)
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._all.close()
            self.conn.close()

    def send(self, msg: Message) -> None:
        self.conn.send(msg)

    def request(self, msg: Message, timeout: float = REPLY_TIMEOUT_S) -> Message:
        """Send a method call and return its reply (a return or an error)."""
        return self.conn.send_and_get_reply(msg, timeout=timeout)

    def call(self, dest: str, path: str, interface: str | None, method: str,
             signature: str | None = None, body: tuple[Any, ...] = (),
             timeout: float = REPLY_TIMEOUT_S) -> Message:
        addr = DBusAddress(path, bus_name=dest, interface=interface)
        return self.request(new_method_call(addr, method, signature, body), timeout)

    def driver(self, method: str, signature: str | None = None,
               body: tuple[Any, ...] = (), interface: str = DRIVER) -> Message:
        """Call the bus driver; return the reply message, error or not."""
        return self.call(DRIVER, DRIVER_PATH, interface, method, signature, body)

    def driver_ok(self, method: str, signature: str | None = None,
                  body: tuple[Any, ...] = (), interface: str = DRIVER) -> tuple[Any, ...]:
        """Call the bus driver and return the body of its successful reply."""
        reply = self.driver(method, signature, body, interface)
        if reply.header.message_type is not MessageType.method_return:
            raise AssertionError(f"{method} failed: {error_name(reply)} {reply.body}")
        return tuple(reply.body)

    def add_match(self, rule: str) -> None:
        self.driver_ok("AddMatch", "s", (rule,))

    def barrier(self) -> None:
        """Round-trip to the driver: everything the bus queued for us earlier
        is in the inbox afterwards, since a bus delivers to a peer in order."""
        self.driver_ok("GetId")

    def wait_for(self, predicate: Callable[[Message], bool],
                 timeout: float = REPLY_TIMEOUT_S) -> Message:
        """Remove and return the first inbox message matching predicate."""
        deadline = time.monotonic() + timeout
        while True:
            for msg in self.inbox:
                if predicate(msg):
                    self.inbox.remove(msg)
                    return msg
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching message within {timeout}s")
            self.conn.recv_messages(timeout=remaining)

    def signals(self, member_name: str | None = None) -> list[Message]:
        """Drain and return the signals in the inbox, optionally of one member."""
        kept: deque[Message] = deque()
        out = []
        while self.inbox:
            msg = self.inbox.popleft()
            is_signal = msg.header.message_type is MessageType.signal
            if is_signal and member_name in (None, member(msg)):
                out.append(msg)
            else:
                kept.append(msg)
        self.inbox.extend(kept)
        return out


class Service(threading.Thread):
    """Serve method calls on a connection of its own until stopped.

    handlers maps a member name to a function taking the call and returning
    the reply (or None to send nothing). Unknown members get UnknownMethod.
    """

    def __init__(self, address: str, handlers: dict[str, Handler], *,
                 name: str | None = None, enable_fds: bool = False) -> None:
        super().__init__(daemon=True)
        self.handlers = handlers
        self.conn = open_dbus_connection(bus=address, enable_fds=enable_fds,
                                         auth_timeout=REPLY_TIMEOUT_S)
        self.unique_name: str = self.conn.unique_name
        self.calls: list[Message] = []
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        if name is not None:
            reply = self.conn.send_and_get_reply(
                new_method_call(DRIVER_ADDR, "RequestName", "su", (name, 4)),
                timeout=REPLY_TIMEOUT_S,
            )
            if reply.body != (1,):
                raise AssertionError(f"could not own {name}: {reply.body}")

    def wait_calls(self, count: int, timeout: float = REPLY_TIMEOUT_S) -> list[Message]:
        """Wait until the service has received at least count method calls."""
        deadline = time.monotonic() + timeout
        while len(self.calls) < count:
            if time.monotonic() > deadline or not self.is_alive():
                raise TimeoutError(f"service got {len(self.calls)} calls, wanted {count}")
            time.sleep(SERVICE_POLL_S / 5)
        return list(self.calls)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    msg = self.conn.receive(timeout=SERVICE_POLL_S)
                except TimeoutError:
                    continue
                if msg.header.message_type is MessageType.method_call:
                    self._dispatch(msg)
        except BaseException as exc:  # noqa: BLE001 - handed to the test by stop()
            self._error = exc

    def _dispatch(self, msg: Message) -> None:
        self.calls.append(msg)
        handler = self.handlers.get(member(msg) or "")
        if handler is None:
            reply: Message | None = new_error(
                msg, "org.freedesktop.DBus.Error.UnknownMethod", "s", ("no such method",)
            )
        else:
            reply = handler(msg)
        if reply is not None:
            self.conn.send(reply)

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout=REPLY_TIMEOUT_S)
        self.conn.close()
        if self._error is not None:
            raise self._error


def echo(msg: Message) -> Message:
    """Reply with the call's own arguments."""
    return new_method_return(msg, msg.header.fields.get(HeaderFields.signature), msg.body)
