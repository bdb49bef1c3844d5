"""Where bootbusctl's answers come from: the live bus, or the files bootbus left.

Owns: the group-level target (--address, --runtime-dir, --timeout) and the
choice it implies (--address: live only; --runtime-dir: files only; both or
neither: live, then the files if the bus does not answer, a wedged one
included), the live connection (a bootbus.client.Client that pipelines
batches of calls and remembers which optional Supervisor1 methods the
daemon lacks), the offline view of summary.json, and whether a runtime
directory holds a step log.

Never: decides what to ask the bus (the commands do), writes to the runtime
directory, formats output beyond the one-line description of a source, or
lets an expected failure escape as anything but BusFailure or
OfflineUnavailable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

from ..client import CallError, Client
from ..daemon import default_runtime_dir
from ..io.steplog import STEPLOG_FILENAME, steplog_path
from ..io.summary import SUMMARY_FILENAME, Summary, SummaryError, SummaryView, read_summary
from ..wire import message as m
from ..wire.address import parse_addresses
from ..wire.errors import AddressError
from .exits import BusFailure, OfflineUnavailable
from .render import format_time, iso_time

SERVICE = "org.bootbus"
PATH = "/org/bootbus/Supervisor1"
IFACE = "org.bootbus.Supervisor1"
PEER_IFACE = "org.freedesktop.DBus.Peer"
UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
DEFAULT_TIMEOUT = 5.0  # seconds to wait for the bus to accept us or answer a call
CALL_BATCH = 256  # calls in flight at once when asking about every name


@dataclass
class Target:
    """What the group-level flags asked for."""

    address: str | None  # explicit --address (or BOOTBUS_ADDRESS)
    runtime_dir: str | None  # explicit --runtime-dir
    timeout: float

    @property
    def live_address(self) -> str:
        if self.address:
            return self.address
        return f"unix:path={self.runtime_dir or default_runtime_dir()}/bus"

    @property
    def files_dir(self) -> str:
        """The runtime directory whose files the offline mode and `log` read."""
        if self.runtime_dir:
            return self.runtime_dir
        inferred = _dir_of_address(self.address) if self.address else None
        return inferred or default_runtime_dir()


def _dir_of_address(address: str) -> str | None:
    """The directory of a unix:path= address, if bootbus left its files there."""
    try:
        parsed = parse_addresses(address)
    except AddressError:
        return None
    for addr in parsed:
        path = addr.get("path") if addr.transport == "unix" else None
        if path is not None:
            directory = os.path.dirname(path)
            if any(os.path.exists(os.path.join(directory, f))
                   for f in (SUMMARY_FILENAME, STEPLOG_FILENAME)):
                return directory
    return None


class CtlClient(Client):
    """bootbus.client.Client that closes its socket when connecting fails half-way
    (a wedged bus accepts the connection, then never answers the SASL exchange)."""

    def __init__(self, address: str, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        try:
            super().__init__(address, timeout)
        except BaseException:
            sock = getattr(self, "sock", None)
            if sock is not None:
                sock.close()
            raise


class Live:
    """Answers from the running bus; remembers which optional methods it has."""

    mode = "live"

    def __init__(self, client: Client, address: str, timeout: float, files_dir: str,
                 runtime_dir_explicit: bool = False) -> None:
        self.client = client
        self.address = address
        self.timeout = timeout
        self.files_dir = files_dir
        self.runtime_dir_explicit = runtime_dir_explicit
        self._missing: set[str] = set()

    def describe(self) -> str:
        return f"live, {self.address}"

    def source(self) -> dict[str, Any]:
        return {"mode": self.mode, "address": self.address}

    def call(self, dest: str, path: str, iface: str, member: str, sig: str = "",
             args: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self.client.call(dest, path, iface, member, sig, args, timeout=self.timeout)
        except CallError as exc:
            raise BusFailure(f"{member} failed: {exc}") from None
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise BusFailure(f"{member}: {exc}") from None

    def batch(self, dest: str, path: str, iface: str, member: str, sig: str,
              args_list: list[tuple[Any, ...]]) -> list[list[Any] | CallError]:
        """The same call for each args tuple, pipelined; errors are returned, not raised."""
        out: list[list[Any] | CallError] = []
        try:
            for start in range(0, len(args_list), CALL_BATCH):
                serials = [self.client.call_async(dest, path, iface, member, sig, args)
                           for args in args_list[start:start + CALL_BATCH]]
                for serial in serials:
                    reply = self.client.wait_reply(serial, self.timeout)
                    out.append(reply_value(reply))
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise BusFailure(f"{member}: {exc}") from None
        return out

    def optional(self, member: str) -> list[Any] | None:
        """A Supervisor1 method the daemon may not have yet; None when it doesn't."""
        if member in self._missing:
            return None
        (reply,) = self.batch(SERVICE, PATH, IFACE, member, "", [()])
        if isinstance(reply, CallError):
            if reply.name == UNKNOWN_METHOD:
                self._missing.add(member)
                return None
            raise BusFailure(f"{member} failed: {reply}")
        return reply

    def close(self) -> None:
        self.client.close()


def reply_value(reply: m.Message) -> list[Any] | CallError:
    if reply.type == m.ERROR:
        text = reply.args()[0] if reply.signature.startswith("s") else ""
        return CallError(reply.error_name or "", text)
    return reply.args()


class Offline:
    """Answers from summary.json in the runtime directory."""

    mode = "offline"

    def __init__(self, files_dir: str, view: SummaryView, live_error: str | None) -> None:
        self.files_dir = files_dir
        self.view = view
        self.live_error = live_error

    @property
    def summary(self) -> Summary:
        return self.view.summary

    def describe(self) -> str:
        as_of = format_time(self.summary.written_realtime_usec)
        why = f"; live: {self.live_error}" if self.live_error else ""
        if self.view.online:
            return (f"offline, from the files in {self.files_dir}: {self.view.reason}; "
                    f"state as of {as_of}{why}")
        return f"OFFLINE: {not_running(self.view)}; state as of {as_of}{why}"

    def source(self) -> dict[str, Any]:
        return {"mode": self.mode, "runtime_dir": self.files_dir,
                "daemon_running": self.view.online, "reason": self.view.reason,
                "as_of_realtime_usec": self.summary.written_realtime_usec,
                "as_of": iso_time(self.summary.written_realtime_usec),
                "live_error": self.live_error}

    def close(self) -> None:
        pass


def not_running(view: SummaryView) -> str:
    pid = view.summary.pid
    return f"daemon pid {pid} is not running ({view.reason})" if pid else view.reason


Source = Live | Offline


LiveT = TypeVar("LiveT", bound=Live)


def open_live(target: Target, client_class: type[CtlClient], live_class: type[LiveT]) -> LiveT:
    """Live mode over a ``client_class`` connection, or a BusFailure (exit 1)."""
    address = target.live_address
    try:
        client = client_class(address, timeout=target.timeout)
    except (OSError, ConnectionError, AddressError, CallError) as exc:
        raise BusFailure(f"cannot connect to {address}: {failure_reason(exc)}") from None
    return live_class(client, address, target.timeout, target.files_dir,
                      bool(target.runtime_dir))


def connect(target: Target) -> Live:
    """Live mode or a BusFailure (exit 1)."""
    return open_live(target, CtlClient, Live)


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time (the daemon may be wedged)"
    return str(exc) or type(exc).__name__


def open_source(target: Target) -> Source:
    """--address: live only; --runtime-dir: files only; both or neither: live, else files."""
    if target.runtime_dir and not target.address:
        return _offline(target.files_dir, None)
    try:
        live = connect(target)
        try:
            live.call(SERVICE, PATH, PEER_IFACE, "Ping")  # a wedged supervisor falls back too
        except BusFailure:
            live.close()
            raise
        return live
    except BusFailure as exc:
        if target.address and not target.runtime_dir:
            raise
        return _offline(target.files_dir, exc.message)


def _offline(files_dir: str, live_error: str | None) -> Offline:
    try:
        view = read_summary(files_dir)
    except SummaryError as exc:
        prefix = f"{live_error}; and offline: " if live_error else ""
        raise OfflineUnavailable(f"{prefix}{exc}") from None
    return Offline(files_dir, view, live_error)


def has_step_log(files_dir: str) -> bool:
    return any(os.path.exists(steplog_path(files_dir) + suffix) for suffix in ("", ".1"))
