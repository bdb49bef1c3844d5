"""Fixtures of the integration ring: a fresh bus per test, and peers on it.

The `bus` fixture is parametrized over the buses under test. It owns the
daemon's lifetime: a daemon that died during the test, or that does not stop
on SIGTERM, fails the test at teardown. Every test here also gets a timeout,
so a hung daemon or client can never hang the suite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .buses import Bus, selected_bus_kinds, start_bus, stop_bus
from .peers import Peer

# Seconds a single integration test may take before pytest-timeout fails it.
TEST_TIMEOUT_S = 30
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(TEST_TIMEOUT_S))
            item.add_marker(pytest.mark.reference)


@pytest.fixture(params=selected_bus_kinds())
def bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    """A fresh daemon of one kind, private to this test."""
    running = start_bus(request.param)
    yield running
    stop_bus(running)  # fails the test if the daemon died during it


@pytest.fixture
def connect(bus: Bus) -> Iterator[Callable[..., Peer]]:
    """Open jeepney peers on the bus; all are closed at teardown."""
    opened: list[Peer] = []

    def _connect(*, enable_fds: bool = False) -> Peer:
        peer = Peer(bus.address, enable_fds=enable_fds)
        opened.append(peer)
        return peer

    yield _connect
    for peer in opened:
        peer.close()
