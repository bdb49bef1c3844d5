"""Twenty live re-execs under steady load: nothing lost, nothing changes, memory flat.

Calls with replies and broadcast signals run in threads the whole time (see
load.py; every message carries a sequence number checked on arrival), while
the test asks the bus to re-execute itself 20 times. Between two re-execs it
waits until every caller and every subscriber made progress, so each re-exec
happens with traffic in flight. After each one: the same PID, bus id and
unique names, the generation one higher, the same number of open fds, and
the daemon's VmRSS.
"""

from __future__ import annotations

import re

import pytest

from . import harness
from .load import ECHO_NAME, Load

REEXECS = 20
PROGRESS_CALLS = 30  # calls each caller completes between two re-execs
PROGRESS_TICKS = 60  # ticks each subscriber sees from each emitter between two re-execs
PROGRESS_TIMEOUT_S = 20.0
# VmRSS of the re-executed images may differ by allocator noise and by the
# messages queued at that moment; a leak carried from image to image would
# grow it every time. Bound: every image within 2 MiB of the median image.
RSS_TOLERANCE_KIB = 2048


@pytest.mark.timeout(90)
def test_twenty_reexecs_under_load() -> None:
    with harness.running() as daemon, daemon.client() as control:
        (bus_id,) = control.call(harness.DBUS, harness.DBUS_PATH, harness.DBUS, "GetId")
        # the cold start's device enumeration thread has ended: every re-exec has a twin
        daemon.wait_log("devices enumerated")
        load = Load(daemon.address)
        try:
            load.start()
            # the first image enumerates devices in a background thread once it serves; a
            # re-exec while that runs cannot use the twin (threads do not survive fork)
            if "device monitor listening" in daemon.wait_log("device monitor"):
                daemon.wait_log("devices enumerated")
            rss: list[int] = []
            fd_counts: list[int] = []
            for number in range(REEXECS):
                calls, ticks = load.progress()
                load.wait_progress(calls + PROGRESS_CALLS, ticks + PROGRESS_TICKS,
                                   PROGRESS_TIMEOUT_S)
                assert not load.tally.failures, load.tally.failures[:5]
                assert daemon.supervisor("Reexec", client=control) == []
                status = daemon.status(control)
                assert status["Generation"] == number + 2
                assert status["PID"] == daemon.pid
                assert status["BusId"] == bus_id
                assert control.call(harness.DBUS, harness.DBUS_PATH, harness.DBUS,
                                    "GetId") == [bus_id]
                (names,) = control.call(harness.DBUS, harness.DBUS_PATH, harness.DBUS,
                                        "ListNames")
                assert set(load.names.values()) | {control.unique_name} <= set(names)
                assert control.call(harness.DBUS, harness.DBUS_PATH, harness.DBUS,
                                    "GetNameOwner", "s", (ECHO_NAME,)) == [
                                        load.names["service0"]]
                if "device monitor listening" in daemon.log():
                    # each image enumerates devices in a background thread once it serves;
                    # measure when that has finished, not its transient pipe and fds
                    daemon.wait_log("devices re-enumerated after the re-exec", number + 1)
                rss.append(harness.vm_rss_kib(daemon.pid))
                fd_counts.append(len(harness.open_fds(daemon.pid)))
            calls, ticks = load.progress()
            load.wait_progress(calls + PROGRESS_CALLS, ticks + PROGRESS_TICKS,
                               PROGRESS_TIMEOUT_S)
            load.finish()
        finally:
            load.stop.set()
            load.close()
        tally = load.tally
        assert not tally.failures, tally.failures[:10]
        # every call answered: each caller's replies were checked in order as they came
        assert sum(tally.calls_answered.values()) == tally.calls_served
        assert min(tally.calls_answered.values()) >= (REEXECS + 1) * PROGRESS_CALLS
        # every tick seen exactly once by every subscriber, in order (checked on arrival)
        for (_subscriber, emitter), seen in tally.ticks_seen.items():
            assert seen == tally.ticks_sent[emitter]
        log = daemon.wait_log("restored generation", REEXECS)
        assert f"restored generation {REEXECS + 1} " in log
        assert "re-exec aborted" not in log
        # the re-execs happened with calls in flight: forwarded, reply not yet routed
        # each time a twin served while the new image started, then handed the bus over
        pending = [int(n) for n in re.findall(r"handing over: .*, (\d+) pending replies", log)]
        assert len(pending) == REEXECS and sum(pending) > 0, pending
        assert "re-executing: " not in log  # the direct exec is only the fallback
        median = sorted(rss)[len(rss) // 2]
        assert max(rss) - median <= RSS_TOLERANCE_KIB, rss
        assert median - min(rss) <= RSS_TOLERANCE_KIB, rss
        assert len(set(fd_counts)) == 1, fd_counts
        print(f"VmRSS after each re-exec (KiB): {rss}; fds {fd_counts[0]}; "
              f"calls {tally.calls_served}; ticks {dict(tally.ticks_sent)}; "
              f"pending replies at each exec {pending}")
