"""The supervisor: bootbus's own service on the bus, and its life across roots.

Owns: the name ``org.bootbus`` (answered by the bus itself) with the
interface ``org.bootbus.Supervisor1`` at /org/bootbus/Supervisor1, the boot
phase (initramfs, root, shutdown), the generation (how many images served this
bus) and the history of pivots, and the orchestration of a re-exec:
preflight in the background while the bus keeps serving, then at the end of a
loop iteration (every read message already routed) snapshot and exec. The
caller of Reexec/Pivot is answered by the new image once it serves.

In the initramfs it follows PID 1: once PID 1's root changed (switch_root),
it pivots into that root (the one prepared with Pivot(s, true), else PID 1's
own), before the initramfs it runs from is gone. It watches through an fd of
/proc opened at start, as switch_root moves /proc away from the old root.
One re-exec at a time: a caller asking for the one in progress joins it, any
other is refused. Never blocks the loop: the preflight's output is read as
it comes, and a preflight that hangs is killed after PREFLIGHT_TIMEOUT.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from ..bus.peer import Peer
from ..bus.router import Bus
from ..state.snapshot import ComponentRecord, ListenerRecord, encode
from ..wire import message as m
from . import reexec
from .listen import Listener
from .server import Server

TYPE_CHECKING = False  # typing's, without importing typing (see bootbus.plain)
if TYPE_CHECKING:
    from typing import Any, Protocol

SERVICE = "org.bootbus"
PATH = "/org/bootbus/Supervisor1"
IFACE = "org.bootbus.Supervisor1"
ERR_FAILED = "org.bootbus.Error.Failed"
ERR_ACCESS = "org.freedesktop.DBus.Error.AccessDenied"
PREFLIGHT_TIMEOUT = 60.0  # seconds; a cold start of the target under load takes ~1 s
PREFLIGHT_OUTPUT_MAX = 4096  # bytes of the preflight's output kept for the log
ROOT_CHECK_INTERVAL = 0.5  # seconds between checks of PID 1's root while in the initramfs
LIST_MATCHES_MAX = 65536  # match rules in one ListMatches reply; the rest are dropped
SHUTDOWN_ROOT = "/run/initramfs"
# "direct": re-exec without a twin serving meanwhile (clients wait for the new image's
# start); a way out should a twin ever misbehave somewhere
REEXEC_MODE_ENV = "BOOTBUS_REEXEC"

PHASE_INITRAMFS = "initramfs"
PHASE_ROOT = "root"
PHASE_SHUTDOWN = "shutdown"

Logger = Callable[..., None]


def _silent(priority: int, message: str, **fields: Any) -> None:
    pass


if TYPE_CHECKING:  # a type only: typing's Protocol is not imported at run time
    class Component(Protocol):
        """An io component whose state crosses a re-exec (bus activation, the device
        monitor).

        ``save`` must not change the component: if the exec fails, it keeps serving.
        ``restore`` takes the records the previous image saved, fds already inherited.
        """

        def save(self) -> list[ComponentRecord]: ...

        def restore(self, records: list[ComponentRecord]) -> None: ...


def detect_phase() -> str:
    return PHASE_INITRAMFS if os.path.exists("/etc/initrd-release") else PHASE_ROOT


def _open_proc() -> int | None:
    """/proc as an fd: switch_root moves the mount into the new root, away from us."""
    try:
        return os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None


def _pid1_root(proc_fd: int | None) -> tuple[int, int] | None:
    try:
        st = os.stat("1/root/", dir_fd=proc_fd) if proc_fd is not None else os.stat(
            "/proc/1/root/")
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class Supervisor:
    def __init__(self, bus: Bus, server: Server, listeners: list[Listener],
                 daemon_args: list[str], log: Logger = _silent, phase: str | None = None,
                 generation: int = 1, started_at: float | None = None,
                 pivots: list[dict[str, Any]] | None = None,
                 answer_after_exec: list[tuple[int, int]] | None = None) -> None:
        self.bus = bus
        self.server = server
        self.listeners = listeners
        self.daemon_args = daemon_args
        self.log = log
        self.phase = detect_phase() if phase is None else phase
        self.generation = generation
        self.started_at = time.time() if started_at is None else started_at
        self.pivots: list[dict[str, Any]] = [] if pivots is None else pivots
        # (peer id, serial)
        self.answer_after_exec: list[tuple[int, int]] = (
            [] if answer_after_exec is None else answer_after_exec)
        self.prepared_root: int | None = None
        self.prepared_path = ""
        self.exec_target: reexec.ExecPlan | None = None
        self.exec_phase = ""
        self.preflight: reexec.Preflight | None = None
        self.preflight_output = b""
        self.pivot_path = ""
        self.ready = False  # preflight passed: exec in settle(), after this iteration's output
        self.handover = False  # the preflight said the target takes a twin handover
        # set in the twin while it serves for the new image
        self.twin: reexec.Twin | None = None
        self._subreaper = False
        self._phase_before_exec = ""
        self._waiting: list[tuple[int, int]] = []
        self._preflight_deadline = 0.0
        self._pid1_root: tuple[int, int] | None = None
        self._proc_fd: int | None = None
        self._next_root_check = 0.0
        # a re-exec was asked for, its preflight is about to start (the daemon loads what
        # it deferred: that image's state must cross the re-exec)
        self.on_reexec_requested: list[Callable[[], None]] = []
        self.on_before_exec: list[Callable[[], None]] = []
        # the exec failed after on_before_exec ran: undo what they did (e.g. READY=1 again)
        self.on_exec_failed: list[Callable[[str], None]] = []
        # just before this image execs, or a twin exits after the handover: write out
        # what is buffered (the echo of the log on stderr)
        self.before_leaving: list[Callable[[], None]] = []
        self.components: dict[str, Component] = {}
        # records of the previous image for components not attached (yet): by component name
        self._unclaimed: dict[str, list[ComponentRecord]] = {}

    def install(self) -> None:
        self.bus.services[SERVICE] = self.handle
        self.server.add_timer(self._next_check, self.tick)
        if self.phase == PHASE_INITRAMFS:
            self._proc_fd = _open_proc()
            self._pid1_root = _pid1_root(self._proc_fd)

    def state(self) -> dict[str, Any]:
        return {"phase": self.phase, "generation": self.generation,
                "started_at": self.started_at, "pivots": self.pivots,
                "answer_after_exec": [list(x) for x in self.answer_after_exec],
                "pid1_root": list(self._pid1_root) if self._pid1_root else None,
                "prepared_path": self.prepared_path if self.prepared_root is not None else ""}

    def restore(self, state: dict[str, Any]) -> None:
        self.phase = str(state.get("phase", self.phase))
        self.generation = int(state.get("generation", 0)) + 1
        self.started_at = float(state.get("started_at", self.started_at))
        self.pivots = list(state.get("pivots", []))
        prepared = state.get("fds", {}).get("prepared_root")
        if prepared is not None:  # a pivot prepared before a plain re-exec
            os.set_inheritable(prepared, False)
            self.prepared_root, self.prepared_path = prepared, str(state["prepared_path"])
        # PID 1's root as the previous image first saw it: had PID 1 switched
        # root while this image started, a fresh look would miss the change.
        pid1_root = state.get("pid1_root")
        if self.phase != PHASE_INITRAMFS:
            self._pid1_root = None
            if self._proc_fd is not None:
                os.close(self._proc_fd)
                self._proc_fd = None
        else:
            if self._proc_fd is None:
                self._proc_fd = _open_proc()
            if pid1_root:
                self._pid1_root = (int(pid1_root[0]), int(pid1_root[1]))
            elif self._pid1_root is None:
                self._pid1_root = _pid1_root(self._proc_fd)
        for record in state.get("components", []):
            self._unclaimed.setdefault(record.component, []).append(record)
        if self._unclaimed:
            self.server.soon.append(self.tick)  # once the loop runs, after every attach
        for peer_id, serial in state.get("answer_after_exec", []):
            peer = self.bus.peers.get(int(peer_id))
            if peer is not None:
                self._reply(peer, int(serial))

    def attach(self, name: str, component: Component | None) -> None:
        """Carry ``component``'s state across re-execs; give it what the last image saved.

        Attach before the loop runs: records nobody attached for by the first
        tick are logged and their fds closed.
        """
        if component is None:
            return
        self.components[name] = component
        records = self._unclaimed.pop(name, [])
        if records:
            component.restore(records)

    def _drop_unclaimed(self) -> None:
        for name, records in self._unclaimed.items():
            self.log(4, f"{len(records)} records of {name} from the previous image dropped: "
                     "nothing serves it now", COMPONENT=name)
            for record in records:
                for fd in record.fds.values():
                    try:
                        os.close(fd)
                    except OSError:
                        pass
        self._unclaimed = {}

    # -- the bus interface ------------------------------------------------------
    def handle(self, bus: Bus, peer: Peer, msg: m.Message) -> None:
        method = _METHODS.get((msg.interface or IFACE, msg.member or ""))
        if method is None:
            bus.send_error(peer, msg, "org.freedesktop.DBus.Error.UnknownMethod",
                           f'No method "{msg.member}" on interface "{msg.interface}"',
                           sender=SERVICE)
            return
        signature, handler, privileged = method
        if msg.signature != signature:
            bus.send_error(peer, msg, "org.freedesktop.DBus.Error.InvalidArgs",
                           f"{msg.member} takes ({signature}), got ({msg.signature})",
                           sender=SERVICE)
            return
        if privileged and peer.uid not in (0, bus.uid):
            bus.send_error(peer, msg, ERR_ACCESS, f"{msg.member} is only allowed for root",
                           sender=SERVICE)
            return
        try:
            handler(self, peer, msg, msg.args())
        except SupervisorError as exc:
            bus.send_error(peer, msg, ERR_FAILED, str(exc), sender=SERVICE)

    def _reexec(self, peer: Peer, msg: m.Message, args: list[Any]) -> None:
        if self._in_progress():
            self._join(peer, msg, "")
            return
        self._start(peer, msg, None, self.phase)

    def _left_initramfs(self) -> bool:
        return self.phase != PHASE_INITRAMFS and any(
            p.get("from_phase") == PHASE_INITRAMFS for p in self.pivots)

    def _in_progress(self) -> bool:
        return self.preflight is not None or self.exec_target is not None

    def _join(self, peer: Peer, msg: m.Message, newroot: str) -> None:
        """One re-exec at a time: a caller asking for the same one is answered by it."""
        if newroot != self.pivot_path:
            running = f"a pivot into {self.pivot_path}" if self.pivot_path else "a re-exec"
            raise SupervisorError(f"{running} is in progress; try again when it is done")
        self._waiting.append((peer.id, msg.serial))

    def _pivot(self, peer: Peer, msg: m.Message, args: list[Any]) -> None:
        """Pivot(s new_root, b prepare_only); an empty new_root completes the prepared one."""
        newroot, prepare_only = args
        if prepare_only:
            self.prepare_pivot(newroot)
            self.bus.reply(peer, msg, sender=SERVICE)
            return
        if self.prepared_root is None and self._left_initramfs() and newroot in (
                "", self.pivots[-1].get("root")):
            self.bus.reply(peer, msg, sender=SERVICE)  # already done (the bus followed PID 1)
            return
        if not newroot:
            if self.prepared_root is None:
                raise SupervisorError("no pivot was prepared (Pivot(new_root, true) first)")
            newroot = self.prepared_path
        if self._in_progress():
            self._join(peer, msg, newroot)
            return
        if newroot == self.prepared_path and self.prepared_root is not None:
            fd = self.prepared_root
        else:
            fd = _open_root(newroot)
        phase = PHASE_SHUTDOWN if os.path.normpath(newroot) == SHUTDOWN_ROOT else PHASE_ROOT
        self._start(peer, msg, fd, phase, newroot)

    def _status(self, peer: Peer, msg: m.Message, args: list[Any]) -> None:
        bus = self.bus
        status = {
            "Phase": ("s", self.phase), "PID": ("u", os.getpid()),
            "Generation": ("u", self.generation), "StartedAt": ("d", self.started_at),
            "Pivots": ("u", len(self.pivots)), "Connections": ("u", len(bus.peers)),
            "Names": ("u", len(bus.registry.queues)), "BusId": ("s", bus.bus_id),
            "PendingReplies": ("u", len(bus.pending)),
            "RuntimeDir": ("s", self.runtime_dir()),
        }
        bus.reply(peer, msg, "a{sv}", (status,), sender=SERVICE)

    def runtime_dir(self) -> str:
        """The daemon's runtime directory, as its re-exec command line names it."""
        args = self.daemon_args
        for i, arg in enumerate(args):
            if arg == "--runtime-dir" and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith("--runtime-dir="):
                return arg.partition("=")[2]
        return ""

    def _list_connections(self, peer: Peer, msg: m.Message, args: list[Any]) -> None:
        """(unique name, pid, uid, primary names, match rules, queued bytes) per peer."""
        bus = self.bus
        rows = [(p.unique_name, p.pid or 0, p.uid, sorted(bus.registry.primary_names_of(p.id)),
                 len(p.matches), p.out_bytes)
                for p in sorted(bus.peers.values(), key=lambda p: p.id) if p.unique_name]
        bus.reply(peer, msg, "a(suuasuu)", (rows,), sender=SERVICE)

    def _list_matches(self, peer: Peer, msg: m.Message, args: list[Any]) -> None:
        """(unique name, rule text) per AddMatch rule, in peer id and then AddMatch order."""
        rows: list[tuple[str, str]] = []
        for p in sorted(self.bus.peers.values(), key=lambda p: p.id):
            if not p.unique_name:
                continue
            rows.extend((p.unique_name, rule.text)
                        for rule in p.matches[:LIST_MATCHES_MAX - len(rows)])
            if len(rows) >= LIST_MATCHES_MAX:
                break
        self.bus.reply(peer, msg, "a(ss)", (rows,), sender=SERVICE)

    def _introspect(self, peer: Peer, msg: m.Message, args: list[Any]) -> None:
        self.bus.reply(peer, msg, "s", (_INTROSPECTION,), sender=SERVICE)

    def _ping(self, peer: Peer, msg: m.Message, args: list[Any]) -> None:
        self.bus.reply(peer, msg, sender=SERVICE)

    # -- re-exec orchestration --------------------------------------------------
    def prepare_pivot(self, newroot: str) -> None:
        if self._in_progress():
            raise SupervisorError("a re-exec is in progress; prepare the pivot when it is done")
        fd = _open_root(newroot)
        if self.prepared_root is not None:
            os.close(self.prepared_root)
        self.prepared_root, self.prepared_path = fd, newroot
        self.log(6, f"pivot into {newroot} prepared", NEWROOT=newroot)

    def _start(self, peer: Peer | None, msg: m.Message | None, root_fd: int | None,
               phase: str, newroot: str = "") -> None:
        if peer is not None and msg is not None:
            self._waiting.append((peer.id, msg.serial))
        listeners = [(lst.sock.fileno(), lst.address, lst.path) for lst in self.listeners]
        try:
            target = reexec.plan(-1, self.daemon_args, listeners, root_fd,
                                 initramfs=self.phase == PHASE_INITRAMFS)
        except ImportError as exc:  # json deferred, and our files deleted since the start
            self._fail(f"cannot plan the re-exec: {exc}")
            return
        self.exec_phase = phase
        self.pivot_path = newroot
        self.log(6, f"re-exec requested (phase {phase}{', root ' + newroot if newroot else ''}),"
                 " running preflight", TARGET=target.interpreter)
        for hook in self.on_reexec_requested:
            hook()
        self.exec_target = target
        try:
            self.preflight = reexec.start_preflight(target)
        except OSError as exc:
            self._fail(f"preflight could not start {target.interpreter}: {exc}")
            return
        self._preflight_deadline = time.monotonic() + PREFLIGHT_TIMEOUT
        self.server.add_fd(self.preflight.output_fd, self._preflight_output)

    def _preflight_output(self, _events: int) -> None:
        assert self.preflight is not None
        try:
            chunk = os.read(self.preflight.output_fd, 65536)
        except BlockingIOError:
            return
        if chunk:
            if len(self.preflight_output) < PREFLIGHT_OUTPUT_MAX:
                self.preflight_output += chunk[:PREFLIGHT_OUTPUT_MAX]
            return
        code, output = self._end_preflight()
        if code != 0:
            self._fail(f"preflight failed (exit {code}): {output[-500:]}")
            return
        self.log(6, "preflight passed", OUTPUT=output[-200:])
        self.handover = reexec.HANDOVER_CAPABILITY in output
        self.ready = True
        self.server.soon.append(self.tick)  # exec once this iteration's messages are out

    def _end_preflight(self, kill: bool = False) -> tuple[int, str]:
        preflight = self.preflight
        assert preflight is not None
        self.server.remove_fd(preflight.output_fd)
        code = reexec.end_preflight(preflight, kill)
        self.preflight = None
        output = self.preflight_output.decode(errors="replace").strip()
        self.preflight_output = b""
        return code, output

    def _preflight_overdue(self) -> None:
        _code, output = self._end_preflight(kill=True)
        self._fail(f"preflight did not finish in {PREFLIGHT_TIMEOUT:.0f} s: {output[-500:]}")

    def _fail(self, reason: str) -> None:
        self.log(3, f"re-exec aborted, this image keeps serving: {reason}", REASON=reason)
        target = self.exec_target
        if target is not None and target.root_fd not in (None, self.prepared_root):
            os.close(target.root_fd)  # type: ignore[arg-type]
        self.exec_target = None
        self.pivot_path = ""
        self.ready = False
        for peer_id, serial in self._waiting:
            peer = self.bus.peers.get(peer_id)
            if peer is not None:
                self._error(peer, serial, reason)
        self._waiting = []

    def _watching_pid1(self) -> bool:
        """Whether PID 1's root is looked at: in the initramfs, no re-exec under way."""
        return (self._pid1_root is not None and self.phase == PHASE_INITRAMFS
                and not self._in_progress())

    def _next_check(self) -> float | None:
        """When tick() has something to check: the preflight's deadline, PID 1's root."""
        due = self._preflight_deadline if self.preflight is not None else None
        if self._watching_pid1():
            due = self._next_root_check if due is None else min(due, self._next_root_check)
        return due

    def tick(self) -> None:
        """What is due: records nobody claimed, the exec once preflight passed, an
        overdue preflight, a look at PID 1's root. Called soon after the events that
        make it due and by its timer (_next_check); it checks each condition itself."""
        if self._unclaimed:
            self._drop_unclaimed()
        if self.ready and self.exec_target is not None:
            self.ready = False
            self._exec()
            return
        if self.preflight is not None and time.monotonic() > self._preflight_deadline:
            self._preflight_overdue()
        if self._watching_pid1():
            now = time.monotonic()
            if now >= self._next_root_check:
                self._next_root_check = now + ROOT_CHECK_INTERVAL
                current = _pid1_root(self._proc_fd)
                if current is not None and current != self._pid1_root:
                    self._pid1_root = None
                    self._auto_pivot()

    def _auto_pivot(self) -> None:
        """PID 1 switched root: follow it before the initramfs is deleted under us."""
        if self.prepared_root is not None:
            fd, path = self.prepared_root, self.prepared_path
        else:
            path = "/proc/1/root"
            try:
                fd = _open_root("1/root" if self._proc_fd is not None else path, self._proc_fd)
            except SupervisorError as exc:
                self.log(3, f"PID 1 changed root, but this image cannot follow it: {exc}",
                         REASON=str(exc))
                return
        self.log(5, f"PID 1 changed root, following it into {path}", NEWROOT=path)
        self._start(None, None, fd, PHASE_ROOT, path)

    def _exec(self) -> None:
        target = self.exec_target
        assert target is not None
        t0 = time.monotonic()
        self._quiesce()
        for hook in self.on_before_exec:
            hook()
        if target.root_fd is not None:
            self.pivots.append({"from_phase": self.phase, "to_phase": self.exec_phase,
                                "root": self.pivot_path, "at": time.time()})
        self._phase_before_exec = self.phase
        self.phase = self.exec_phase
        target.env["BOOTBUS_EXEC_STARTED"] = repr(time.monotonic())
        # threading is not imported on a cold start (~0.7 ms): without it, no
        # thread runs (the device monitor imports it to start one)
        threading = sys.modules.get("threading")
        if (self.handover and os.environ.get(REEXEC_MODE_ENV) != "direct"
                and (threading is None or threading.active_count() == 1)):
            # threads do not survive fork: with one running (the first device
            # enumeration), the twin could wait on its lock forever
            outcome = self._exec_with_twin(target)
            if outcome is None:
                return  # in the twin, serving until the new image takes over
            error = outcome
        else:
            error = self._exec_direct(target, t0)
        self._exec_abandoned(f"exec of {target.interpreter} failed: {error}")

    def _exec_abandoned(self, reason: str) -> None:
        """Undo what _exec recorded for the next image; this one serves on."""
        target = self.exec_target
        self.phase = self._phase_before_exec
        if target is not None and target.root_fd is not None:
            self.pivots.pop()
        self.answer_after_exec = []
        for failed in self.on_exec_failed:
            failed(reason)
        self._fail(reason)

    def _quiesce(self) -> None:
        """Route what was read and write out what is queued, before a snapshot."""
        server = self.server
        server.settle()
        for conn in list(server.conns.values()):
            if conn.peer.outq:
                server._flush(conn)

    def _snapshot(self, t0: float, how: str) -> tuple[bytes, list[int]]:
        server, bus = self.server, self.bus
        self.answer_after_exec = list(self._waiting)
        listeners = [ListenerRecord(lst.sock.fileno(), lst.address, lst.path)
                     for lst in self.listeners]
        conn_fds = {peer_id: conn.sock.fileno() for peer_id, conn in server.by_peer.items()}
        deadlines = {peer_id: conn.deadline for peer_id, conn in server.by_peer.items()
                     if conn.deadline}
        own_fds = {}
        target = self.exec_target
        if self.prepared_root is not None and (target is None
                                               or self.prepared_root != target.root_fd):
            own_fds["prepared_root"] = self.prepared_root
        components = [record for component in self.components.values()
                      for record in component.save()]
        data, fds = encode(bus, conn_fds, listeners, self.state(), deadlines, own_fds,
                           components)
        queued = sum(len(p.outq) for p in bus.peers.values())
        partial = sum(len(p.framer.buf) for p in bus.peers.values())
        self.log(6, f"{how}: generation {self.generation + 1}, snapshot {len(data)} "
                 f"bytes, {len(conn_fds)} connections, {len(bus.pending)} pending replies, "
                 f"{queued} queued messages, {partial} bytes of partial messages",
                 SNAPSHOT_BYTES=str(len(data)),
                 PREPARE_MS=f"{(time.monotonic() - t0) * 1000:.1f}")
        return data, fds

    def _exec_direct(self, target: reexec.ExecPlan, t0: float) -> OSError:
        data, fds = self._snapshot(t0, "re-executing")
        memfd = reexec.write_memfd(data)
        target.argv[target.argv.index("--restore-fd") + 1] = str(memfd)
        for hook in self.before_leaving:
            hook()
        error = reexec.execute(target, fds + [memfd])
        os.close(memfd)
        return error

    # -- the twin handover (see bootbus.io.reexec) ---------------------------------
    def _exec_with_twin(self, target: reexec.ExecPlan) -> OSError | None:
        """Fork a twin that serves while this process execs; None in the twin."""
        argv = list(target.argv)
        target.argv[target.argv.index("--restore-fd")] = "--handover-fd"
        if not self._subreaper:
            self._subreaper = reexec.become_subreaper()
        keep = [lst.sock.fileno() for lst in self.listeners]  # the new image's own, should
        outcome = reexec.exec_with_twin(target, keep)        # the handover fail
        if isinstance(outcome, OSError):
            target.argv = argv
            return outcome
        self.twin = outcome
        self.server.add_fd(outcome.sock.fileno(), self._handover)
        return None

    def _handover(self, _events: int) -> None:
        """In the twin: the new image asks for the bus (or died before it could)."""
        twin = self.twin
        assert twin is not None
        try:
            asked = twin.sock.recv(1)
        except OSError:
            asked = b""
        if asked != reexec.HANDOVER_GO:
            self._orphaned()
            return
        t0 = time.monotonic()
        self._quiesce()
        data, fds = self._snapshot(t0, "handing over")
        try:
            reexec.hand_over(twin, data, fds)
        except OSError as exc:
            self.log(2, f"handover to the new image failed ({exc}); it serves new clients "
                     "only", REASON=str(exc))
        for hook in self.before_leaving:
            hook()
        os._exit(0)  # the new image has every fd; nothing here may run again

    def _orphaned(self) -> None:
        """The new image ended before taking over: this twin serves on, as it was."""
        twin = self.twin
        assert twin is not None
        self.server.remove_fd(twin.sock.fileno())
        twin.sock.close()
        self.twin = None
        reason = (f"the new image (pid {twin.parent}) ended before taking over; the bus "
                  f"serves on from its twin, pid {os.getpid()}")
        self.log(2, reason, REASON=reason)
        self._exec_abandoned(reason)

    # -- replies ------------------------------------------------------------------
    def _reply(self, peer: Peer, serial: int) -> None:
        raw = m.build(m.METHOD_RETURN, self.bus.next_serial(), reply_serial=serial,
                      destination=peer.unique_name, sender=SERVICE)
        self.bus.send_from_bus(peer, raw)

    def _error(self, peer: Peer, serial: int, text: str) -> None:
        raw = m.build(m.ERROR, self.bus.next_serial(), reply_serial=serial,
                      error_name=ERR_FAILED, destination=peer.unique_name, sender=SERVICE,
                      signature="s", args=(text,))
        self.bus.send_from_bus(peer, raw)


class SupervisorError(Exception):
    pass


def _open_root(path: str, dir_fd: int | None = None) -> int:
    try:
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        raise SupervisorError(f"cannot open new root {path}: {exc.strerror}") from None
    try:
        os.stat("usr/bin/python3", dir_fd=fd)
    except OSError:
        os.close(fd)
        raise SupervisorError(f"new root {path} has no usr/bin/python3") from None
    return fd


if TYPE_CHECKING:  # Any exists for the type checker only
    _Method = Callable[[Supervisor, Peer, m.Message, list[Any]], None]
_METHODS: dict[tuple[str, str], tuple[str, _Method, bool]] = {
    (IFACE, "Reexec"): ("", Supervisor._reexec, True),
    (IFACE, "Pivot"): ("sb", Supervisor._pivot, True),
    (IFACE, "GetStatus"): ("", Supervisor._status, False),
    (IFACE, "ListConnections"): ("", Supervisor._list_connections, False),
    (IFACE, "ListMatches"): ("", Supervisor._list_matches, False),
    ("org.freedesktop.DBus.Introspectable", "Introspect"): ("", Supervisor._introspect, False),
    ("org.freedesktop.DBus.Peer", "Ping"): ("", Supervisor._ping, False),
}

_INTROSPECTION = """<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>
  <interface name="org.bootbus.Supervisor1">
    <method name="Reexec"/>
    <method name="Pivot"><arg name="new_root" direction="in" type="s"/><arg name="prepare_only" direction="in" type="b"/></method>
    <method name="GetStatus"><arg name="status" direction="out" type="a{sv}"/></method>
    <method name="ListConnections"><arg name="connections" direction="out" type="a(suuasuu)"/></method>
    <method name="ListMatches"><arg name="matches" direction="out" type="a(ss)"/></method>
  </interface>
  <interface name="org.freedesktop.DBus.Introspectable">
    <method name="Introspect"><arg direction="out" type="s"/></method>
  </interface>
  <interface name="org.freedesktop.DBus.Peer">
    <method name="Ping"/>
  </interface>
</node>
"""
