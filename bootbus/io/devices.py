"""Devices on the bus: org.bootbus.Devices1 at /org/bootbus/Devices1, fed by udev.

Owns: one udev monitor socket (udevd's processed events when udevd runs, the
kernel's own uevents until then) registered in the event loop, the signals
DeviceAdded / DeviceChanged / DeviceRemoved broadcast from ``org.bootbus``,
and the methods ListDevices, GetDevice and WaitForDevice. A waiter is answered
at once from an enumeration if a matching device exists, later from the first
monitor event that matches, or with org.bootbus.Error.Timeout at its deadline;
each answer and each timeout is a step-log record naming the caller. A filter
on DEVLINKS matches a device with that link among its space-separated links.

Started before udevd (in an initramfs), the monitor reads the kernel's events
and also listens for udevd's: the first of those says udevd runs, and from
then on only udevd's events count (they carry ID_FS_UUID, DEVLINKS, ... that
kernel events lack). Kernel events already read are not taken back; an event
seen both ways may be signalled twice.

Across a re-exec the monitor socket is reopened, so the waiters and the set
of known devices (devpath -> a fingerprint of its properties, kept current by
the events) go into the snapshot; the new image enumerates once serving
(not on the re-exec pause) and turns the differences into DeviceAdded /
DeviceChanged / DeviceRemoved, then answers the waiters the enumeration
satisfies. An event seen by both paths may be signalled twice, none is lost.

Never: polls sysfs for a waiter (the monitor is opened before any enumeration,
so an event between the two is queued, not lost), blocks on the monitor
socket, or lets a malformed uevent or a vanished device take the bus down.
"""

import binascii
import os
import os.path
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import pyudev  # type: ignore[import]

from ..bus.peer import Peer, PeerState
from ..bus.router import Bus
from ..state.snapshot import ComponentRecord
from ..wire import message as m
from .server import Server

SERVICE = "org.bootbus"
PATH = "/org/bootbus/Devices1"
IFACE = "org.bootbus.Devices1"
ERR_TIMEOUT = "org.bootbus.Error.Timeout"
ERR_NO_DEVICE = "org.bootbus.Error.NoSuchDevice"
ERR_INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
ERR_UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
ERR_LIMITS = "org.freedesktop.DBus.Error.LimitsExceeded"
UDEV_CONTROL = "/run/udev/control"  # exists while udevd runs
EVENTS_PER_WAKEUP = 256  # uevents read per readiness of the monitor socket
MAX_WAITERS = 1024  # WaitForDevice calls pending on the whole bus
MAX_WAITERS_PER_PEER = 64
MAX_WAIT_MS = 3600 * 1000  # one hour: longer than any sane rd.timeout
MAX_FILTER_KEYS = 32
# properties whose value is a space-separated list; a filter names one entry
LIST_PROPERTIES = frozenset({"DEVLINKS"})
# action -> signal; every other action (change, move, bind, unbind, online, offline)
# is a DeviceChanged
SIGNAL_OF_ACTION = {"add": "DeviceAdded", "remove": "DeviceRemoved"}
ACTIONS_THAT_SATISFY_WAITERS = frozenset({"add", "change", "move", "bind", "online"})
COMPONENT = "devices"  # its records' name in a re-exec snapshot
RESYNC_RETRY = 1.0  # seconds before trying again when no pipe could be made
RESYNC_DELAY = 0.0  # seconds after start or restore before the enumeration thread starts
# event-only properties, left out of a device's fingerprint (an enumeration has none)
VOLATILE_PROPERTIES = frozenset({"ACTION", "SEQNUM"})
DEVICE_SIG = "sssa{ss}"
SIGNAL_SIG = "ssssa{ss}"

Logger = Callable[..., None]
Handler = Callable[[Bus, Peer, m.Message], None]
DeviceRecord = tuple[str, str, str, dict[str, str]]  # subsystem, sysname, devpath, properties


def properties_of(device: pyudev.Device) -> dict[str, str]:
    """A device's properties, SUBSYSTEM always among them."""
    props: dict[str, str] = {}
    for key in device.properties:
        try:
            props[str(key)] = str(device.properties[key])
        except (KeyError, UnicodeDecodeError):
            continue
    props.setdefault("SUBSYSTEM", device.subsystem or "")
    return props


def record_of(device: pyudev.Device) -> DeviceRecord:
    return (device.subsystem or "", device.sys_name or "", device.device_path or "",
            properties_of(device))


def fingerprint(props: Mapping[str, str]) -> int:
    """A cheap digest of a device's lasting properties, stable across processes."""
    text = "\0".join(f"{k}={v}" for k, v in sorted(props.items())
                     if k not in VOLATILE_PROPERTIES)
    return zlib.crc32(text.encode("utf-8", "surrogateescape"))


def matches(wanted: Mapping[str, str], props: Mapping[str, str]) -> bool:
    """Every wanted property matches; an empty filter matches every device.

    A match is exact, except for a list property (DEVLINKS), where the wanted
    value may also be one of its entries."""
    for key, value in wanted.items():
        have = props.get(key)
        if have == value:
            continue
        if have is None or key not in LIST_PROPERTIES or value not in have.split():
            return False
    return True


def check_filter(wanted: Mapping[str, str]) -> str:
    """Why ``wanted`` is not a usable filter, or ''."""
    if len(wanted) > MAX_FILTER_KEYS:
        return f"more than {MAX_FILTER_KEYS} properties in the filter"
    for key in wanted:
        if not key or "=" in key:
            return f"invalid property name {key!r}"
    return ""


def monitor_source(exists: Callable[[str], bool]) -> str:
    return "udev" if exists(UDEV_CONTROL) else "kernel"



def enumerate_devices(context: "pyudev.Context", wanted: Mapping[str, str]
                      ) -> Iterable[DeviceRecord]:
    subsystem = wanted.get("SUBSYSTEM")
    devices = (context.list_devices(subsystem=subsystem) if subsystem
               else context.list_devices())
    for device in devices:
        try:
            record = record_of(device)
        except (pyudev.DeviceNotFoundError, OSError):
            continue  # gone while we looked
        if matches(wanted, record[3]):
            yield record

@dataclass(eq=False)
class Waiter:
    peer: Peer
    call: m.Message
    wanted: dict[str, str]
    deadline: float


class Devices:
    """The Devices1 interface; ``handle`` is registered on org.bootbus's router."""

    def __init__(self, bus: Bus, server: Server, log: Logger,
                 context: pyudev.Context | None = None,
                 monitor: pyudev.Monitor | None = None,
                 source: str | None = None,
                 udev_monitor: pyudev.Monitor | None = None) -> None:
        self.bus = bus
        self.server = server
        self.log = log
        self.context = context if context is not None else pyudev.Context()
        self.source = source or monitor_source(os.path.exists)
        if monitor is None:
            monitor = pyudev.Monitor.from_netlink(self.context, source=self.source)
        self.monitor = monitor
        self.monitor.start()
        # kernel events until udevd runs: its first event switches the monitor over
        self.udev_monitor: pyudev.Monitor | None = None
        if self.source == "kernel":
            self.udev_monitor = udev_monitor or self._open_udev_monitor()
        self.waiters: list[Waiter] = []
        # devpath -> (fingerprint, subsystem): complete once the first enumeration ran
        self.known: dict[str, tuple[int, str]] = {}
        self.known_complete = False
        self.diff_on_resync = False  # restored: signal what changed while no monitor ran
        # Enumerate once serving, in a thread: a full enumeration takes ~70 ms (hundreds
        # of devices), which must not delay the first Hello or lengthen a re-exec pause.
        self._resync_due: float | None = server.clock() + RESYNC_DELAY
        server.add_timer(lambda: self._resync_due, self._resync_if_due)
        server.add_fd(self.monitor.fileno(), self._readable)
        if self.udev_monitor is not None:
            server.add_fd(self.udev_monitor.fileno(), self._udev_readable)
        server.add_timer(self._next_deadline, self._expire)
        server.on_disconnect.append(self._disconnected)
        self.handlers: dict[tuple[str, str], Callable[[Peer, m.Message], None]] = {
            ("ListDevices", "a{ss}"): self._list_devices,
            ("GetDevice", "s"): self._get_device,
            ("WaitForDevice", "a{ss}u"): self._wait_for_device,
        }
        log(6, f"device monitor listening to {self.source} events", SOURCE=self.source)

    def close(self) -> None:
        self.server.remove_fd(self.monitor.fileno())
        if self.udev_monitor is not None:
            self.server.remove_fd(self.udev_monitor.fileno())

    def _open_udev_monitor(self) -> pyudev.Monitor | None:
        try:
            monitor = pyudev.Monitor.from_netlink(self.context, source="udev")
            monitor.start()
        except (OSError, ValueError) as exc:
            self.log(5, f"cannot listen for udevd's events, kernel events only: {exc}")
            return None
        return monitor

    # -- methods --------------------------------------------------------------
    def handle(self, bus: Bus, peer: Peer, msg: m.Message) -> None:
        handler = self.handlers.get((msg.member or "", msg.signature))
        if handler is None:
            self._error(peer, msg, ERR_UNKNOWN_METHOD,
                        f'No method "{msg.member}" with signature "{msg.signature}" on '
                        f"{IFACE}")
            return
        handler(peer, msg)

    def _error(self, peer: Peer, msg: m.Message, name: str, text: str) -> None:
        self.bus.send_error(peer, msg, name, text, sender=SERVICE)

    def _list_devices(self, peer: Peer, msg: m.Message) -> None:
        (wanted,) = msg.args()
        why = check_filter(wanted)
        if why:
            self._error(peer, msg, ERR_INVALID_ARGS, why)
            return
        self.bus.reply(peer, msg, "a(sssa{ss})", ([*self.enumerate(wanted)],), sender=SERVICE)

    def _get_device(self, peer: Peer, msg: m.Message) -> None:
        (path,) = msg.args()
        try:
            if path.startswith(self.context.sys_path + "/"):
                device = pyudev.Devices.from_sys_path(self.context, path)
            else:
                device = pyudev.Devices.from_path(self.context, path)
            props = properties_of(device)
        except (pyudev.DeviceNotFoundError, OSError, ValueError) as exc:
            self._error(peer, msg, ERR_NO_DEVICE, f"no device {path}: {exc}")
            return
        self.bus.reply(peer, msg, "a{ss}", (props,), sender=SERVICE)

    def _wait_for_device(self, peer: Peer, msg: m.Message) -> None:
        wanted, timeout_ms = msg.args()
        why = check_filter(wanted)
        if why:
            self._error(peer, msg, ERR_INVALID_ARGS, why)
            return
        for record in self.enumerate(wanted):
            self.bus.reply(peer, msg, DEVICE_SIG, record, sender=SERVICE)
            self._log_answer(peer, wanted, record, "enumeration")
            return
        if timeout_ms == 0:
            self._error(peer, msg, ERR_TIMEOUT, f"no device matches {_text(wanted)}")
            self._log_timeout(peer, wanted)
            return
        if len(self.waiters) >= MAX_WAITERS or sum(
                w.peer is peer for w in self.waiters) >= MAX_WAITERS_PER_PEER:
            self._error(peer, msg, ERR_LIMITS, "too many WaitForDevice calls pending")
            return
        timeout = min(timeout_ms, MAX_WAIT_MS) / 1000.0
        self.waiters.append(Waiter(peer, msg, dict(wanted), self.server.clock() + timeout))

    def enumerate(self, wanted: Mapping[str, str]) -> Iterable[DeviceRecord]:
        return enumerate_devices(self.context, wanted)

    def _log_answer(self, peer: Peer, wanted: Mapping[str, str], record: DeviceRecord,
                    answered_from: str) -> None:
        _subsystem, _sysname, devpath, props = record
        self.log(6, f"device wait answered from the {answered_from}: {_text(wanted)} -> "
                 f"{devpath} for {peer.unique_name} ({peer.comm} pid {peer.pid})",
                 DEVICE_FILTER=_text(wanted), DEVPATH=devpath,
                 DEVNAME=props.get("DEVNAME", ""), ANSWERED_FROM=answered_from,
                 MONITOR_SOURCE=self.source, CALLER=peer.unique_name,
                 CALLER_PID=peer.pid, CALLER_COMM=peer.comm)

    def _log_timeout(self, peer: Peer, wanted: Mapping[str, str]) -> None:
        self.log(5, f"device wait timed out: {_text(wanted)} for {peer.unique_name} "
                 f"({peer.comm} pid {peer.pid})", DEVICE_FILTER=_text(wanted),
                 MONITOR_SOURCE=self.source, CALLER=peer.unique_name,
                 CALLER_PID=peer.pid, CALLER_COMM=peer.comm)

    # -- the monitor ----------------------------------------------------------
    def _udev_readable(self, events: int) -> None:
        """udevd's first event: udevd runs, so follow its events from now on."""
        if self.udev_monitor is None:
            return
        self._readable(events)  # the kernel events already queued, in their order
        self.server.remove_fd(self.monitor.fileno())
        self.server.remove_fd(self.udev_monitor.fileno())
        self.monitor, self.udev_monitor = self.udev_monitor, None
        self.source = "udev"
        self.server.add_fd(self.monitor.fileno(), self._readable)
        self.log(6, "udevd runs: the device monitor follows udev's events now",
                 SOURCE=self.source)
        self._readable(events)

    def _readable(self, _events: int) -> None:
        for _ in range(EVENTS_PER_WAKEUP):
            try:
                device = self.monitor.poll(timeout=0)
            except (OSError, ValueError, pyudev.DeviceNotFoundError) as exc:
                self.log(4, f"unreadable uevent skipped: {exc}")
                continue
            if device is None:
                return
            self.event(device.action or "change", record_of(device))

    def event(self, action: str, record: DeviceRecord) -> None:
        """One uevent: broadcast it, then answer the waiters it satisfies."""
        subsystem, sysname, devpath, props = record
        if action == "remove":
            self.known.pop(devpath, None)
        elif self._enumerable(devpath):
            self.known[devpath] = (fingerprint(props), subsystem)
        member = SIGNAL_OF_ACTION.get(action, "DeviceChanged")
        self.bus.emit_signal(IFACE, member, SIGNAL_SIG,
                             (subsystem, sysname, devpath, action, props),
                             path=PATH, sender=SERVICE)
        if action not in ACTIONS_THAT_SATISFY_WAITERS or not self.waiters:
            return
        still = []
        for waiter in self.waiters:
            if matches(waiter.wanted, props):
                self._answer(waiter, record, "event")
            else:
                still.append(waiter)
        self.waiters = still

    def _enumerable(self, devpath: str) -> bool:
        """Whether an enumeration lists it: libudev skips kobjects with no subsystem link
        (a net device's queues/rx-0 has none, though its uevents say SUBSYSTEM=queues)."""
        return os.path.lexists(f"{self.context.sys_path}{devpath}/subsystem")

    def _answer(self, waiter: Waiter, record: DeviceRecord, answered_from: str) -> None:
        if waiter.peer.state is PeerState.ACTIVE:
            self.bus.reply(waiter.peer, waiter.call, DEVICE_SIG, record, sender=SERVICE)
            self._log_answer(waiter.peer, waiter.wanted, record, answered_from)

    # -- the enumeration after start and after a re-exec -----------------------
    def _resync_if_due(self) -> None:
        if self._resync_due is not None and self.server.clock() >= self._resync_due:
            self._resync_due = None
            self._resync_in_background()

    def _resync_in_background(self) -> None:
        """Enumerate in a thread (libudev's calls release the GIL), then apply the result
        in the loop: hundreds of devices take ~70 ms, which the bus keeps serving through."""
        try:
            rfd, wfd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:  # out of fds: the bus serves on, the enumeration waits
            self.log(4, f"device enumeration postponed: {exc.strerror}")
            self._resync_due = self.server.clock() + RESYNC_RETRY
            return
        result: dict[str, object] = {}

        def work() -> None:
            try:  # a context of its own: libudev objects are not shared across threads
                found = enumerate_devices(pyudev.Context(), {})
                result["current"] = {r[2]: r for r in found}
            except Exception as exc:  # noqa: BLE001 - reported in the loop, never raised
                result["error"] = exc
            finally:
                os.write(wfd, b"\0")

        def done(_events: int) -> None:
            self.server.remove_fd(rfd)
            os.close(rfd)
            os.close(wfd)
            if "error" in result:
                self.log(4, f"device enumeration failed: {result['error']}")
                return
            self._apply_enumeration(result["current"])  # type: ignore[arg-type]

        self.server.add_fd(rfd, done)
        threading.Thread(target=work, name="bootbus-enumerate", daemon=True).start()

    def resync(self) -> None:
        """Enumerate now; after a restore, signal the differences from the snapshot's set."""
        self._apply_enumeration({r[2]: r for r in self.enumerate({})})

    def _apply_enumeration(self, current: dict[str, DeviceRecord]) -> None:
        if self.diff_on_resync:
            self.diff_on_resync = False
            changes = 0
            for devpath, (_print, subsystem) in list(self.known.items()):
                if devpath not in current:
                    changes += 1
                    self.event("remove", (subsystem, devpath.rsplit("/", 1)[-1], devpath,
                                          {"DEVPATH": devpath, "SUBSYSTEM": subsystem}))
            for devpath, record in current.items():
                seen = self.known.get(devpath)
                if seen is None or seen[0] != fingerprint(record[3]):
                    changes += 1
                    self.event("add" if seen is None else "change", record)
            self.log(6, f"devices re-enumerated after the re-exec: {len(current)} devices, "
                     f"{changes} changed meanwhile", DEVICES=len(current), CHANGES=changes)
        elif not self.known_complete:
            self.log(7, f"devices enumerated: {len(current)} devices", DEVICES=len(current))
        self.known = {path: (fingerprint(r[3]), r[0]) for path, r in current.items()}
        self.known_complete = True
        still = []
        for waiter in self.waiters:
            found = next((r for r in current.values() if matches(waiter.wanted, r[3])), None)
            if found is not None:
                self._answer(waiter, found, "enumeration")
            else:
                still.append(waiter)
        self.waiters = still

    # -- across a re-exec ----------------------------------------------------------
    def save(self) -> list[ComponentRecord]:
        if not self.known_complete:
            # A re-exec before the background enumeration finished: the next image needs
            # a complete set to diff against, so enumerate now (rare: right after start).
            self.resync()
        records = [ComponentRecord(COMPONENT, "known", {
            "complete": self.known_complete,
            "devices": {path: list(v) for path, v in self.known.items()}})]
        records.extend(ComponentRecord(COMPONENT, "waiter", {
            "peer": w.peer.id, "call": _b64(w.call.raw), "wanted": w.wanted,
            "deadline": w.deadline}) for w in self.waiters)
        return records

    def restore(self, records: list[ComponentRecord]) -> None:
        for record in records:
            data = record.data
            if record.kind == "known":
                if data.get("complete"):
                    self.known = {str(path): (int(v[0]), str(v[1]))
                                  for path, v in data["devices"].items()}
                    self.diff_on_resync = True
            elif record.kind == "waiter":
                peer = self.bus.peers.get(int(data["peer"]))
                if peer is None or peer.state is not PeerState.ACTIVE:
                    continue
                call = m.parse(_unb64(str(data["call"])))
                wanted = {str(k): str(v) for k, v in data["wanted"].items()}
                self.waiters.append(Waiter(peer, call, wanted, float(data["deadline"])))
            else:
                self.log(4, f"unknown devices record {record.kind!r} skipped")
        self._resync_due = self.server.clock() + RESYNC_DELAY
        self.log(6, f"device state restored: {len(self.waiters)} waiters, "
                 f"{len(self.known)} known devices", WAITERS=len(self.waiters))

    # -- deadlines and disconnects ----------------------------------------------
    def _next_deadline(self) -> float | None:
        return min((w.deadline for w in self.waiters), default=None)

    def _expire(self) -> None:
        now = self.server.clock()
        still = []
        for waiter in self.waiters:
            if waiter.deadline <= now:
                self._error(waiter.peer, waiter.call, ERR_TIMEOUT,
                            f"no device matching {_text(waiter.wanted)} appeared in time")
                self._log_timeout(waiter.peer, waiter.wanted)
            else:
                still.append(waiter)
        self.waiters = still

    def _disconnected(self, peer: Peer, _reason: str) -> None:
        self.waiters = [w for w in self.waiters if w.peer is not peer]


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _unb64(text: str) -> bytes:
    return binascii.a2b_base64(text, strict_mode=True) if text else b""


def _text(wanted: Mapping[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(wanted.items())) or "(any device)"


def install(bus: Bus, server: Server, register: Callable[[str, Handler], None],
            log: Logger) -> Devices | None:
    """Serve Devices1 on org.bootbus; without a usable udev monitor, log and go on."""
    try:
        devices = Devices(bus, server, log)
    except (OSError, ImportError, pyudev.DeviceNotFoundError) as exc:
        log(4, f"no device monitor, {IFACE} not served: {exc}")
        return None
    register(IFACE, devices.handle)
    return devices


__all__ = ["IFACE", "PATH", "Devices", "install", "matches", "monitor_source"]
