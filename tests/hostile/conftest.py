"""Fixtures of the hostile suite: one daemon shared by the suite, fresh ones
where isolation matters, the witness, and the memory and fd baselines.

The shared daemon is started once, warmed up with the same kinds of traffic
the attacks use (so lazily built caches and free lists are in the baseline,
not counted as growth), and its footprint (VmRSS and open fds) is recorded.
Every test asserts that its attack left the daemon within a stated tolerance
of the footprint it had before; the last test of the session
(`test_suite_leaves_daemon_at_baseline`, moved to the end here) asserts the
whole suite did too.

It must never share a daemon with the integration ring, never run a test
without a timeout, and never leave a daemon running: a daemon that died or
logged a traceback fails the test (or the suite) that owned it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from integration import rawwire as rw
from integration.buses import Bus, start_bus, stop_bus

from .peers import assert_served_promptly, registered
from .procstat import Footprint, settle

# Seconds a single hostile test may take before pytest-timeout fails it.
TEST_TIMEOUT_S = 60
HERE = Path(__file__).resolve().parent
FINAL_TEST = "test_suite_leaves_daemon_at_baseline"
# Growth of VmRSS a small attack may leave behind: Python's allocator keeps
# some partly used pools, so exact equality would be a flaky test, but a leak
# of even one peer per attack connection shows up well above this.
RSS_TOLERANCE_KIB = 1024
# What a second, identical big attack may add to the footprint the first one
# left (the allocator keeps its high-water mark, which is reused, not leaked:
# e.g. 2048 peers leave ~4 MiB after the first flood and nothing after the next).
REPEAT_RSS_TOLERANCE_KIB = 1024
# Rounds of warm-up traffic, and cheap calls afterwards so the collector runs.
WARMUP_ROUNDS = 30
NUDGE_CALLS = 20


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mine = [i for i in items if HERE in Path(str(i.fspath)).resolve().parents]
    for item in mine:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT_S))
        if os.getuid() != 0:
            item.add_marker(pytest.mark.skip(
                reason="the hostile suite attacks as other uids (setuid), so it needs root"))
    final = [i for i in items if i.name == FINAL_TEST]
    for item in final:
        items.remove(item)
        items.append(item)


def open_to_all_users(bus: Bus) -> None:
    """Let other uids reach the socket (mkdtemp makes the directory 0700)."""
    os.chmod(bus.tmpdir, 0o711)


def warm_up(bus: Bus) -> None:
    """Traffic of every kind the attacks cause, at small scale, so the baseline is fair."""
    for i in range(WARMUP_ROUNDS):
        with registered(bus) as peer:
            peer.call("AddMatch", "s", ("type='signal',interface='com.example.Warm'",))
            peer.call("RequestName", "su", (f"com.example.Warm{i % 3}", 0))
            peer.call("ListNames")
            peer.call("Introspect", interface="org.freedesktop.DBus.Introspectable")
            peer.call("Hello")  # an error reply
            peer.send(rw.build_message(rw.SIGNAL, peer.next_serial(), {
                rw.PATH: "/w", rw.INTERFACE: "com.example.Warm", rw.MEMBER: "S",
                rw.SIGNATURE: "s"}, rw.marshal_body("s", ("x" * 2000,))))
            peer.call("GetId")
            peer.send(b"\xde\xad" * 16)  # a protocol error and a disconnect
            try:
                peer.wait_closed()
            except ConnectionError:
                pass
        with rw.RawPeer(bus.socket_path) as liar:
            liar.auth_external(uid=12345)
        with rw.RawPeer(bus.socket_path) as bad:
            bad.send(b"garbage\r\n")
            try:
                bad.wait_closed()
            except ConnectionError:
                pass


@dataclass
class Target:
    """A daemon under attack, its witness, and the footprint it had before."""

    bus: Bus
    witness: rw.RawPeer
    before: Footprint

    @property
    def pid(self) -> int:
        return self.bus.process.pid

    def nudge(self) -> None:
        for _ in range(NUDGE_CALLS):
            self.witness.call("GetId")

    def rebaseline(self) -> None:
        """Take the current footprint as `before` (after a rehearsal of the attack)."""
        self.nudge()
        self.before = Footprint.of(self.pid)

    def assert_recovered(self, rss_tolerance_kib: int = RSS_TOLERANCE_KIB) -> Footprint:
        """Alive, witness served promptly, memory and fds back near `before`."""
        self.bus.assert_alive()
        assert_served_promptly(self.witness)
        now = settle(self.pid, self.before, rss_tolerance_kib, self.nudge)
        assert now.fds <= self.before.fds, (
            f"the daemon holds {now.fds} fds after the attack, {self.before.fds} before")
        assert now.rss_kib <= self.before.rss_kib + rss_tolerance_kib, (
            f"VmRSS {now.rss_kib} KiB after the attack, {self.before.rss_kib} KiB before "
            f"(tolerance {rss_tolerance_kib} KiB)")
        return now


@dataclass
class SharedDaemon:
    bus: Bus
    witness: rw.RawPeer
    baseline: Footprint


DEVICE_ENUMERATION_WAIT_S = 10.0


def _wait_for_device_enumeration(bus: Bus) -> None:
    """The daemon loads the device monitor shortly after it serves and enumerates in a
    background thread; the baseline is taken after that (or after it found no usable
    monitor), or the monitor's fd and the thread's memory would count as an attack's."""
    deadline = time.monotonic() + DEVICE_ENUMERATION_WAIT_S
    while True:
        log = bus.stderr_path.read_text(errors="replace")
        if "devices enumerated:" in log or "no device monitor" in log:
            return
        assert time.monotonic() < deadline, "the daemon did not finish enumerating devices"
        time.sleep(0.02)


def _start_warm() -> tuple[Bus, rw.RawPeer, Footprint]:
    bus = start_bus("bootbus")
    try:
        open_to_all_users(bus)
        _wait_for_device_enumeration(bus)
        witness = registered(bus)
        warm_up(bus)
        target = Target(bus, witness, Footprint.of(bus.process.pid))
        target.nudge()
        return bus, witness, Footprint.of(bus.process.pid)
    except BaseException:
        stop_bus(bus, check=False)  # never leave a daemon behind a failed start
        raise


@pytest.fixture(scope="session")
def shared_daemon() -> Iterator[SharedDaemon]:
    """The suite's daemon, warmed up, with its witness connected before any attack."""
    bus, witness, baseline = _start_warm()
    yield SharedDaemon(bus, witness, baseline)
    witness.close()
    stop_bus(bus)  # fails the suite if the daemon died or logged a traceback


@pytest.fixture
def target(shared_daemon: SharedDaemon) -> Target:
    """The shared daemon, with its footprint at the start of this test."""
    shared_daemon.bus.assert_alive()
    t = Target(shared_daemon.bus, shared_daemon.witness, Footprint(0, 0))
    t.nudge()
    t.before = Footprint.of(t.pid)
    return t


@pytest.fixture
def fresh_target() -> Iterator[Target]:
    """A daemon of this test's own (for attacks on per-user counters or big queues)."""
    bus, witness, baseline = _start_warm()
    try:
        yield Target(bus, witness, baseline)
    finally:
        witness.close()
        stop_bus(bus)
