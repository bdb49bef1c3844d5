"""Bus activation: .service files, spawning services, and the calls waiting for them.

Owns: the activatable names read from ``.service`` files ([D-BUS Service]
Name=, Exec=, User=, SystemdService=) in the service directories (the first
directory that names a service wins, as in dbus-daemon), one pending
activation per name with its StartServiceByName callers and its queued
auto-start messages, and the children it spawned: their stdout/stderr are one
pipe read in the event loop into the step log, their exit is seen through a
pidfd and reaped by pid (after a re-exec no Popen object knows them). All of
it crosses a re-exec (``save``/``restore``): the children with their pidfds
and pipes, the pending activations with their held calls and their fds. A pending activation ends when the name gets an owner (callers get
``u 1``, queued messages are routed normally), when the child exits first
(Spawn.ChildExited / Spawn.ChildSignaled), when Exec cannot be executed
(Spawn.ExecFailed) or after ACTIVATION_TIMEOUT (TimedOut), with dbus-daemon's
error names. Restart policy: none; an activated service that exits is started
again by the next request for its name, as with dbus-daemon.

Never: runs Exec through a shell (it is split like dbus-daemon's
_dbus_shell_parse_argv, no expansion), blocks on a child or its output,
reaps a process it did not spawn, or leaks the fds of a queued message.

subprocess (~1.6 ms) and shlex (~1.5 ms, with re) are imported where a
service is spawned, not on a cold start: the daemon imports it once the bus serves
(bootbus.daemon.import_deferred). Should the root be switched before that, its
files are gone and the spawn fails as an exec from a deleted root would.
"""

from __future__ import annotations

import binascii
import functools
import os
import pwd
import signal
from collections.abc import Callable, Iterable, Mapping

from ..bus.peer import Peer, PeerState

# the defaults; the effective values are the bus's limits (a configuration's
# service_start_timeout and max_pending_service_starts)
from ..bus.quota import ACTIVATION_TIMEOUT, MAX_PENDING_ACTIVATIONS
from ..bus.router import Bus, PeerError
from ..plain import FrozenFields
from ..state.snapshot import ComponentRecord
from ..wire import message as m
from .notify import NOTIFY_ENVIRONMENT
from .server import Server

TYPE_CHECKING = False  # typing's, without importing typing (see bootbus.plain)
if TYPE_CHECKING:
    import subprocess

GROUP = "D-BUS Service"
SERVICE_SUFFIX = ".service"
MAX_QUEUED_PER_ACTIVATION = 1024  # messages held for one name while it starts
MAX_SERVICE_FILE_BYTES = 64 * 1024
MAX_SERVICE_FILES = 4096  # per directory
OUTPUT_READ_SIZE = 64 * 1024
OUTPUT_LINE_MAX = 4096  # a longer line is logged in pieces
STANDARD_SYSTEM_DIRS = ("/usr/local/share/dbus-1/system-services",
                        "/usr/share/dbus-1/system-services", "/lib/dbus-1/system-services")

E = "org.freedesktop.DBus.Error."
ERR_EXEC_FAILED = E + "Spawn.ExecFailed"
ERR_CHILD_EXITED = E + "Spawn.ChildExited"
ERR_CHILD_SIGNALED = E + "Spawn.ChildSignaled"
ERR_TIMED_OUT = E + "TimedOut"
ERR_LIMITS = E + "LimitsExceeded"
ERR_SERVICE_UNKNOWN = E + "ServiceUnknown"
START_REPLY_SUCCESS = 1
SYSTEMD_NAME = "org.freedesktop.systemd1"
SYSTEMD_ACTIVATOR_IFACE = "org.freedesktop.systemd1.Activator"
COMPONENT = "activation"  # its records' name in a re-exec snapshot
EXIT_STATUS_UNKNOWN = 255  # a child someone else reaped (never us: we own our children)

Logger = Callable[..., None]


class ServiceFileError(ValueError):
    """A .service file that cannot describe an activatable service."""


class ServiceFile(FrozenFields):
    __slots__ = _fields = ("name", "exec", "path", "user", "systemd_service")

    name: str
    exec: str
    path: str
    user: str
    systemd_service: str

    def __init__(self, name: str, exec: str, path: str, user: str = "",
                 systemd_service: str = "") -> None:
        init = object.__setattr__
        init(self, "name", name)
        init(self, "exec", exec)
        init(self, "path", path)
        init(self, "user", user)
        init(self, "systemd_service", systemd_service)

    def argv(self) -> list[str]:
        import shlex  # see the module docstring

        try:
            argv = shlex.split(self.exec, comments=False, posix=True)
        except ValueError as exc:
            raise ServiceFileError(f"{self.path}: Exec= cannot be parsed: {exc}") from exc
        if not argv:
            raise ServiceFileError(f"{self.path}: Exec= is empty")
        return argv


def parse_service_file(text: str, path: str) -> ServiceFile:
    """A .service file (desktop-entry syntax), only its [D-BUS Service] group."""
    group = ""
    keys: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1]
            continue
        key, eq, value = line.partition("=")
        if not eq:
            raise ServiceFileError(f"{path}:{number}: not a key=value line")
        if group == GROUP:
            keys.setdefault(key.strip(), value.strip())
    name = keys.get("Name", "")
    if not name:
        raise ServiceFileError(f"{path}: no Name= in [{GROUP}]")
    if not keys.get("Exec") and not keys.get("SystemdService"):
        raise ServiceFileError(f"{path}: no Exec= in [{GROUP}]")
    return ServiceFile(name=name, exec=keys.get("Exec", ""), path=path,
                       user=keys.get("User", ""), systemd_service=keys.get("SystemdService", ""))


def load_service_dirs(dirs: Iterable[str], log: Logger) -> dict[str, ServiceFile]:
    """Every activatable name in ``dirs``; earlier directories win, bad files are logged."""
    services: dict[str, ServiceFile] = {}
    for directory in dirs:
        try:
            entries = sorted(os.listdir(directory))[:MAX_SERVICE_FILES]
        except OSError:
            continue
        for entry in entries:
            if not entry.endswith(SERVICE_SUFFIX):
                continue
            path = os.path.join(directory, entry)
            try:
                with open(path, encoding="utf-8") as f:
                    service = parse_service_file(f.read(MAX_SERVICE_FILE_BYTES), path)
            except (OSError, UnicodeDecodeError, ServiceFileError) as exc:
                log(4, f"service file ignored: {exc}", SERVICE_FILE=path)
                continue
            services.setdefault(service.name, service)
    return services


class Child:
    def __init__(self, name: str, pid: int, pidfd: int, output: int,
                 proc: subprocess.Popen[bytes] | None = None, returncode: int | None = None,
                 partial: bytes = b"", owned: bool = False, parent: int | None = None) -> None:
        self.name = name
        self.pid = pid
        self.pidfd = pidfd
        self.output = output
        self.proc = proc  # None once restored after a re-exec
        self.returncode = returncode
        self.partial = partial
        self.owned = owned
        # the process that may reap it: a twin serving during a handover (see
        # bootbus.io.reexec) is not the parent of the children it inherited
        self.parent = os.getpid() if parent is None else parent

    def poll(self) -> int | None:
        """Reap the child if it exited; its exit code (negative: signal), or None."""
        if self.returncode is not None:
            return self.returncode
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, code = self.pid, EXIT_STATUS_UNKNOWN
        else:
            code = os.waitstatus_to_exitcode(status) if pid else 0
        if pid:
            self.returncode = code
            if self.proc is not None:
                self.proc.returncode = code  # so that Popen never waits for it again
        return self.returncode


class Activation:
    def __init__(self, service: ServiceFile, deadline: float,
                 starters: list[tuple[Peer, m.Message]] | None = None,
                 queued: list[tuple[Peer, m.Message]] | None = None,
                 child: Child | None = None) -> None:
        self.service = service
        self.deadline = deadline
        self.starters: list[tuple[Peer, m.Message]] = [] if starters is None else starters
        self.queued: list[tuple[Peer, m.Message]] = [] if queued is None else queued
        self.child = child


class Activator:
    """The router's and driver's ``bus.activator``."""

    def __init__(self, bus: Bus, server: Server, dirs: list[str], address: str,
                 bus_type: str = "session", log: Logger | None = None) -> None:
        self.bus = bus
        self.server = server
        self.dirs = dirs
        self.address = address
        self.bus_type = bus_type
        self.log: Logger = log or (lambda *a, **k: None)
        self.environment: dict[str, str] = {}
        self.stamps = _dir_stamps(dirs)
        self.services = load_service_dirs(dirs, self.log)
        self.pending: dict[str, Activation] = {}
        self.children: dict[int, Child] = {}  # pidfd -> child
        self.exited: list[Child] = []
        self.systemd = False
        bus.name_hooks.append(self._name_changed)
        server.add_timer(self._next_deadline, self._expire)
        server.on_disconnect.append(self._disconnected)

    # -- the driver's interface ---------------------------------------------------
    def can_activate(self, name: str) -> bool:
        if name not in self.services and _dir_stamps(self.dirs) != self.stamps:
            self.reload()  # a miss rescans changed directories, as dbus-daemon does
        return name in self.services

    def names(self) -> list[str]:
        if _dir_stamps(self.dirs) != self.stamps:
            self.reload()
        return sorted(self.services)

    def reload(self) -> None:
        self.stamps = _dir_stamps(self.dirs)
        self.services = load_service_dirs(self.dirs, self.log)

    def update_environment(self, env: Mapping[str, str]) -> None:
        self.environment.update(env)

    def start(self, bus: Bus, peer: Peer, msg: m.Message, name: str) -> None:
        """StartServiceByName: answered with ``u 1`` once ``name`` is owned, or an error."""
        activation = self._activation(name, peer, msg)
        if activation is not None:
            activation.starters.append((peer, msg))

    def auto_start(self, peer: Peer, msg: m.Message) -> None:
        """A method call to an activatable name nobody owns: hold it until someone does."""
        name = msg.destination or ""
        activation = self._activation(name, peer, msg)
        if activation is None:
            self._drop(msg)
            return
        if len(activation.queued) >= MAX_QUEUED_PER_ACTIVATION:
            self._fail_one(peer, msg, ERR_LIMITS,
                           f"too many messages queued for the activation of {name}")
            return
        activation.queued.append((peer, msg))

    # -- activations ----------------------------------------------------------------
    def _activation(self, name: str, peer: Peer, msg: m.Message) -> Activation | None:
        """The pending activation of ``name``, started now if needed; None if it failed."""
        activation = self.pending.get(name)
        if activation is not None:
            return activation
        service = self.services.get(name)
        if service is None:
            self._fail_one(peer, msg, ERR_SERVICE_UNKNOWN,
                           f"The name {name} was not provided by any .service files")
            return None
        if len(self.pending) >= self.bus.limits.max_pending_activations:
            self._fail_one(peer, msg, ERR_LIMITS, "The maximum number of pending "
                           f"activations has been reached, activation of {name} failed")
            return None
        activation = Activation(service,
                                self.server.clock() + self.bus.limits.activation_timeout)
        if self._delegate(service):
            self.pending[name] = activation
            return activation
        try:
            activation.child = self._spawn(service)
        except (OSError, ServiceFileError, KeyError, ImportError) as exc:
            text = f"Failed to execute program {service.exec}: {_reason(exc)}"
            self.log(3, f"activation of {name} failed: {text}", NAME=name,
                     SERVICE_FILE=service.path)
            self._fail_one(peer, msg, ERR_EXEC_FAILED, text)
            return None
        self.pending[name] = activation
        return activation

    def _delegate(self, service: ServiceFile) -> bool:
        """SystemdService= with systemd on the bus: ask it, as dbus-daemon does.

        The request is the signal org.freedesktop.systemd1.Activator.ActivationRequest(s
        unit) from the bus driver to systemd; the unit's service then owns the name. A
        failure systemd reports (ActivationFailure, a signal to the bus) is not read yet:
        the callers get TimedOut instead.
        """
        systemd = self.bus.lookup(SYSTEMD_NAME)
        if not service.systemd_service or systemd is None:
            return False
        self.bus.emit_signal(SYSTEMD_ACTIVATOR_IFACE, "ActivationRequest", "s",
                             (service.systemd_service,), destination=systemd)
        self.log(6, f"activating {service.name} through systemd: {service.systemd_service}",
                 NAME=service.name, UNIT=service.systemd_service)
        return True

    def _spawn(self, service: ServiceFile) -> Child:
        argv = service.argv()
        env = {k: v for k, v in os.environ.items() if k not in NOTIFY_ENVIRONMENT}
        env.update(self.environment)
        env["DBUS_STARTER_ADDRESS"] = self.address
        env["DBUS_STARTER_BUS_TYPE"] = self.bus_type
        env["DBUS_SYSTEM_BUS_ADDRESS" if self.bus_type == "system"
            else "DBUS_SESSION_BUS_ADDRESS"] = self.address
        user = group = None
        if service.user and os.geteuid() == 0:
            entry = pwd.getpwnam(service.user)  # KeyError: an unknown user
            user, group = entry.pw_uid, entry.pw_gid
        import subprocess  # see the module docstring

        from . import rlimit
        # The daemon's raised open-file limit is not for its children. preexec_fn runs
        # Python between fork and exec, which threads make risky in general; this one
        # only calls setrlimit, and only when the limit was raised.
        lower = rlimit.child_nofile if rlimit.children_need_lower() else None
        rfd, wfd = os.pipe2(os.O_CLOEXEC)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=wfd, stderr=wfd,
                                    env=env, cwd="/", close_fds=True, start_new_session=True,
                                    user=user, group=group,
                                    extra_groups=[] if user is not None else None,
                                    preexec_fn=lower)  # noqa: PLW1509 - see the comment above
        except BaseException:
            os.close(rfd)
            raise
        finally:
            os.close(wfd)
        os.set_blocking(rfd, False)
        child = Child(service.name, proc.pid, os.pidfd_open(proc.pid), rfd, proc)
        self._watch(child)
        self.log(6, f"activating {service.name}: pid {proc.pid} runs {service.exec}",
                 NAME=service.name, CHILD_PID=proc.pid, SERVICE_FILE=service.path)
        return child

    def _watch(self, child: Child) -> None:
        self.children[child.pidfd] = child
        self.server.add_fd(child.pidfd, functools.partial(self._child_exited, child))
        if child.output >= 0:
            self.server.add_fd(child.output, functools.partial(self._read_output, child))

    def _name_changed(self, name: str, _old: str, new: str) -> None:
        if not new:
            return
        activation = self.pending.pop(name, None)
        if activation is None:
            return
        if activation.child is not None:
            activation.child.owned = True
        self.log(6, f"activated {name}: {new} owns it", NAME=name, OWNER=new)
        for peer, msg in activation.starters:
            if _alive(self.bus, peer):
                self.bus.reply(peer, msg, "u", (START_REPLY_SUCCESS,))
        for peer, msg in activation.queued:
            if not _alive(self.bus, peer):
                self._drop(msg)
                continue
            try:
                self.bus.dispatch(peer, msg)
            except PeerError:
                self._drop(msg)

    def _fail(self, name: str, error: str, text: str) -> None:
        activation = self.pending.pop(name, None)
        if activation is None:
            return
        self.log(3, f"activation of {name} failed: {text}", NAME=name, ERROR=error)
        for peer, msg in activation.starters + activation.queued:
            self._fail_one(peer, msg, error, text)

    def _fail_one(self, peer: Peer, msg: m.Message, error: str, text: str) -> None:
        self._drop(msg)
        if _alive(self.bus, peer):
            self.bus.send_error(peer, msg, error, text)

    def _drop(self, msg: m.Message) -> None:
        if msg.fds:
            self.bus.fds_to_close.extend(msg.fds)
            msg.fds = []

    # -- children -------------------------------------------------------------------
    def _read_output(self, child: Child, _events: int = 0) -> None:
        try:
            data = os.read(child.output, OUTPUT_READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._log_output(child, child.partial, final=True)
            self.server.remove_fd(child.output)
            os.close(child.output)
            child.output = -1
            return
        self._log_output(child, child.partial + data, final=False)

    def _log_output(self, child: Child, data: bytes, final: bool) -> None:
        *lines, rest = data.split(b"\n")
        while len(rest) > OUTPUT_LINE_MAX:
            lines.append(rest[:OUTPUT_LINE_MAX])
            rest = rest[OUTPUT_LINE_MAX:]
        if final and rest:
            lines.append(rest)
            rest = b""
        child.partial = rest
        for line in lines:
            text = line.decode("utf-8", "replace")
            self.log(6, f"{child.name}[{child.pid}]: {text}", NAME=child.name,
                     CHILD_PID=child.pid, CHILD_OUTPUT=text)

    def _child_exited(self, child: Child, _events: int = 0) -> None:
        if child.parent != os.getpid():
            # a twin: the bus's own PID reaps this one once it took the bus over
            self.server.remove_fd(child.pidfd)
            return
        if child.poll() is None:
            return
        self.server.remove_fd(child.pidfd)
        os.close(child.pidfd)
        self.children.pop(child.pidfd, None)
        self._judge_later(child)

    def _judge_later(self, child: Child) -> None:
        """Judge an exited child after this iteration's messages are routed."""
        if not self.exited:
            self.server.soon.append(self._settle_exits)
        self.exited.append(child)

    def _settle_exits(self) -> None:
        """A child that exited: fail its activation unless its name got an owner meanwhile."""
        while self.exited:
            child = self.exited.pop(0)
            if child.output >= 0:
                self._read_output(child)  # its last words, before the verdict
            code = child.returncode
            assert code is not None
            how = (f"received signal {-code}" if code < 0 else f"exited with status {code}")
            self.log(6 if child.owned else 4, f"{child.name}[{child.pid}] {how}",
                     NAME=child.name, CHILD_PID=child.pid, EXIT_STATUS=code)
            activation = self.pending.get(child.name)
            if activation is not None and activation.child is child:
                error = ERR_CHILD_SIGNALED if code < 0 else ERR_CHILD_EXITED
                self._fail(child.name, error, f"Process {child.name} {how}")

    def _next_deadline(self) -> float | None:
        return min((a.deadline for a in self.pending.values()), default=None)

    def _expire(self) -> None:
        now = self.server.clock()
        for name, activation in list(self.pending.items()):
            if activation.deadline > now:
                continue
            if activation.child is not None and activation.child.poll() is None:
                signal.pidfd_send_signal(activation.child.pidfd, signal.SIGKILL)  # as dbus-daemon
            self._fail(name, ERR_TIMED_OUT, f"Failed to activate service '{name}': timed "
                       "out (service_start_timeout="
                       f"{int(self.bus.limits.activation_timeout * 1000)}ms)")

    def _disconnected(self, peer: Peer, _reason: str) -> None:
        for activation in self.pending.values():
            for held in (activation.starters, activation.queued):
                for item in [i for i in held if i[0] is peer]:
                    self._drop(item[1])
                    held.remove(item)

    # -- across a re-exec ---------------------------------------------------------
    def save(self) -> list[ComponentRecord]:
        """Children (with their pidfds and pipes), then pending activations and held calls."""
        records = [_child_record(child) for child in [*self.children.values(), *self.exited]]
        for name, activation in self.pending.items():
            service = activation.service
            fds: dict[str, int] = {}
            queued = []
            for i, (peer, msg) in enumerate(activation.queued):
                names = [f"q{i}.{j}" for j in range(len(msg.fds))]
                fds.update(zip(names, msg.fds))
                queued.append([peer.id, _b64(msg.raw), names])
            records.append(ComponentRecord(COMPONENT, "activation", {
                "name": name, "deadline": activation.deadline,
                "service": {"name": service.name, "exec": service.exec, "path": service.path,
                            "user": service.user, "systemd_service": service.systemd_service},
                "child": activation.child.pid if activation.child is not None else None,
                "starters": [[peer.id, _b64(msg.raw)] for peer, msg in activation.starters],
                "queued": queued}, fds))
        return records

    def restore(self, records: list[ComponentRecord]) -> None:
        """Adopt the previous image's children and pending activations."""
        by_pid: dict[int, Child] = {}
        for record in records:
            for fd in record.fds.values():
                os.set_inheritable(fd, False)
        for record in records:
            if record.kind == "child":
                child = self._restore_child(record)
                by_pid[child.pid] = child
        for record in records:
            if record.kind == "activation":
                self._restore_activation(record, by_pid)
            elif record.kind != "child":
                self.log(4, f"unknown activation record {record.kind!r} skipped")
                for fd in record.fds.values():
                    _close_quietly(fd)
        if records:
            self.log(6, f"activation state restored: {len(self.pending)} pending, "
                     f"{len(self.children)} children", PENDING=len(self.pending),
                     CHILDREN=len(self.children))
        for name in list(self.pending):  # owned in the last moments of the previous image
            owner = self.bus.lookup(name)
            if owner is not None:
                self._name_changed(name, "", owner.unique_name)

    def _restore_child(self, record: ComponentRecord) -> Child:
        data = record.data
        returncode = data.get("returncode")
        child = Child(str(data["name"]), int(data["pid"]), record.fds.get("pidfd", -1),
                      record.fds.get("output", -1),
                      returncode=None if returncode is None else int(returncode),
                      partial=_unb64(str(data.get("partial", ""))),
                      owned=bool(data.get("owned", False)))
        if child.output >= 0:
            os.set_blocking(child.output, False)
        if child.pidfd >= 0:
            self._watch(child)
        else:  # exited before the exec, not judged yet
            if child.output >= 0:
                self.server.add_fd(child.output, functools.partial(self._read_output, child))
            self._judge_later(child)
        return child

    def _restore_activation(self, record: ComponentRecord, by_pid: dict[int, Child]) -> None:
        data = record.data
        svc = data["service"]
        service = ServiceFile(name=str(svc["name"]), exec=str(svc["exec"]),
                              path=str(svc["path"]), user=str(svc.get("user", "")),
                              systemd_service=str(svc.get("systemd_service", "")))
        child_pid = data.get("child")
        activation = Activation(service, float(data["deadline"]),
                                child=by_pid.get(int(child_pid)) if child_pid else None)
        for peer_id, raw in data["starters"]:
            peer = self.bus.peers.get(int(peer_id))
            if peer is not None:
                activation.starters.append((peer, m.parse(_unb64(raw))))
        for peer_id, raw, fd_names in data["queued"]:
            msg = m.parse(_unb64(raw))
            msg.fds = [record.fds[n] for n in fd_names]
            peer = self.bus.peers.get(int(peer_id))
            if peer is None:
                self._drop(msg)
                continue
            activation.queued.append((peer, msg))
        self.pending[str(data["name"])] = activation

    def close(self) -> None:
        """At shutdown: stop reading; the children stay (they are services)."""
        for child in list(self.children.values()):
            self.server.remove_fd(child.pidfd)
            os.close(child.pidfd)
            if child.output >= 0:
                self.server.remove_fd(child.output)
                os.close(child.output)
        self.children.clear()


def _child_record(child: Child) -> ComponentRecord:
    fds = {"pidfd": child.pidfd} if child.returncode is None else {}
    if child.output >= 0:
        fds["output"] = child.output
    return ComponentRecord(COMPONENT, "child", {
        "name": child.name, "pid": child.pid, "owned": child.owned,
        "partial": _b64(child.partial), "returncode": child.returncode}, fds)


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _unb64(text: str) -> bytes:
    return binascii.a2b_base64(text, strict_mode=True) if text else b""


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _dir_stamps(dirs: Iterable[str]) -> list[int]:
    """What changes when a service file is added, removed or renamed in ``dirs``."""
    stamps = []
    for directory in dirs:
        try:
            stamps.append(os.stat(directory).st_mtime_ns)
        except OSError:
            stamps.append(-1)
    return stamps


def _alive(bus: Bus, peer: Peer) -> bool:
    return peer.id in bus.peers and peer.state is PeerState.ACTIVE


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"unknown user {exc.args[0]!r}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def install(bus: Bus, server: Server, dirs: list[str], address: str,
            log: Logger, system_bus: bool = False) -> Activator:
    """Set ``bus.activator``; the system bus also reads the standard system directories."""
    all_dirs = [*dirs, *(STANDARD_SYSTEM_DIRS if system_bus else ())]
    activator = Activator(bus, server, all_dirs, address,
                          "system" if system_bus else "session", log)
    bus.activator = activator
    if activator.services:
        log(6, f"{len(activator.services)} activatable names from {', '.join(all_dirs)}",
            ACTIVATABLE=len(activator.services))
    return activator


__all__ = ["ACTIVATION_TIMEOUT", "MAX_PENDING_ACTIVATIONS", "Activator", "ServiceFile",
           "ServiceFileError", "install", "load_service_dirs", "parse_service_file"]
