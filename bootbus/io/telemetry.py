"""Telemetry: wires the step log, the journald bridge, sd_notify and the
offline summary to the bus's events.

Owns: which events become step-log records (connections with pid, comm and
uid; refusals; names acquired and lost; disconnects with their reason; phase
changes; re-exec steps), when the summary is marked dirty, the deadlines the
event loop must wake up for, and the ``org.bootbus.Log1`` bus method through
which early tools log. Never blocks the loop: every destination is bounded
and a failing one is counted, not raised.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping

from ..bus.peer import Peer
from ..bus.router import Bus
from ..wire import message as m
from .journal import JournalBridge
from .notify import Notifier
from .server import Server
from .steplog import LOG_ERR, LOG_WARNING, StepLog, StepLogError
from .summary import ConnectionSummary, ErrorSummary, NameSummary, Summary, SummaryWriter

TYPE_CHECKING = False  # typing's, without importing typing (see bootbus.plain)
if TYPE_CHECKING:
    from typing import Any

LOG_IFACE = "org.bootbus.Log1"
STDERR_FD = 2
CLIENT_LOG_BURST = 64  # records a client may log at once; refilled at CLIENT_LOG_RATE
TICK_ERROR_REPORT_EVERY = 100  # log the first failing telemetry tick, then every 100th
CLIENT_LOG_RATE = 16.0  # records per second and client, so one client cannot flush the log


def read_comm(pid: int) -> str:
    """The process name, with three system calls (open() and a file object cost ~25 us
    more, on every connection)."""
    try:
        fd = os.open(f"/proc/{pid}/comm", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        return os.read(fd, 64).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    finally:
        os.close(fd)


class Telemetry:
    def __init__(self, runtime_dir: str, bus: Bus, server: Server, phase: str,
                 addresses: list[str]) -> None:
        self.bus = bus
        self.server = server
        self.bridge = JournalBridge(runtime_dir)
        self.steplog = StepLog(runtime_dir, phase=phase, sink=self.bridge)
        self.notifier = Notifier()
        self.summary = SummaryWriter(runtime_dir, self.build_summary)
        self.addresses = addresses
        self.phase = phase
        self.generation = 1
        self.pivots = 0
        self.started = (int(time.time() * 1e6), int(time.monotonic() * 1e6))
        self.state = "running"
        self.tick_errors = 0
        # Echo steps on stderr too, unless stderr already is the journal (systemd sets
        # JOURNAL_STREAM for that), where the bridge delivers them with their fields.
        self.echo_stderr = "JOURNAL_STREAM" not in os.environ
        # Written once per loop iteration (a write per record cost ~8 us, a sixth of a
        # connection's life); warnings and worse go out at once.
        self._echo: list[str] = []
        self._client_budget: dict[int, tuple[float, float]] = {}
        server.on_connect.append(self._connected)
        server.on_disconnect.append(self._disconnected)
        server.on_refuse.append(self._refused)
        server.add_timer(self.next_deadline, self.tick)
        bus.name_hooks.append(self._name_changed)

    # -- logging ------------------------------------------------------------
    def step(self, priority: int, message: str, **fields: Any) -> None:
        try:
            self.steplog.log_own(priority, message, {k: str(v) for k, v in fields.items()})
        except StepLogError:
            pass
        if self.echo_stderr:
            if not self._echo:
                self.server.soon.append(self.flush_echo)
            self._echo.append(f"<{priority}>bootbus: {message}\n")
            if priority <= LOG_WARNING:
                self.flush_echo()
        if priority <= LOG_ERR:
            self.summary.mark_dirty()

    def flush_echo(self) -> None:
        if not self._echo:
            return
        data = "".join(self._echo).encode("utf-8", "replace")
        self._echo.clear()
        try:
            sys.stderr.flush()  # what others printed there comes first
            while data:
                data = data[os.write(STDERR_FD, data):]
        except (OSError, ValueError):
            self.echo_stderr = False

    def set_phase(self, phase: str) -> None:
        if phase != self.phase:
            self.phase = phase
            self.steplog.set_phase(phase)
            self.notifier.status(self.status_line())
            self.summary.mark_dirty()

    def status_line(self) -> str:
        return (f"phase {self.phase}, generation {self.generation}, "
                f"{len(self.bus.peers)} connections, {len(self.bus.registry.queues)} names")

    # -- events ---------------------------------------------------------------
    def _connected(self, peer: Peer) -> None:
        peer.comm = read_comm(peer.pid)
        self.step(6, f"connection from pid {peer.pid} ({peer.comm}) uid {peer.uid}",
                  PEER_ID=peer.id, PEER_PID=peer.pid, PEER_COMM=peer.comm, PEER_UID=peer.uid)
        self.summary.mark_dirty()

    def _disconnected(self, peer: Peer, reason: str) -> None:
        priority = 6 if reason == "end of file" else 4
        self.step(priority, f"disconnected {peer.unique_name or 'peer ' + str(peer.id)}: "
                  f"{reason}", UNIQUE_NAME=peer.unique_name, PEER_PID=peer.pid,
                  PEER_COMM=peer.comm, PEER_UID=peer.uid, REASON=reason)
        self._client_budget.pop(peer.id, None)
        self.summary.mark_dirty()

    def _refused(self, uid: int, pid: int, reason: str) -> None:
        self.step(4, f"refused a connection of uid {uid} pid {pid}: {reason}",
                  PEER_UID=uid, PEER_PID=pid, REASON=reason)

    def _name_changed(self, name: str, old: str, new: str) -> None:
        if name.startswith(":"):
            return
        if old:
            self.step(6, f"{old} lost {name}", NAME=name, OLD_OWNER=old, NEW_OWNER=new)
        if new:
            self.step(6, f"{new} acquired {name}", NAME=name, OLD_OWNER=old, NEW_OWNER=new)
        self.summary.mark_dirty()

    # -- loop -----------------------------------------------------------------
    def tick(self) -> None:
        # Logging must never take the bus down: out of fds or memory, it waits.
        for work in (self.steplog.poll, self.summary.flush_if_due, self.notifier.watchdog_tick):
            try:
                work()
            except OSError as exc:
                self.tick_errors += 1
                if self.tick_errors == 1 or self.tick_errors % TICK_ERROR_REPORT_EVERY == 0:
                    self.step(3, f"telemetry: {exc} (the bus keeps serving)",
                              ERRORS=self.tick_errors)

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self.steplog.next_deadline_usec(),
                                 self.summary.next_deadline_usec(),
                                 self.notifier.next_deadline_usec()) if d is not None]
        return min(deadlines) / 1e6 if deadlines else None

    def before_exec(self) -> None:
        # No summary flush here: it costs ~10 ms with 1,000 connections inside the
        # pause, and the new image writes it once it serves again.
        self.notifier.reloading("re-executing")
        self.state = "reexecuting"
        self.flush_echo()
        self.steplog.close()
        self.bridge.close()

    def exec_failed(self, reason: str) -> None:
        """The exec did not happen: this image serves on (the step log reopens on write)."""
        self.state = "running"
        self.notifier.ready(self.status_line())
        self.summary.mark_dirty()

    def stopping(self) -> None:
        self.notifier.stopping("stopping")
        self.step(6, "bootbus stopping")
        self.state = "stopped"
        self.summary.flush()
        self.flush_echo()
        self.steplog.close()
        self.bridge.close()

    # -- the summary for bootbusctl in offline mode ------------------------------
    def build_summary(self) -> Summary:
        bus = self.bus
        conns = []
        for peer in bus.peers.values():
            conns.append(ConnectionSummary(
                unique_name=peer.unique_name or f"(peer {peer.id}, {peer.state.name.lower()})",
                pid=peer.pid, comm=peer.comm, uid=peer.uid,
                names=sorted(bus.registry.primary_names_of(peer.id)), match_count=len(peer.matches),
                queued_bytes=peer.out_bytes, queued_messages=len(peer.outq)))
        names = []
        for name, queue in bus.registry.queues.items():
            owners = [bus.peers[o.peer].unique_name for o in queue if o.peer in bus.peers]
            names.append(NameSummary(name=name, owner=owners[0] if owners else "",
                                     queue_depth=max(0, len(owners) - 1), queued=owners[1:]))
        return Summary(
            phase=self.phase, state=self.state, generation=self.generation, pivots=self.pivots,
            started_realtime_usec=self.started[0], started_monotonic_usec=self.started[1],
            addresses=self.addresses, connections=conns, connection_count=len(conns),
            names=names, name_count=len(names),
            last_errors=[ErrorSummary.from_record(r) for r in self.steplog.last_errors])

    # -- org.bootbus.Log1.Log(y priority, s message, a{ss} fields) ------------------
    def handle_log(self, bus: Bus, peer: Peer, msg: m.Message) -> None:
        if msg.member != "Log" or msg.signature != "ysa{ss}":
            bus.send_error(peer, msg, "org.freedesktop.DBus.Error.UnknownMethod",
                           f'No method "{msg.member}" with signature "{msg.signature}" on '
                           f'{LOG_IFACE} (Log takes ysa{{ss}})', sender="org.bootbus")
            return
        if not self._take_budget(peer):
            bus.send_error(peer, msg, "org.freedesktop.DBus.Error.LimitsExceeded",
                           f"more than {CLIENT_LOG_RATE:.0f} records per second",
                           sender="org.bootbus")
            return
        priority, text, fields = msg.args()
        extra: Mapping[str, str] = {"BOOTBUS_CLIENT_PID": str(peer.pid),
                                    "BOOTBUS_CLIENT_UID": str(peer.uid),
                                    "BOOTBUS_CLIENT_UNIQUE_NAME": peer.unique_name,
                                    "_COMM": peer.comm}
        try:
            self.steplog.log(priority, text, {**fields, **extra})
        except StepLogError as exc:
            bus.send_error(peer, msg, "org.freedesktop.DBus.Error.InvalidArgs", str(exc),
                           sender="org.bootbus")
            return
        bus.reply(peer, msg, sender="org.bootbus")

    def _take_budget(self, peer: Peer) -> bool:
        now = time.monotonic()
        tokens, last = self._client_budget.get(peer.id, (float(CLIENT_LOG_BURST), now))
        tokens = min(float(CLIENT_LOG_BURST), tokens + (now - last) * CLIENT_LOG_RATE)
        if tokens < 1.0:
            self._client_budget[peer.id] = (tokens, now)
            return False
        self._client_budget[peer.id] = (tokens - 1.0, now)
        return True


__all__ = ["LOG_IFACE", "Telemetry"]
