"""A cold start loads the device monitor (pyudev) only once the bus serves.

In-process, with the daemon's own pieces: the timer loads it once
DEVICES_LOAD_DELAY has passed, and a Devices1 call that comes earlier loads it
at once and is answered by it, not refused; so does a re-exec asked for earlier.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from bootbus import daemon
from bootbus.bus import driver
from bootbus.bus.peer import Peer
from bootbus.bus.router import Bus
from bootbus.io import devices
from bootbus.io.server import Server
from bootbus.io.services import SERVICE, InterfaceRouter
from bootbus.io.supervisor import Supervisor
from bootbus.wire import message as m


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def parts(tmp_path: object) -> Iterator[tuple[Bus, Server, InterfaceRouter, Supervisor, Clock]]:
    bus = Bus(bus_id="0" * 32, uid=os.geteuid())
    bus.driver = driver.handle
    clock = Clock()
    server = Server(bus, [], clock=clock)
    supervisor = Supervisor(bus, server, [], ["--runtime-dir", str(tmp_path)], phase="root")
    supervisor.install()
    services = InterfaceRouter(bus.services[SERVICE])
    bus.services[SERVICE] = services
    try:
        yield bus, server, services, supervisor, clock
    finally:
        component = supervisor.components.get(devices.COMPONENT)
        if isinstance(component, devices.Devices):
            component.close()
        server.epoll.close()


def _run_timers(server: Server) -> None:
    for _source, callback in list(server.timers):
        callback()


def _active_peer(bus: Bus) -> Peer:
    peer = bus.add_peer(0, os.getpid())
    bus.authenticated(peer, True)
    bus.assign_unique_name(peer)
    peer.outq.clear()
    return peer


def test_the_interface_name_is_the_modules() -> None:
    assert daemon.DEVICES_IFACE == devices.IFACE


def test_the_timer_loads_the_monitor_after_the_delay(parts: tuple) -> None:  # type: ignore[type-arg]
    _bus, server, services, supervisor, clock = parts
    logged: list[str] = []
    daemon._defer_devices(server, services, supervisor,
                          lambda _p, text, **_f: logged.append(text))
    _run_timers(server)
    assert devices.COMPONENT not in supervisor.components  # not due yet
    clock.now += daemon.DEVICES_LOAD_DELAY
    _run_timers(server)
    assert isinstance(supervisor.components[devices.COMPONENT], devices.Devices)
    assert services.interfaces[devices.IFACE] == supervisor.components[devices.COMPONENT].handle
    assert any("device monitor listening" in text for text in logged)
    _run_timers(server)  # once only
    assert sum("device monitor listening" in text for text in logged) == 1


def test_an_early_call_loads_the_monitor_and_is_answered(parts: tuple) -> None:  # type: ignore[type-arg]
    bus, server, services, supervisor, _clock = parts
    daemon._defer_devices(server, services, supervisor, lambda *_a, **_f: None)
    peer = _active_peer(bus)
    devpath = os.path.realpath("/sys/class/net/lo")[len("/sys"):]
    call = m.parse(m.build(m.METHOD_CALL, 7, path=devices.PATH, interface=devices.IFACE,
                           member="GetDevice", destination=SERVICE, sender=peer.unique_name,
                           signature="s", args=(devpath,)))
    services(bus, peer, call)
    assert devices.COMPONENT in supervisor.components
    (frame,) = peer.outq
    reply = m.parse(b"".join(bytes(b) for b in frame.bufs))
    assert reply.type == m.METHOD_RETURN and reply.reply_serial == 7
    assert reply.args()[0]["DEVPATH"] == devpath  # its udev properties


def test_a_reexec_asked_for_early_loads_the_monitor_first(parts: tuple) -> None:  # type: ignore[type-arg]
    """The preflight may finish before the delay: the image must have device state to
    hand over, or devices added during the exec are never signalled."""
    _bus, server, services, supervisor, _clock = parts
    daemon._defer_devices(server, services, supervisor, lambda *_a, **_f: None)
    assert devices.COMPONENT not in supervisor.components
    for hook in supervisor.on_reexec_requested:  # what Supervisor._start runs
        hook()
    assert isinstance(supervisor.components[devices.COMPONENT], devices.Devices)


def test_a_failed_import_is_logged_and_the_bus_serves_on(
        parts: tuple, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[type-arg]
    """A root deleted under us (switch_root) makes the late import fail: log, go on."""
    _bus, server, services, supervisor, clock = parts
    logged: list[tuple[int, str]] = []
    daemon._defer_devices(server, services, supervisor,
                          lambda priority, text, **_f: logged.append((priority, text)))
    monkeypatch.setitem(sys.modules, "bootbus.io.devices", None)  # import raises ImportError
    monkeypatch.delattr("bootbus.io.devices", raising=False)
    clock.now += daemon.DEVICES_LOAD_DELAY
    _run_timers(server)
    assert devices.COMPONENT not in supervisor.components
    assert devices.IFACE not in services.interfaces  # the fallback answers it now
    assert logged and logged[0][0] == 3 and "device monitor not loaded" in logged[0][1]
