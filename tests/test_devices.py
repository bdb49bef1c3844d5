"""org.bootbus.Devices1 against a real daemon and real uevents.

The daemon is started from the repository root; devices come from this
machine's sysfs (the loopback interface always exists) and new ones from a
veth pair created with ip(8) during a wait, which needs root (CI runs as
root). DeviceAdded is checked both with dbus-monitor and with a plain match
rule subscriber.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bootbus.client import BUS, BUS_PATH, CallError, Client
from bootbus.io.devices import IFACE, PATH, Devices, matches, monitor_source
from bootbus.io.server import Server
from bootbus.wire import message as m
from daemonproc import running_daemon
from tests.bus.fakebus import connect, new_bus

REPO = Path(__file__).resolve().parent.parent
PYTHON = "/usr/bin/python3"
SERVICE = "org.bootbus"
CALL_TIMEOUT = 10.0
EVENT_TIMEOUT = 10.0
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="creating a veth pair needs root and ip(8)")


@dataclass
class Daemon:
    proc: subprocess.Popen[str]
    address: str
    runtime_dir: Path


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("devices")
    with running_daemon(tmp) as (proc, address):
        yield Daemon(proc, address, tmp / "rt")


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Client]:
    with Client(daemon.address) as c:
        yield c


@pytest.fixture
def veth_names() -> Iterator[tuple[str, str]]:
    """Names for a veth pair (at most 15 characters), deleted after the test."""
    tag = f"{os.getpid() % 100000}{time.monotonic_ns() % 1000}"
    names = (f"bbt{tag}a", f"bbt{tag}b")
    yield names
    subprocess.run(["ip", "link", "del", names[0]], stderr=subprocess.DEVNULL, check=False)


def devices_call(client: Client, member: str, signature: str, *args: object) -> list[object]:
    return client.call(SERVICE, PATH, IFACE, member, signature, args, timeout=CALL_TIMEOUT)


def add_veth(names: tuple[str, str]) -> None:
    subprocess.run(["ip", "link", "add", names[0], "type", "veth", "peer", "name", names[1]],
                   check=True)


# -- pure ---------------------------------------------------------------------------

def test_filter_is_an_exact_match_of_every_key() -> None:
    props = {"SUBSYSTEM": "net", "INTERFACE": "lo"}
    assert matches({}, props)
    assert matches({"SUBSYSTEM": "net", "INTERFACE": "lo"}, props)
    assert not matches({"INTERFACE": "l"}, props)
    assert not matches({"INTERFACE": "lo", "IFINDEX": "1"}, props)


def test_a_devlinks_filter_names_one_of_the_links() -> None:
    props = {"SUBSYSTEM": "block", "DEVNAME": "/dev/dm-0",
             "DEVLINKS": "/dev/mapper/vg-root /dev/disk/by-uuid/1234 /dev/vg/root"}
    assert matches({"DEVLINKS": "/dev/disk/by-uuid/1234"}, props)
    assert matches({"DEVLINKS": props["DEVLINKS"]}, props)  # the whole value still matches
    assert not matches({"DEVLINKS": "/dev/disk/by-uuid/123"}, props)
    assert not matches({"DEVLINKS": "/dev/mapper/vg-root /dev/vg/root"}, props)
    assert not matches({"DEVNAME": "/dev/dm"}, props)  # other properties stay exact
    assert not matches({"DEVLINKS": "/dev/vg/root"}, {"DEVNAME": "/dev/dm-0"})


def test_monitor_source_follows_udevd() -> None:
    assert monitor_source(lambda path: path == "/run/udev/control") == "udev"
    assert monitor_source(lambda path: False) == "kernel"


# -- methods ------------------------------------------------------------------------

def test_list_devices_filters_by_property(client: Client) -> None:
    (devices,) = devices_call(client, "ListDevices", "a{ss}", {"SUBSYSTEM": "net"})
    names = {sysname for _sub, sysname, _path, _props in devices}  # type: ignore[attr-defined]
    assert names == set(os.listdir("/sys/class/net"))
    for subsystem, _sysname, devpath, props in devices:  # type: ignore[attr-defined]
        assert subsystem == "net" and props["SUBSYSTEM"] == "net"
        assert props["DEVPATH"] == devpath
    (only_lo,) = devices_call(client, "ListDevices", "a{ss}",
                              {"SUBSYSTEM": "net", "INTERFACE": "lo"})
    assert [d[1] for d in only_lo] == ["lo"]  # type: ignore[attr-defined,index]


def test_get_device_by_devpath_and_syspath(client: Client) -> None:
    devpath = os.path.realpath("/sys/class/net/lo")[len("/sys"):]
    (by_devpath,) = devices_call(client, "GetDevice", "s", devpath)
    (by_syspath,) = devices_call(client, "GetDevice", "s", "/sys" + devpath)
    assert by_devpath == by_syspath
    assert by_devpath["INTERFACE"] == "lo"  # type: ignore[index]
    with pytest.raises(CallError) as err:
        devices_call(client, "GetDevice", "s", "/devices/virtual/net/no-such-device")
    assert err.value.name == "org.bootbus.Error.NoSuchDevice"


def test_bad_filter_and_unknown_method_are_errors(client: Client) -> None:
    with pytest.raises(CallError) as err:
        devices_call(client, "ListDevices", "a{ss}", {"": "x"})
    assert err.value.name == "org.freedesktop.DBus.Error.InvalidArgs"
    with pytest.raises(CallError) as err:
        devices_call(client, "Frobnicate", "")
    assert err.value.name == "org.freedesktop.DBus.Error.UnknownMethod"


def test_wait_returns_at_once_for_an_existing_device(client: Client) -> None:
    started = time.monotonic()
    subsystem, sysname, _devpath, props = devices_call(
        client, "WaitForDevice", "a{ss}u", {"SUBSYSTEM": "net", "INTERFACE": "lo"}, 60000)
    assert time.monotonic() - started < 2.0  # far below the 60 s timeout
    assert (subsystem, sysname, props["INTERFACE"]) == ("net", "lo", "lo")  # type: ignore[index]


def test_wait_times_out_cleanly(client: Client) -> None:
    started = time.monotonic()
    with pytest.raises(CallError) as err:
        devices_call(client, "WaitForDevice", "a{ss}u", {"INTERFACE": "bb-never-there"}, 300)
    elapsed = time.monotonic() - started
    assert err.value.name == "org.bootbus.Error.Timeout"
    assert 0.3 <= elapsed < 3.0
    # the connection still works afterwards
    (devices,) = devices_call(client, "ListDevices", "a{ss}", {"INTERFACE": "lo"})
    assert len(devices) == 1  # type: ignore[arg-type]


def step_log(daemon: Daemon) -> list[dict[str, object]]:
    out = subprocess.run([PYTHON, "-m", "bootbus.ctl", "--runtime-dir", str(daemon.runtime_dir),
                          "log", "--json"], cwd=REPO, capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def test_answers_and_timeouts_are_logged_with_the_caller(daemon: Daemon,
                                                         client: Client) -> None:
    devices_call(client, "WaitForDevice", "a{ss}u", {"SUBSYSTEM": "net", "INTERFACE": "lo"},
                 60000)
    with pytest.raises(CallError):
        devices_call(client, "WaitForDevice", "a{ss}u", {"INTERFACE": "bb-never-logged"}, 100)
    records = step_log(daemon)
    answered = [r for r in records if "device wait answered" in str(r["message"])
                and r["fields"]["CALLER"] == client.unique_name]  # type: ignore[index]
    assert answered, records
    fields = answered[-1]["fields"]
    assert fields["DEVICE_FILTER"] == "INTERFACE=lo SUBSYSTEM=net"  # type: ignore[index]
    assert fields["ANSWERED_FROM"] == "enumeration"  # type: ignore[index]
    assert fields["DEVPATH"] == "/devices/virtual/net/lo"  # type: ignore[index]
    assert fields["CALLER_PID"] == str(os.getpid())  # type: ignore[index]
    timed_out = [r for r in records if "device wait timed out" in str(r["message"])
                 and "bb-never-logged" in str(r["message"])]
    assert len(timed_out) == 1 and timed_out[0]["priority"] == 5


@needs_root
def test_wait_returns_when_a_veth_appears(client: Client,
                                          veth_names: tuple[str, str]) -> None:
    serial = client.call_async(SERVICE, PATH, IFACE, "WaitForDevice", "a{ss}u",
                               ({"SUBSYSTEM": "net", "INTERFACE": veth_names[1]}, 20000))
    time.sleep(0.2)  # the call is pending in the daemon before the device exists
    assert not any(msg.reply_serial == serial for msg in client.queue)
    started = time.monotonic()
    add_veth(veth_names)
    reply = client.wait_reply(serial, timeout=CALL_TIMEOUT)
    assert reply.type == m.METHOD_RETURN, reply.args()
    subsystem, sysname, devpath, props = reply.args()
    assert (subsystem, sysname) == ("net", veth_names[1])
    assert devpath.endswith("/net/" + veth_names[1])
    assert props["INTERFACE"] == veth_names[1]
    assert time.monotonic() - started < 5.0


@needs_root
def test_match_rule_subscriber_sees_device_added_and_removed(
        daemon: Daemon, veth_names: tuple[str, str]) -> None:
    with Client(daemon.address) as sub:
        # no sender='org.bootbus' in the rule: the router matches bus-emitted signals
        # as sent by org.freedesktop.DBus (reported to the lead)
        sub.add_match(f"type='signal',interface='{IFACE}'")
        add_veth(veth_names)
        subprocess.run(["ip", "link", "del", veth_names[0]], check=True)
        seen: list[tuple[str, str]] = []
        for msg in sub.messages(timeout=EVENT_TIMEOUT):
            if msg.type != m.SIGNAL or msg.interface != IFACE:
                continue
            subsystem, sysname, devpath, action, props = msg.args()
            assert msg.path == PATH and msg.sender == SERVICE
            assert props["DEVPATH"] == devpath and props["SUBSYSTEM"] == subsystem
            if sysname == veth_names[0]:
                seen.append((msg.member or "", action))
            if ("DeviceRemoved", "remove") in seen:
                break
        assert seen[0] == ("DeviceAdded", "add")
        assert seen[-1] == ("DeviceRemoved", "remove")


@needs_root
@pytest.mark.skipif(shutil.which("dbus-monitor") is None, reason="dbus-monitor not installed")
def test_dbus_monitor_sees_device_added(daemon: Daemon, veth_names: tuple[str, str]) -> None:
    proc = subprocess.Popen(
        ["dbus-monitor", "--address", daemon.address, f"type='signal',interface='{IFACE}'"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    lines = LineReader(proc.stdout.fileno())
    try:
        # dbus-monitor prints the NameAcquired of its Hello, then becomes a monitor,
        # which drops its unique name: wait for that before making the device
        lines.wait_for("member=NameAcquired")
        unique = lines.wait_for('string ":').split('"')[1]
        wait_until_gone(daemon, unique)
        add_veth(veth_names)
        header = lines.wait_for("member=DeviceAdded")
        assert f"path={PATH}" in header and f"interface={IFACE}" in header
        lines.wait_for(f'string "{veth_names[0]}"')
    finally:
        proc.terminate()
        proc.wait(5)
        proc.stdout.close()


def wait_until_gone(daemon: Daemon, unique: str) -> None:
    with Client(daemon.address) as c:
        deadline = time.monotonic() + EVENT_TIMEOUT
        while c.call(BUS, BUS_PATH, BUS, "NameHasOwner", "s", (unique,))[0]:
            assert time.monotonic() < deadline, f"{unique} never became a monitor"
            time.sleep(0.05)


class LineReader:
    """Lines of a pipe, with a deadline (select on a buffered file would miss lines)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""

    def wait_for(self, needle: str) -> str:
        deadline = time.monotonic() + EVENT_TIMEOUT
        while True:
            while b"\n" in self.buf:
                raw, self.buf = self.buf.split(b"\n", 1)
                line = raw.decode(errors="replace")
                if needle in line:
                    return line
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(0.0, left))
            chunk = os.read(self.fd, 65536) if ready else b""
            if not chunk:
                raise AssertionError(f"dbus-monitor never printed {needle!r}")
            self.buf += chunk


# -- in-process: from the kernel's events to udevd's -------------------------------------


class FakeDevice:
    """What Devices reads of a pyudev device."""

    def __init__(self, action: str, props: dict[str, str]) -> None:
        self.action = action
        self.subsystem = props["SUBSYSTEM"]
        self.device_path = props["DEVPATH"]
        self.sys_name = self.device_path.rsplit("/", 1)[-1]
        self.properties = props


class FakeMonitor:
    """A netlink monitor: a pipe that is readable while events are queued."""

    def __init__(self) -> None:
        self.rfd, self.wfd = os.pipe()
        self.queued: list[FakeDevice] = []

    def start(self) -> None:
        pass

    def fileno(self) -> int:
        return self.rfd

    def push(self, device: FakeDevice) -> None:
        self.queued.append(device)
        os.write(self.wfd, b"\0")

    def poll(self, timeout: float = 0) -> FakeDevice | None:
        if not self.queued:
            return None
        os.read(self.rfd, 1)
        return self.queued.pop(0)

    def close(self) -> None:
        os.close(self.rfd)
        os.close(self.wfd)


FAKE = {"SUBSYSTEM": "block", "DEVPATH": "/devices/virtual/block/bbfake0",
       "DEVNAME": "/dev/bbfake0", "DEVTYPE": "disk"}
FAKE_UDEV = {**FAKE, "ID_FS_UUID": "bbfake-0b5e", "ID_FS_UUID_ENC": "bbfake-0b5e",
            "DEVLINKS": "/dev/disk/by-path/bbfake-path /dev/disk/by-uuid/bbfake-0b5e"}


def test_the_monitor_follows_udevd_from_its_first_event() -> None:
    bus = new_bus()
    server = Server(bus, [])
    kernel, udev = FakeMonitor(), FakeMonitor()
    logged: list[str] = []
    devices = Devices(bus, server, lambda _p, text, **_f: logged.append(text),
                      monitor=kernel, source="kernel", udev_monitor=udev)
    bus.services[SERVICE] = devices.handle
    try:
        assert {kernel.rfd, udev.rfd} <= server.extra.keys()
        waiter = connect(bus)
        by_uuid = waiter.call(SERVICE, "WaitForDevice", "a{ss}u",
                              ({"DEVLINKS": "/dev/disk/by-uuid/bbfake-0b5e"}, 60000),
                              interface=IFACE, path=PATH)
        by_name = waiter.call(SERVICE, "WaitForDevice", "a{ss}u",
                              ({"DEVNAME": "/dev/bbfake0"}, 60000), interface=IFACE, path=PATH)
        kernel.push(FakeDevice("add", FAKE))  # udevd not running yet: the kernel's event
        server.extra[kernel.rfd](0)
        assert waiter.reply_to(by_name).args()[2] == FAKE["DEVPATH"]
        assert devices.source == "kernel" and len(devices.waiters) == 1  # no links yet

        kernel.push(FakeDevice("add", {**FAKE, "SEQNUM": "7"}))  # read before the switch
        udev.push(FakeDevice("add", FAKE_UDEV))  # udevd's first event
        server.extra[udev.rfd](0)
        assert devices.source == "udev" and devices.monitor is udev
        assert kernel.rfd not in server.extra and server.extra[udev.rfd] == devices._readable
        assert kernel.queued == []  # the queued kernel event was handled, not dropped
        assert waiter.reply_to(by_uuid).args()[2] == FAKE["DEVPATH"]
        assert devices.waiters == []
        assert any("follows udev's events" in text for text in logged), logged
        answered = [text for text in logged if "device wait answered from the event" in text]
        assert len(answered) == 2, logged
    finally:
        devices.close()
        kernel.close()
        udev.close()
