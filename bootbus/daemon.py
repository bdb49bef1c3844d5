"""The bootbus daemon: flags to a config, then the loop, with signals handled.

Owns: the command line of ``bootbus`` / ``python3 -m bootbus`` (a flag table, not
click: the daemon runs in the initramfs, where every imported module costs
start-up time and image size), the runtime directory, the bus id and machine
id, and the signal handlers (installed in a context manager).
"""

import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator

from . import __version__
from .bus import driver
from .bus.peer import Peer
from .bus.router import Bus
from .io import reexec
from .io.listen import Listener, from_systemd, listen_all
from .io.server import Server
from .io.services import SERVICE, InterfaceRouter
from .io.supervisor import PHASE_INITRAMFS, Supervisor
from .io.telemetry import LOG_IFACE, Telemetry
from .state import snapshot
from .wire.errors import AddressError
from .wire.message import Message

MACHINE_ID_PATHS = ("/etc/machine-id", "/var/lib/dbus/machine-id")
DEVICES_IFACE = "org.bootbus.Devices1"  # bootbus.io.devices.IFACE, named without pyudev
# seconds after a cold start before the device monitor loads and the first summary is
# written (its json comes with the deferred imports)
DEVICES_LOAD_DELAY = 0.05


def default_runtime_dir() -> str:
    if os.geteuid() == 0:
        return "/run/bootbus"
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/bootbus-{os.geteuid()}"
    return os.path.join(base, "bootbus")


class Config:
    def __init__(self, address: str | None, runtime_dir: str, print_address: bool = False,
                 restore_fd: int | None = None, handover_fd: int | None = None,
                 preflight: str | None = None, service_dirs: tuple[str, ...] = (),
                 system_activation: bool = False, config_file: str | None = None) -> None:
        self.address = address
        self.runtime_dir = runtime_dir
        self.print_address = print_address
        self.restore_fd = restore_fd
        self.handover_fd = handover_fd
        self.preflight = preflight
        self.service_dirs = service_dirs
        self.system_activation = system_activation
        self.config_file = config_file

    def exec_args(self) -> list[str]:
        """The flags a re-executed image gets (it adopts sockets, so no --address)."""
        return ["--runtime-dir", self.runtime_dir,
                *(f"--service-dir={d}" for d in self.service_dirs),
                *(["--system-activation"] if self.system_activation else []),
                *([f"--config={self.config_file}"] if self.config_file else [])]

    @property
    def listen_address(self) -> str:
        return self.address or f"unix:path={self.runtime_dir}/bus"


# The daemon's flags, as a table: (flag, kind, help). kind: "value", "flag" (no value),
# "many" (repeatable value), "int" (hidden, used by re-exec), "hidden" (hidden value).
# A table and a 30-line loop instead of argparse, which costs 7 ms of a 50 ms
# start-up budget (measured with python3 -X importtime).
FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--address", "value",
     ("D-Bus address(es) to listen on, ';'-separated (default: "
      "unix:path=RUNTIME_DIR/bus, or the sockets systemd passes)")),
    ("--runtime-dir", "value", "where bootbus keeps its files (default /run/bootbus as root)"),
    ("--print-address", "flag", "print the address clients should use once listening"),
    ("--config", "value",
     ("dbus-daemon <busconfig> file: listen addresses, policy, service "
      "dirs (e.g. /usr/share/dbus-1/system.conf)")),
    ("--service-dir", "many", "read activatable .service files from DIR (repeatable)"),
    ("--system-activation", "flag",
     ("also read the system bus's standard service directories "
      "and start services as the system bus")),
    ("--restore-fd", "int", ""),
    ("--handover-fd", "int", ""),
    ("--preflight", "hidden", ""),
)


class UsageError(Exception):
    pass


def usage() -> str:
    lines = ["usage: bootbus [options]", "",
             "A D-Bus compatible bus from the initramfs to poweroff.", "", "options:"]
    for flag, kind, text in FLAGS:
        if kind in ("int", "hidden"):
            continue
        shown = flag if kind == "flag" else f"{flag} {flag[2:].split('-')[-1].upper()}"
        lines.append(f"  {shown:<24} {text}")
    lines.append(f"  {'-h, --help':<24} show this help and exit")
    return "\n".join(lines)


def _read_flags(argv: list[str]) -> dict[str, list[str]]:
    kinds = {flag: kind for flag, kind, _ in FLAGS}
    values: dict[str, list[str]] = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        flag, eq, inline = arg.partition("=")
        kind = kinds.get(flag)
        if kind is None:
            raise UsageError(f"unknown argument {arg!r}")
        if kind == "flag":
            if eq:
                raise UsageError(f"{flag} takes no value")
            values[flag] = ["1"]
            continue
        if eq:
            value = inline
        elif args:
            value = args.pop(0)
        else:
            raise UsageError(f"{flag} needs a value")
        if kind == "many":
            values.setdefault(flag, []).append(value)
        else:
            values[flag] = [value]
    return values


def parse_args(argv: list[str] | None = None) -> Config:
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        print(usage())
        raise SystemExit(0)
    try:
        v = _read_flags(argv)
        restore_fd = int(v["--restore-fd"][0]) if "--restore-fd" in v else None
        handover_fd = int(v["--handover-fd"][0]) if "--handover-fd" in v else None
    except (UsageError, ValueError) as exc:
        print(f"{usage()}\n\nbootbus: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

    def one(flag: str) -> str | None:
        return v[flag][0] if flag in v else None

    return Config(address=one("--address"),
                  runtime_dir=one("--runtime-dir") or default_runtime_dir(),
                  print_address="--print-address" in v, restore_fd=restore_fd,
                  handover_fd=handover_fd,
                  preflight=one("--preflight"), service_dirs=tuple(v.get("--service-dir", [])),
                  system_activation="--system-activation" in v,
                  config_file=one("--config"))


def read_machine_id() -> str:
    for path in MACHINE_ID_PATHS:
        try:
            with open(path) as f:
                value = f.read().strip()
        except OSError:
            continue
        if len(value) == 32:
            return value
    return ""


@contextlib.contextmanager
def signals_stop(server: Server, bus: Bus | None = None) -> Iterator[None]:
    """SIGTERM and SIGINT stop the loop, SIGHUP reloads the configuration (as
    ReloadConfig does); the previous handlers come back after."""
    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def on_wakeup(_events: int) -> None:
        try:
            data = os.read(rfd, 64)
        except BlockingIOError:
            return
        if {signal.SIGTERM, signal.SIGINT} & set(data):
            server.stop()
        if signal.SIGHUP in set(data) and bus is not None and bus.reload_config is not None:
            bus.reload_config()

    previous = {sig: signal.signal(sig, lambda *_: None)
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    old_wakeup = signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
    server.add_fd(rfd, on_wakeup)
    try:
        yield
    finally:
        server.remove_fd(rfd)
        signal.set_wakeup_fd(old_wakeup)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(rfd)
        os.close(wfd)


def import_deferred() -> None:
    """What a cold start leaves until the bus serves (~6 ms its first Hello need not
    wait for): json (snapshots, the summary file, a re-exec's plan), subprocess and
    shlex (bus activation's spawns) and ctypes with glibc's malloc tuning. Called with the
    device monitor's import, before its thread starts: once the bus serves, at once
    in the initramfs (a switch_root may delete their files later) and before a
    restore or re-exec. Raises ImportError if the files are gone; their users then
    degrade: no spawn, no malloc_trim, no subreaper for a twin's children, no
    summary file, and a re-exec is refused (it could not write its snapshot)."""
    import json  # noqa: F401
    import shlex  # noqa: F401
    import subprocess  # noqa: F401

    from .io import memory
    memory.tune_malloc()


def make_bus() -> Bus:
    bus = Bus(bus_id=os.urandom(16).hex(), uid=os.geteuid(), pid=os.getpid(),
              machine_id=read_machine_id())
    bus.driver = driver.handle
    return bus


def preflight(version: str) -> int:
    """Exit 0 if this code imports completely and can restore a snapshot of ``version``."""
    import_deferred()
    from .state import snapshot

    major, _, _minor = version.partition(".")
    if int(major) != snapshot.VERSION[0]:
        print(f"bootbus: cannot restore snapshot format {version} "
              f"(reads {snapshot.VERSION[0]}.x)")
        return 1
    print(f"bootbus {__version__} reads snapshot format {version}")
    print(reexec.HANDOVER_CAPABILITY)
    return 0


def log_stderr(priority: int, message: str, **fields: object) -> None:
    print(f"<{priority}>bootbus: {message}", file=sys.stderr, flush=True)


def _inherited_listeners() -> list[Listener]:
    raw = os.environ.pop(reexec.LISTENERS_ENV, "")
    if not raw:
        return []
    import json

    listeners = []
    for fd, address, path in json.loads(raw):
        sock = socket.socket(fileno=int(fd))
        sock.setblocking(False)
        os.set_inheritable(sock.fileno(), False)
        listeners.append(Listener(sock, str(address), path))
    return listeners


def _close_stray_fds(keep: set[int]) -> None:
    """After a refused snapshot: close inherited fds nobody can serve any more."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                if os.get_inheritable(fd):
                    os.close(fd)


def restore(config: Config, bus: Bus) -> tuple[Server, list[Listener], dict[str, object]]:
    """Adopt the previous image's state; on a bad snapshot keep only its listeners."""
    listeners = _inherited_listeners()
    received: list[int] | None = None
    try:
        if config.handover_fd is not None:
            data, received, _twin = reexec.take_over(config.handover_fd)
        else:
            assert config.restore_fd is not None
            data = reexec.read_fd(config.restore_fd)
        restored = snapshot.decode(data, lambda text: log_stderr(4, text), received)
        reexec.check_inherited(restored)
    except (OSError, snapshot.SnapshotError, reexec.HandoverError) as exc:
        log_stderr(2, f"state snapshot refused, serving new clients only: {exc}")
        for fd in received or ():
            with contextlib.suppress(OSError):
                os.close(fd)
        _close_stray_fds({lst.sock.fileno() for lst in listeners})
        return Server(bus, listeners), listeners, {}
    if received is not None:  # the listeners came twice: inherited, and handed over
        for lst in restored.listeners:
            os.close(lst.fd)
    new = restored.bus
    bus.bus_id, bus.next_peer_id, bus.next_unique = new.bus_id, new.next_peer_id, new.next_unique
    bus.serial, bus.stats, bus.pending, bus.registry = new.serial, new.stats, new.pending, new.registry
    bus.peers = new.peers
    bus.rebuild_indexes()
    server = Server(bus, listeners)
    for peer_id, fd in restored.conn_fds.items():
        conn = server.adopt(socket.socket(fileno=fd), bus.peers[peer_id])
        os.set_inheritable(fd, False)
        if peer_id in restored.auth_deadlines:
            conn.deadline = restored.auth_deadlines[peer_id]
    for peer in bus.peers.values():
        for frame in peer.outq:
            if frame.fds is not None:
                for fd in frame.fds.fds:
                    os.set_inheritable(fd, False)
        for fd in peer.framer.fds:
            os.set_inheritable(fd, False)
    return server, listeners, restored.supervisor


def run(config: Config) -> int:
    if config.preflight is not None:
        return preflight(config.preflight)
    os.makedirs(config.runtime_dir, mode=0o755, exist_ok=True)
    restoring = config.restore_fd is not None or config.handover_fd is not None
    bus = make_bus()
    state: dict[str, object] = {}
    twin_asked = ""  # when this image asked a twin for the bus (monotonic, as text)
    manager = None
    if config.config_file:
        # imported only here: a bus without --config never loads the policy engine
        from .io.busconfig import ConfigError
        from .io.policyload import ConfigManager
        try:
            manager = ConfigManager(config.config_file, bus, log_stderr)
        except (ConfigError, OSError) as exc:
            print(f"bootbus: cannot use configuration {config.config_file}: {exc}",
                  file=sys.stderr)
            if not restoring:
                return 1
    if restoring:
        # imported before the restore: with a twin serving meanwhile, clients never wait
        # for these imports
        import_deferred()
        from .io import activation, devices
        if config.handover_fd is not None:
            twin_asked = repr(time.monotonic())
        server, listeners, state = restore(config, bus)
    else:
        listeners = [] if config.address else from_systemd()
        if not listeners:
            address = config.listen_address
            if manager is not None and not config.address and manager.config.listen:
                address = ";".join(manager.config.listen)
            try:
                listeners = listen_all(address)
            except (AddressError, OSError) as exc:
                print(f"bootbus: cannot listen on {address}: {exc}", file=sys.stderr)
                return 1
        server = Server(bus, listeners)
    supervisor = Supervisor(bus, server, listeners, config.exec_args(), log=log_stderr)
    supervisor.install()
    if state:
        supervisor.restore(state)
    addresses = [f"{lst.address},guid={bus.bus_id}" for lst in listeners]
    telemetry = Telemetry(config.runtime_dir, bus, server, supervisor.phase, addresses)
    telemetry.generation, telemetry.pivots = supervisor.generation, len(supervisor.pivots)
    started = supervisor.started_at
    telemetry.started = (int(started * 1e6), telemetry.started[1])
    supervisor.log = telemetry.step
    supervisor.on_before_exec.append(telemetry.before_exec)
    supervisor.on_exec_failed.append(telemetry.exec_failed)
    supervisor.before_leaving.append(telemetry.flush_echo)
    services = InterfaceRouter(bus.services[SERVICE])  # the supervisor answers the rest
    services.register(LOG_IFACE, telemetry.handle_log)
    if restoring or supervisor.phase == PHASE_INITRAMFS:
        # restoring: imported already, and a device waiter in the snapshot needs it.
        # In the initramfs: switch_root may delete the files of a later import.
        import_deferred()
        _more_files(telemetry.step)
        from .io import devices
        supervisor.attach(devices.COMPONENT, devices.install(bus, server, services.register,
                                                             telemetry.step))
    else:
        _defer_devices(server, services, supervisor, telemetry.step)
    from .io import activation
    service_dirs = list(config.service_dirs)
    if manager is not None:
        manager.log = telemetry.step
        service_dirs += [d.path for d in manager.config.servicedirs if d.path not in service_dirs]
    supervisor.attach(activation.COMPONENT, activation.install(
        bus, server, service_dirs, ";".join(addresses), telemetry.step,
        system_bus=config.system_activation))
    bus.services[SERVICE] = services
    if state:
        after_exec = _ms_since(os.environ.pop("BOOTBUS_EXEC_STARTED", ""))
        after_handover = _ms_since(twin_asked)
        telemetry.step(6, f"restored generation {supervisor.generation} in phase "
                       f"{supervisor.phase}: {len(bus.peers)} connections"
                       + (f", {after_exec} ms after exec" if after_exec else "")
                       + (f", {after_handover} ms after the twin was asked"
                          if after_handover else ""),
                       GENERATION=supervisor.generation, CONNECTIONS=len(bus.peers),
                       EXEC_TO_SERVING_MS=after_exec, HANDOVER_TO_SERVING_MS=after_handover)
    else:
        telemetry.step(6, f"bootbus {__version__} listening on {';'.join(addresses)} in phase "
                       f"{supervisor.phase}", ADDRESS=";".join(addresses),
                       PHASE=supervisor.phase)
    telemetry.notifier.ready(telemetry.status_line())
    if state:
        telemetry.summary.mark_dirty()  # written by the timer once serving resumed
    elif supervisor.phase == PHASE_INITRAMFS:
        telemetry.summary.flush()
    else:  # written once the first clients are served, with the deferred imports
        telemetry.summary.write_first_after(int(DEVICES_LOAD_DELAY * 1e6))
    if config.print_address and not restoring:
        print(";".join(addresses), flush=True)
    try:
        with signals_stop(server, bus):
            server.run()
    finally:
        if supervisor.twin is not None:
            telemetry.flush_echo()
            os._exit(0)  # a twin told to stop: the new image owns the bus, its paths and name
        telemetry.stopping()
        server.close()
        for lst in listeners:
            if lst.path:
                with contextlib.suppress(OSError):
                    os.unlink(lst.path)
    return 0


def _defer_devices(server: Server, services: InterfaceRouter, supervisor: Supervisor,
                   log: Callable[..., None]) -> None:
    """Load the device monitor once the bus serves: pyudev's import costs ~25 ms, which
    the first clients of a cold start should not wait for. A Devices1 call before then
    loads it at once, and so does a re-exec asked for before then; its first
    enumeration covers the devices that came meanwhile.
    The other deferred imports (import_deferred) come first, in the same step. Should
    the root have been switched in between (busybox's switch_root right after start),
    the bus serves on without them; the image it pivots into loads them."""
    due = server.clock() + DEVICES_LOAD_DELAY
    loaded = False

    def load() -> None:
        nonlocal loaded
        if loaded:
            return
        loaded = True
        del services.interfaces[DEVICES_IFACE]
        try:
            import_deferred()
            _more_files(log)
            from .io import devices
        except (ImportError, OSError) as exc:  # e.g. our files deleted under us
            log(3, f"device monitor not loaded, {DEVICES_IFACE} not served: {exc}")
            return
        supervisor.attach(devices.COMPONENT, devices.install(
            supervisor.bus, server, services.register, log))

    def when_due() -> None:
        if server.clock() >= due:
            load()

    def first_call(bus: Bus, peer: Peer, msg: Message) -> None:
        load()
        services(bus, peer, msg)  # the real handler, or the fallback if udev is unusable

    services.register(DEVICES_IFACE, first_call)
    server.add_timer(lambda: None if loaded else due, when_due)
    # a re-exec before then (its preflight takes ~40 ms) must carry the devices' state
    supervisor.on_reexec_requested.append(load)


def _more_files(log: Callable[..., None]) -> None:
    """Raise the open-file limit (bootbus.io.rlimit) once the bus serves; it carries
    across re-execs, so a restored image finds it raised already."""
    try:
        from .io import rlimit
        raised = rlimit.raise_nofile()
    except (ImportError, OSError) as exc:  # an image without the resource module
        log(4, f"open-file limit left as it is: {exc}")
        return
    if raised is not None:
        log(6, f"open-file limit raised from {raised[0]} to {raised[1]}",
            NOFILE_BEFORE=raised[0], NOFILE=raised[1])


def _ms_since(monotonic: str) -> str:
    """Milliseconds since a monotonic time given as text (the exec's crosses it in the
    environment), or '' without one."""
    return f"{1000 * (time.monotonic() - float(monotonic)):.1f}" if monotonic else ""


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))
