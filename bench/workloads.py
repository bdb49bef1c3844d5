"""The benchmark workloads: what each one runs and which numbers it yields.

Owns: the workload table (name, how often it repeats, how it is shown), the
measured window around each loadgen session (broker CPU from /proc before
"go" and after the result), and turning raw counts into per-operation
numbers. It must never start brokers itself (targets do) and never judge
the numbers against targets: the table reports, people decide.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import brokers
import procfs
from loadgen import Session

Metrics = dict[str, Any]

PAYLOAD_SMALL = 64  # bytes of message body in tput-64
PAYLOAD_LARGE = 4096  # bytes of message body in tput-4k
TPUT_CALLERS = 4
TPUT_INFLIGHT = 32
FANOUT_MATCHING = 8
FANOUT_NOT_MATCHING = 8
FANOUT_WINDOW = 256  # signals in flight from the emitter: enough that the broker never idles
CONNECT_CONCURRENCY = 8
REEXEC_TIMEOUT_S = 30.0
IDLE_SETTLE_S = 1.0  # let a fresh broker finish its startup work (bootbus: the device
# monitor loads 50 ms after start and enumerates in a thread) before reading RSS or
# measuring a load window


@dataclass(frozen=True)
class Config:
    seconds: float  # measured window of each load run
    rounds: int  # repetitions of each load and memory workload per broker
    startups: int  # fresh starts per broker for the startup workload
    clients: int  # clients in the memory and re-exec workloads
    broker_cpus: set[int] | None  # where brokers run (None: no pinning)
    client_cpus: set[int] | None  # where the load generator runs in load workloads


class Target:
    """One broker in this run: a shared instance for load, fresh ones on demand."""

    def __init__(self, broker: brokers.Broker, workroot: Path, cfg: Config) -> None:
        self.broker = broker
        self.name = broker.name
        self.workroot = workroot
        self.cfg = cfg
        self._shared: brokers.Running | None = None
        self._count = 0

    def _start(self) -> brokers.Running:
        self._count += 1
        workdir = self.workroot / f"{self.name}-{self._count}"
        workdir.mkdir()
        running = self.broker.start(workdir)
        if self.cfg.broker_cpus:
            procfs.pin(running.pid, self.cfg.broker_cpus)
        return running

    def shared(self) -> brokers.Running:
        """The long-lived instance; one that died (its sample already failed) is replaced."""
        if self._shared is not None:
            try:
                self._shared.check_alive()
            except brokers.BrokerError as exc:
                print(f"{self.name} died, starting a new one: {exc}", file=sys.stderr)
                self._shared.stop()
                self._shared = None
        if self._shared is None:
            self._shared = self._start()
            # steady state only: startup work (bootbus enumerates devices in a thread,
            # ~0.1 s of CPU) belongs to the startup workload, not to the first window
            time.sleep(IDLE_SETTLE_S)
        return self._shared

    @contextlib.contextmanager
    def fresh(self) -> Iterator[brokers.Running]:
        running = self._start()
        try:
            yield running
        finally:
            running.stop()

    def stop(self) -> None:
        if self._shared is not None:
            self._shared.stop()
            self._shared = None


@dataclass
class Window:
    """A loadgen result with the broker's CPU time and wall time around it."""

    result: dict[str, Any]
    broker_cpu_s: float
    wall_s: float
    broker_wait_s: float  # runnable but not running: the machine was busy elsewhere
    client_wait_s: float  # the same for the load generator

    @property
    def busy(self) -> float:
        return self.broker_cpu_s / self.wall_s

    @property
    def client_busy(self) -> float:
        return float(self.result["client_cpu_s"]) / float(self.result["elapsed_s"])


def measured(running: brokers.Running, mode: str, options: dict[str, Any],
             cpus: set[int] | None, window_s: float) -> Window:
    with Session(mode, running.address, options) as session:
        session.ready(cpus)
        running.check_alive()
        wait0, cwait0 = procfs.wait_seconds(running.pid), procfs.wait_seconds(session.pid)
        cpu0, t0 = procfs.cpu_seconds(running.pid), time.monotonic()
        session.go()
        result = session.result(window_s)
        wall, cpu = time.monotonic() - t0, procfs.cpu_seconds(running.pid) - cpu0
        wait = procfs.wait_seconds(running.pid) - wait0
        cwait = procfs.wait_seconds(session.pid) - cwait0
    running.check_alive()
    return Window(result, cpu, wall, wait, cwait)


def _load(window: Window, ops: float, rate_key: str, cpu_key: str) -> Metrics:
    if ops <= 0:
        raise RuntimeError("the load generator completed no operations")
    return {
        rate_key: ops / float(window.result["elapsed_s"]),
        cpu_key: window.broker_cpu_s / ops * 1e6,
        "busy": window.busy,
        "waiting": window.broker_wait_s / window.wall_s,
        "client_waiting": window.client_wait_s / window.wall_s,
        "client_busy": window.client_busy,
        "ops": ops,
        "broker_cpu_s": window.broker_cpu_s,
    }


def rtt(unix_fd: bool) -> Callable[[Target], Metrics]:
    def run_rtt(target: Target) -> Metrics:
        cfg = target.cfg
        # Caller and echo service share the broker's CPU: the round trip then
        # costs what the broker's own work and wakeups cost, not cross-CPU IPIs.
        options = {"seconds": cfg.seconds, "payload": PAYLOAD_SMALL, "unixfd": int(unix_fd)}
        w = measured(target.shared(), "rtt", options, cfg.broker_cpus, cfg.seconds)
        metrics = _load(w, float(w.result["calls"]), "calls_per_s", "cpu_us_per_call")
        metrics.update(p50_us=w.result["p50_us"], p99_us=w.result["p99_us"])
        return metrics
    return run_rtt


def tput(payload: int) -> Callable[[Target], Metrics]:
    def run_tput(target: Target) -> Metrics:
        cfg = target.cfg
        options = {"seconds": cfg.seconds, "payload": payload, "callers": TPUT_CALLERS,
                   "inflight": TPUT_INFLIGHT}
        w = measured(target.shared(), "tput", options, cfg.client_cpus, cfg.seconds)
        return _load(w, float(w.result["messages"]), "msgs_per_s", "cpu_us_per_msg")

    return run_tput


def run_fanout(target: Target) -> Metrics:
    cfg = target.cfg
    options = {"seconds": cfg.seconds, "payload": PAYLOAD_SMALL, "subs_yes": FANOUT_MATCHING,
               "subs_no": FANOUT_NOT_MATCHING, "window": FANOUT_WINDOW}
    w = measured(target.shared(), "fanout", options, cfg.client_cpus, cfg.seconds)
    return _load(w, float(w.result["deliveries"]), "deliveries_per_s", "cpu_us_per_delivery")


def run_connect(target: Target) -> Metrics:
    cfg = target.cfg
    options = {"seconds": cfg.seconds, "concurrency": CONNECT_CONCURRENCY}
    w = measured(target.shared(), "connect", options, cfg.client_cpus, cfg.seconds)
    return _load(w, float(w.result["connections"]), "conns_per_s", "cpu_us_per_conn")


def run_startup(target: Target) -> Metrics:
    with target.fresh() as running:
        return {"startup_ms": running.startup_s * 1e3,
                "cpu_ms": procfs.cpu_seconds_fine(running.pid) * 1e3}


def run_memory(target: Target) -> Metrics:
    cfg = target.cfg
    with target.fresh() as running:
        time.sleep(IDLE_SETTLE_S)
        idle = procfs.rss_kib(running.pid)
        with Session("clients", running.address, {"count": cfg.clients}) as session:
            session.ready(cfg.client_cpus)
            loaded = procfs.rss_kib(running.pid)
            session.go()
            session.result(cfg.seconds)
        running.check_alive()
    return {"rss_idle_kib": idle, "rss_clients_kib": loaded,
            "kib_per_client": (loaded - idle) / cfg.clients, "clients": cfg.clients}


def run_reexec(target: Target) -> Metrics:
    cfg = target.cfg
    options = {"count": cfg.clients, "seconds": REEXEC_TIMEOUT_S, "payload": PAYLOAD_SMALL}
    with target.fresh() as running:
        pid = running.pid
        with Session("reexec", running.address, options) as session:
            session.ready(cfg.client_cpus)
            session.go()
            result = session.result(REEXEC_TIMEOUT_S)
        if "skipped" in result:
            return {"skipped": str(result["skipped"])}
        running.check_alive()
        if running.pid != pid:
            raise RuntimeError("the broker's pid changed across re-exec")
    if result["clients_alive"] != result["clients"]:
        raise RuntimeError(f"only {result['clients_alive']} of {result['clients']} clients "
                           "survived the re-exec")
    return {"pause_ms": result["pause_ms"], "reply_ms": result["reply_ms"],
            "baseline_max_ms": result["baseline_max_ms"], "clients": result["clients"]}


def only_bootbus(name: str) -> str | None:
    return None if name == "bootbus" else f"{name} has no org.bootbus.Supervisor1.Reexec"


@dataclass(frozen=True)
class Workload:
    name: str  # key in the JSON
    group: str  # what --workloads selects
    title: str  # first column of the table
    run: Callable[[Target], Metrics]
    repeat: str  # "rounds", "startups" or "once": how many samples per broker
    headline: tuple[str, str]  # metric key, unit shown after it
    cpu: tuple[str, str] | None  # broker CPU per operation: metric key, unit
    ratio: str | None  # metric compared with dbus-daemon's
    notes: Callable[[Metrics], str]
    applies: Callable[[str], str | None] = lambda name: None
    check_busy: bool = False  # the broker should be the bottleneck


def _rtt_notes(m: Metrics) -> str:
    return f"p50 {m['p50_us']:.0f} us, p99 {m['p99_us']:.0f} us"


WAIT_NOTE = 0.05  # run-queue wait worth mentioning, as a fraction of the window


def _load_notes(m: Metrics) -> str:
    notes = f"loadgen {m['client_busy']:.0%} busy"
    waits = [f"{who} {m[key]:.0%}" for who, key in (("broker", "waiting"),
                                                     ("loadgen", "client_waiting"))
             if m[key] >= WAIT_NOTE]
    if waits:
        notes += "; waited for a CPU: " + ", ".join(waits)
    return notes


def _startup_notes(m: Metrics) -> str:
    return f"broker on CPU {m['cpu_ms']:.1f} ms by then"


def _memory_notes(m: Metrics) -> str:
    return (f"idle {m['rss_idle_kib']:,.0f} KiB, {m['clients']:.0f} clients "
            f"{m['rss_clients_kib']:,.0f} KiB")


def _reexec_notes(m: Metrics) -> str:
    return (f"reply {m['reply_ms']:.0f} ms, {m['clients']:.0f} clients kept, "
            f"baseline max {m['baseline_max_ms']:.1f} ms")


WORKLOADS = [
    Workload("rtt", "rtt", "rtt", rtt(unix_fd=False), "rounds", ("calls_per_s", "calls/s"),
             ("cpu_us_per_call", "us/call"), "cpu_us_per_call", _rtt_notes),
    # the same with fd passing negotiated, as sd-bus, GLib and libdbus clients do
    Workload("rtt-fd", "rtt", "rtt, fds", rtt(unix_fd=True), "rounds",
             ("calls_per_s", "calls/s"), ("cpu_us_per_call", "us/call"), "cpu_us_per_call",
             _rtt_notes),
    Workload("tput-64", "tput", "tput 64 B", tput(PAYLOAD_SMALL), "rounds",
             ("msgs_per_s", "msg/s"), ("cpu_us_per_msg", "us/msg"), "cpu_us_per_msg",
             _load_notes, check_busy=True),
    Workload("tput-4k", "tput", "tput 4 KiB", tput(PAYLOAD_LARGE), "rounds",
             ("msgs_per_s", "msg/s"), ("cpu_us_per_msg", "us/msg"), "cpu_us_per_msg",
             _load_notes, check_busy=True),
    Workload("fanout", "fanout", "fanout 8+8", run_fanout, "rounds",
             ("deliveries_per_s", "deliv/s"), ("cpu_us_per_delivery", "us/deliv"),
             "cpu_us_per_delivery", _load_notes, check_busy=True),
    Workload("connect", "connect", "connect", run_connect, "rounds",
             ("conns_per_s", "conn/s"), ("cpu_us_per_conn", "us/conn"), "cpu_us_per_conn",
             _load_notes, check_busy=True),
    Workload("startup", "startup", "startup", run_startup, "startups",
             ("startup_ms", "ms to Hello"), None, "startup_ms", _startup_notes),
    Workload("memory", "memory", "memory", run_memory, "rounds",
             ("kib_per_client", "KiB/client"), None, "kib_per_client", _memory_notes),
    Workload("reexec", "reexec", "re-exec pause", run_reexec, "once",
             ("pause_ms", "ms pause"), None, None, _reexec_notes, applies=only_bootbus),
]

GROUPS = sorted({w.group for w in WORKLOADS}, key=[w.group for w in WORKLOADS].index)
