"""Steady load on a bus: pipelined calls to an echo service and broadcast signals.

This module owns the load the re-exec tests run under, as jeepney peers in
threads (jeepney, not bootbus's client: the bus must not be checked against
its own wire code). Every payload carries (peer, sequence number), and every
receiver checks its sequence as it goes, so a lost, duplicated or reordered
message is caught at the message where it happens, not only in a final count:

  * the echo service owns ``org.bootbus.test.Echo`` and answers ``Echo(su)``
    with its arguments; it checks each caller's calls arrive in order;
  * a caller keeps ``CALL_WINDOW`` calls outstanding (so calls, replies and
    half-written frames are in flight when the bus re-executes) and checks the
    replies come back in order, each once, none an error;
  * an emitter broadcasts ``Tick(su)``, at most ``SIGNAL_WINDOW`` ahead of
    the slowest subscriber, and each subscriber checks each emitter's ticks
    arrive in order, each once.

It must never block without a timeout: every receive gives up after
``RECEIVE_TIMEOUT_S`` and records that as a failure.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from jeepney import (
    DBusAddress,
    HeaderFields,
    Message,
    MessageType,
    new_method_call,
    new_method_return,
    new_signal,
)
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, open_dbus_connection

ECHO_NAME = "org.bootbus.test.Echo"
ECHO = DBusAddress("/org/bootbus/test/Echo", bus_name=ECHO_NAME, interface=ECHO_NAME)
LOAD_IFACE = "org.bootbus.test.Load"
LOAD_PATH = "/org/bootbus/test/Load"
CALL_WINDOW = 4  # calls a caller keeps outstanding
SIGNAL_WINDOW = 64  # ticks an emitter may run ahead of the slowest subscriber
RECEIVE_TIMEOUT_S = 20.0  # longer than any re-exec may take under this load
POLL_S = 0.05  # how long an idle service receive blocks before checking for stop


@dataclass
class Tally:
    """What every peer did and saw; threads append failures instead of raising."""

    failures: list[str] = field(default_factory=list)
    calls_answered: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    calls_served: int = 0
    ticks_sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    ticks_seen: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    lock: threading.Condition = field(default_factory=threading.Condition)

    def fail(self, text: str) -> None:
        with self.lock:
            self.failures.append(text)
            self.lock.notify_all()


def _connect(address: str) -> DBusConnection:
    return open_dbus_connection(bus=address, auth_timeout=RECEIVE_TIMEOUT_S)


def _body(msg: Message) -> tuple[object, ...]:
    return tuple(msg.body)


class Load:
    """Start with :meth:`start`, let it run, :meth:`finish` it, then read the tally."""

    def __init__(self, address: str, callers: int = 3, emitters: int = 2,
                 subscribers: int = 2) -> None:
        self.address = address
        self.tally = Tally()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.conns: list[DBusConnection] = []
        self.names: dict[str, str] = {}  # role -> unique name
        self._service = _connect(address)
        self._own_echo_name()
        self._callers = [_connect(address) for _ in range(callers)]
        self._emitters = [_connect(address) for _ in range(emitters)]
        self._subscribers = [_connect(address) for _ in range(subscribers)]
        for conn in self._subscribers:
            rule = f"type='signal',interface='{LOAD_IFACE}'"
            conn.send_and_get_reply(message_bus.AddMatch(rule), timeout=RECEIVE_TIMEOUT_S)
        for role, conns in (("service", [self._service]), ("caller", self._callers),
                            ("emitter", self._emitters), ("subscriber", self._subscribers)):
            for index, conn in enumerate(conns):
                self.names[f"{role}{index}"] = conn.unique_name
                self.conns.append(conn)

    def _own_echo_name(self) -> None:
        reply = self._service.send_and_get_reply(message_bus.RequestName(ECHO_NAME, 4),
                                                 timeout=RECEIVE_TIMEOUT_S)
        if reply.body != (1,):
            raise RuntimeError(f"RequestName({ECHO_NAME}) answered {reply.body}")

    def start(self) -> None:
        targets = [(self._serve, self._service)]
        targets += [(self._call, c) for c in self._callers]
        targets += [(self._emit, c) for c in self._emitters]
        targets += [(self._subscribe, c) for c in self._subscribers]
        for target, conn in targets:
            thread = threading.Thread(target=self._guard, args=(target, conn), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _guard(self, target: object, conn: DBusConnection) -> None:
        try:
            target(conn)  # type: ignore[operator]
        except Exception as exc:  # noqa: BLE001 - recorded and asserted by the test
            self.tally.fail(f"{conn.unique_name}: {type(exc).__name__}: {exc}")

    def progress(self) -> tuple[int, int]:
        """Fewest calls answered for any caller, fewest ticks seen by any subscriber."""
        with self.tally.lock:
            calls = min((self.tally.calls_answered[c.unique_name] for c in self._callers),
                        default=0)
            ticks = min((self.tally.ticks_seen[(s.unique_name, e.unique_name)]
                         for s in self._subscribers for e in self._emitters), default=0)
        return calls, ticks

    def wait_progress(self, calls: int, ticks: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            done_calls, done_ticks = self.progress()
            if (done_calls >= calls and done_ticks >= ticks) or self.tally.failures:
                return
            if time.monotonic() > deadline:
                self.tally.fail(f"no progress: {done_calls}/{calls} calls, "
                                f"{done_ticks}/{ticks} ticks after {timeout}s")
                return
            time.sleep(0.01)

    def finish(self, timeout: float = RECEIVE_TIMEOUT_S) -> None:
        self.stop.set()
        with self.tally.lock:
            self.tally.lock.notify_all()
        for thread in self.threads:
            thread.join(timeout)
            if thread.is_alive():
                self.tally.fail(f"{thread.name} did not finish in {timeout}s")

    def close(self) -> None:
        for conn in self.conns:
            conn.close()

    # -- the peers -----------------------------------------------------------
    def _serve(self, conn: DBusConnection) -> None:
        last: dict[str, int] = {}
        while not self.stop.is_set() or self._callers_running():
            try:
                msg = conn.receive(timeout=POLL_S)
            except TimeoutError:
                continue
            hdr = msg.header
            if hdr.message_type is not MessageType.method_call:
                continue  # NameAcquired and the like
            caller, seq = _body(msg)
            sender = hdr.fields[HeaderFields.sender]
            if sender != caller:
                self.tally.fail(f"echo: call from {sender} claims to be from {caller}")
            if seq != last.get(str(caller), 0) + 1:
                self.tally.fail(f"echo: {caller} call {seq} after {last.get(str(caller), 0)}")
            last[str(caller)] = int(seq)  # type: ignore[call-overload]
            conn.send(new_method_return(msg, "su", (caller, seq)))
            with self.tally.lock:
                self.tally.calls_served += 1

    def _callers_running(self) -> bool:
        return any(t.is_alive() for t in self.threads[1:1 + len(self._callers)])

    def _call(self, conn: DBusConnection) -> None:
        me = conn.unique_name
        outstanding: dict[int, int] = {}  # serial -> seq, in send order
        seq = 0
        while not self.stop.is_set() or outstanding:
            while not self.stop.is_set() and len(outstanding) < CALL_WINDOW:
                seq += 1
                serial = next(conn.outgoing_serial)
                conn.send(new_method_call(ECHO, "Echo", "su", (me, seq)), serial=serial)
                outstanding[serial] = seq
            msg = conn.receive(timeout=RECEIVE_TIMEOUT_S)
            hdr = msg.header
            if hdr.message_type is MessageType.signal:
                continue  # NameAcquired
            expected_serial, expected_seq = next(iter(outstanding.items()))
            reply_to = hdr.fields.get(HeaderFields.reply_serial)
            if hdr.message_type is MessageType.error:
                self.tally.fail(f"{me}: call {reply_to} got {hdr.fields[HeaderFields.error_name]}"
                                f" {msg.body}")
            elif reply_to != expected_serial or _body(msg) != (me, expected_seq):
                self.tally.fail(f"{me}: expected reply to {expected_serial} ({expected_seq}), "
                                f"got reply to {reply_to} {msg.body}")
            outstanding.pop(reply_to, None)  # type: ignore[arg-type]
            with self.tally.lock:
                self.tally.calls_answered[me] += 1

    def _emit(self, conn: DBusConnection) -> None:
        me = conn.unique_name
        seq = 0
        tally = self.tally
        while not self.stop.is_set():
            with tally.lock:
                while not self.stop.is_set() and not tally.failures and seq - min(
                        (tally.ticks_seen[(s.unique_name, me)] for s in self._subscribers),
                        default=seq) >= SIGNAL_WINDOW:
                    tally.lock.wait(RECEIVE_TIMEOUT_S)
                if self.stop.is_set() or tally.failures:
                    break
            seq += 1
            conn.send(new_signal(DBusAddress(LOAD_PATH, interface=LOAD_IFACE), "Tick", "su",
                                 (me, seq)))
            with tally.lock:
                tally.ticks_sent[me] = seq

    def _subscribe(self, conn: DBusConnection) -> None:
        me = conn.unique_name
        emitters = {c.unique_name for c in self._emitters}
        tally = self.tally
        idle_since = time.monotonic()
        while True:
            with tally.lock:
                if self.stop.is_set() and not any(
                        t.is_alive() for t in self._emitter_threads()) and all(
                        tally.ticks_seen[(me, e)] >= tally.ticks_sent[e] for e in emitters):
                    return
            try:
                msg = conn.receive(timeout=POLL_S)
            except TimeoutError:
                if time.monotonic() - idle_since > RECEIVE_TIMEOUT_S:
                    tally.fail(f"{me}: no tick for {RECEIVE_TIMEOUT_S}s")
                    return
                continue
            idle_since = time.monotonic()
            hdr = msg.header
            if hdr.message_type is not MessageType.signal or hdr.fields.get(
                    HeaderFields.interface) != LOAD_IFACE:
                continue
            emitter, seq = _body(msg)
            sender = hdr.fields[HeaderFields.sender]
            if sender != emitter or emitter not in emitters:
                tally.fail(f"{me}: tick from {sender} claims {emitter}")
                continue
            with tally.lock:
                seen = tally.ticks_seen[(me, str(emitter))]
                if seq != seen + 1:
                    tally.failures.append(f"{me}: tick {seq} from {emitter} after {seen}")
                tally.ticks_seen[(me, str(emitter))] = int(seq)  # type: ignore[call-overload]
                tally.lock.notify_all()

    def _emitter_threads(self) -> list[threading.Thread]:
        start = 1 + len(self._callers)
        return self.threads[start:start + len(self._emitters)]
