"""The server loop's deadlines: timers, the one-shot ``soon`` queue, sleeping.

A Server with no listeners runs in a thread; every test bounds it with a join
timeout, so a loop that sleeps when it should not fails instead of hanging.
"""

from __future__ import annotations

import threading
import time

from bootbus.bus.router import Bus
from bootbus.io.server import NEVER, Server

JOIN_TIMEOUT_S = 5.0


def _run(server: Server) -> None:
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    thread.join(JOIN_TIMEOUT_S)
    alive = thread.is_alive()
    if alive:
        server.stop()
    assert not alive, "the loop slept through a deadline"


def test_a_deadline_already_past_does_not_make_the_loop_sleep_forever() -> None:
    server = Server(Bus(bus_id="0" * 32), [])
    past = time.monotonic() - 1.0
    calls = []

    def callback() -> None:  # leaves its deadline in the past on the first call
        calls.append(1)
        if len(calls) == 2:
            server.stop()

    server.add_timer(lambda: past, callback)
    _run(server)
    assert len(calls) == 2


def test_a_timer_added_to_an_idle_loop_is_asked_before_the_next_sleep() -> None:
    server = Server(Bus(bus_id="0" * 32), [])
    server._when_due(time.monotonic())
    assert server._timers_due == NEVER  # nothing at all to wake up for
    due = time.monotonic() + 0.05
    server.add_timer(lambda: due, lambda: server.stop() if time.monotonic() >= due else None)
    _run(server)


def test_soon_runs_once_in_settle_and_what_it_queues_runs_too() -> None:
    server = Server(Bus(bus_id="0" * 32), [])
    order: list[str] = []
    server.soon.append(lambda: (order.append("first"), server.soon.append(
        lambda: order.append("second"))))
    server.settle()
    assert order == ["first", "second"] and server.soon == []
    server.settle()
    assert order == ["first", "second"]
