"""After every attack on the shared daemon: it is alive, serves its witness,
and holds no more memory or fds than after its warm-up.

conftest.py moves this test to the end of the session, whatever the order of
the files, so it sees what the whole suite left behind.
"""

from __future__ import annotations

from .conftest import RSS_TOLERANCE_KIB, SharedDaemon, Target

# The whole suite may leave a little more than one attack: each test may
# leave up to RSS_TOLERANCE_KIB, but growth that adds up is a leak.
SUITE_RSS_TOLERANCE_KIB = 2 * RSS_TOLERANCE_KIB


def test_suite_leaves_daemon_at_baseline(shared_daemon: SharedDaemon) -> None:
    target = Target(shared_daemon.bus, shared_daemon.witness, shared_daemon.baseline)
    now = target.assert_recovered(SUITE_RSS_TOLERANCE_KIB)
    print(f"suite: baseline {shared_daemon.baseline}, now {now}")
