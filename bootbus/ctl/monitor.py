"""The `monitor` command: every message on the bus (or those matching rules).

Owns: becoming a monitor (org.freedesktop.DBus.Monitoring.BecomeMonitor,
with nothing that arrived before its reply shown), receiving monitored
messages with their fds closed at once, the text and JSON form of a
message, hiding the monitor's own NameLost, and stopping at --count or
--duration.

Never: sends anything on the bus after BecomeMonitor (the bus would drop
the monitor), keeps a received fd open, or writes the pcap format itself
(pcap.py does).
"""

from __future__ import annotations

import array
import datetime
import json
import os
import socket
import struct
import sys
import time
from collections.abc import Iterable
from typing import IO, Any

import click

from ..client import BUS, BUS_PATH, READ_SIZE, CallError
from ..wire import message as m
from ..wire.errors import MarshalError, SignatureError
from ..wire.limits import MAX_UNIX_FDS_PER_MESSAGE
from .exits import BusFailure
from .options import json_option, target_of
from .pcap import PcapWriter
from .render import mode_line, plain
from .sources import CtlClient, Live, Target, open_live, reply_value

MONITORING_IFACE = "org.freedesktop.DBus.Monitoring"


class MonitorClient(CtlClient):
    """A client that also receives fds (monitored messages may carry them) and closes them."""

    def _read(self, deadline: float | None) -> None:
        if deadline is not None:  # None keeps the socket's timeout (Client's, or receive()'s)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no message in time")
            self.sock.settimeout(remaining)
        data, ancdata, _flags, _addr = self.sock.recvmsg(
            READ_SIZE, socket.CMSG_SPACE(MAX_UNIX_FDS_PER_MESSAGE * 4), socket.MSG_CMSG_CLOEXEC)
        fds = _fds_of(ancdata)
        if not data:
            _close_all(fds)
            raise ConnectionError("the bus closed the connection")
        try:
            received = self.framer.feed(data, fds)
        finally:
            _close_all(self.framer.take_fds() if self.framer.error else [])
        for msg in received:
            _close_all(msg.fds)
            msg.fds = []
        self.queue.extend(received)
        if self.framer.error is not None:
            raise ConnectionError(f"invalid data from the bus: {self.framer.error}")

    def become_monitor(self, rules: list[str], timeout: float) -> CallError | None:
        """BecomeMonitor; what arrived before its reply (our own NameAcquired) is dropped.

        The bus answers before it turns the connection into a monitor, so every
        message after the reply is monitored traffic and none before it is.
        """
        serial = self.call_async(BUS, BUS_PATH, MONITORING_IFACE, "BecomeMonitor", "asu",
                                 (rules, 0))
        deadline = time.monotonic() + timeout
        while True:
            for index, msg in enumerate(self.queue):
                if msg.type in (m.METHOD_RETURN, m.ERROR) and msg.reply_serial == serial:
                    del self.queue[:index + 1]
                    answer = reply_value(msg)
                    return answer if isinstance(answer, CallError) else None
            self._read(deadline)

    def receive(self, deadline: float | None) -> m.Message | None:
        """The next message, or None once `deadline` (monotonic) has passed."""
        if deadline is None:
            self.sock.settimeout(None)  # a quiet bus is no error: wait as long as it takes
        while not self.queue:
            try:
                self._read(deadline)
            except TimeoutError:
                return None
        return self.queue.pop(0)


def _fds_of(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    return list(fds)


def _close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class MonitorLive(Live):
    client: MonitorClient

    def receive(self, deadline: float | None) -> m.Message | None:
        return self.client.receive(deadline)

    @property
    def unique_name(self) -> str:
        return self.client.unique_name


def connect_monitor(target: Target) -> MonitorLive:
    return open_live(target, MonitorClient, MonitorLive)


def become_monitor(live: MonitorLive, rules: list[str]) -> None:
    try:
        reply = live.client.become_monitor(rules, live.timeout)
    except (TimeoutError, ConnectionError, OSError) as exc:
        raise BusFailure(f"BecomeMonitor: {exc}") from None
    if isinstance(reply, CallError):
        raise BusFailure(f"BecomeMonitor refused: {reply}")


def message_dict(msg: m.Message, realtime_ns: int) -> dict[str, Any]:
    info: dict[str, Any] = {
        "time_usec": realtime_ns // 1000,
        "type": m.TYPE_NAMES.get(msg.type, str(msg.type)),
        "sender": msg.sender, "destination": msg.destination, "path": msg.path,
        "interface": msg.interface, "member": msg.member, "error_name": msg.error_name,
        "serial": msg.serial, "reply_serial": msg.reply_serial or None,
        "signature": msg.signature, "unix_fds": msg.unix_fds,
    }
    try:
        info["args"] = plain(msg.args())
    except (MarshalError, SignatureError, ValueError, IndexError, struct.error) as exc:
        info["args"] = None
        info["args_error"] = str(exc)
    return info


def format_message(info: dict[str, Any]) -> str:
    when = datetime.datetime.fromtimestamp(info["time_usec"] / 1e6).strftime("%H:%M:%S.%f")
    parts = [when, f"{info['type']:<13}"]
    for key, label in (("sender", "sender"), ("destination", "dest"), ("path", "path"),
                       ("interface", "iface"), ("member", "member"),
                       ("error_name", "error"), ("serial", "serial"),
                       ("reply_serial", "reply_serial")):
        if info[key] is not None:
            parts.append(f"{label}={info[key]}")
    if info["signature"]:
        parts.append(f"sig={info['signature']}")
    if info["unix_fds"]:
        parts.append(f"fds={info['unix_fds']}")
    if info["args"]:
        parts.append("args=" + json.dumps(info["args"], ensure_ascii=False))
    elif info["args"] is None:
        parts.append(f"args=<{info['args_error']}>")
    return " ".join(parts)


def _own_name_lost(msg: m.Message, unique_name: str) -> bool:
    """The NameLost a monitor gets for its own unique name (dbus-monitor hides it too)."""
    if msg.type != m.SIGNAL or msg.member != "NameLost" or msg.sender != BUS:
        return False
    try:
        return bool(msg.args() == [unique_name])
    except (MarshalError, SignatureError):
        return False


@click.command()
@click.argument("rules", nargs=-1)
@click.option("--pcap", "pcap_file", type=click.File("wb", lazy=False), default=None,
              metavar="FILE", help="also write the messages to FILE as a pcap (LINKTYPE_DBUS, "
                                   "as dbus-monitor --pcap); '-' writes it to stdout instead "
                                   "of the text")
@click.option("-c", "--count", type=click.IntRange(1), default=None,
              help="stop after N messages")
@click.option("--duration", "--timeout", "duration", type=click.FloatRange(0), default=None,
              metavar="SECONDS", help="stop after SECONDS")
@click.option("-q", "--quiet", is_flag=True, help="no text output (with --pcap)")
@json_option
@click.pass_context
def monitor(ctx: click.Context, rules: tuple[str, ...], pcap_file: IO[bytes] | None,
            count: int | None, duration: float | None, quiet: bool, as_json: bool) -> None:
    """Print every message on the bus (or those matching RULES), like busctl monitor.

    \b
    Each RULE is a D-Bus match rule, e.g. "type='signal',interface='org.example.I'";
    a message is shown if it matches any of them. Needs root or the bus's user.
    """
    live = connect_monitor(target_of(ctx))
    ctx.call_on_close(live.close)
    pcap = PcapWriter(pcap_file) if pcap_file is not None else None
    to_stdout = pcap_file is not None and getattr(pcap_file, "name", "") == "<stdout>"
    become_monitor(live, list(rules))
    if not (as_json or to_stdout or quiet):
        mode_line(live)  # after BecomeMonitor: from this line on, nothing is missed
        sys.stderr.flush()
    deadline = None if duration is None else time.monotonic() + duration
    seen = 0
    try:
        while count is None or seen < count:
            msg = live.receive(deadline)
            if msg is None:
                break
            if _own_name_lost(msg, live.unique_name):
                continue
            now = time.time_ns()
            seen += 1
            if pcap is not None:
                pcap.write(msg.raw, now)
            if not (quiet or to_stdout):
                info = message_dict(msg, now)
                click.echo(json.dumps(info, ensure_ascii=False) if as_json
                           else format_message(info))
    except KeyboardInterrupt:
        pass
    except (ConnectionError, OSError) as exc:
        raise BusFailure(f"monitor stopped after {seen} messages: {exc}") from None
