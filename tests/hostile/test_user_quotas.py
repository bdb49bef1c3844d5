"""Per-user quotas end to end, and a configuration's <limit>s on a running daemon.

One user (uid 65534) spreads match rules over several connections, each
within the per-connection bound, until its connections together reach the
per-user bound: its next AddMatch is refused with LimitsExceeded while a
third user adds rules as usual. A daemon started with a configuration that
sets <limit>s enforces them, warns once about one it has no mechanism for,
and applies new values on ReloadConfig.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from integration import rawwire as rw
from integration.buses import Bus, start_bus, stop_bus

from .conftest import Target, open_to_all_users
from .peers import NOBODY, THIRD_UID, ForeignUser, registered
from .test_floods import closed_by_peer

# bootbus's bounds (bootbus/bus/quota.py), restated so that a change to them is a
# visible change to this test.
MAX_MATCH_RULES_PER_PEER = 4096
MAX_MATCH_RULES_PER_USER = 16384
FILLING_CONNECTIONS = MAX_MATCH_RULES_PER_USER // MAX_MATCH_RULES_PER_PEER
BYSTANDER_RULES = 100
LIMITS_EXCEEDED = "org.freedesktop.DBus.Error.LimitsExceeded"
# What 16,384 match rules (and their pipelined AddMatch calls) leave in the daemon
# once they are gone: measured +10.4 MiB after the first episode, a one-off
# high-water mark of Python's allocator; the repeat must stay within the suite's
# default tolerance (1 MiB), or it is a leak.
RULES_RSS_TOLERANCE_KIB = 16 * 1024


def add_matches(peer: rw.RawPeer, rules: list[str]) -> list[str | None]:
    """AddMatch each rule, pipelined; the error name of each answer (None: accepted)."""
    serials = []
    batch = b""
    for rule in rules:
        serial = peer.next_serial()
        serials.append(serial)
        batch += rw.method_call(serial, "AddMatch", "s", (rule,))
    peer.send(batch)
    answers = []
    for serial in serials:
        reply = peer.read_reply(serial)
        answers.append(reply.error_name if reply.msg_type == rw.ERROR else None)
    return answers


def connect_at(path: str) -> rw.RawPeer:
    peer = rw.RawPeer(path, timeout=30.0)
    peer.authenticate()
    peer.hello()
    return peer


def fill_user_rules(path: str) -> Callable[[Callable[[dict[str, Any]], None]], None]:
    """Reach the per-user bound with connections each at most at the per-connection bound."""
    def run(report: Callable[[dict[str, Any]], None]) -> None:
        peers = [connect_at(path) for _ in range(FILLING_CONNECTIONS + 1)]
        refused = 0
        for n, peer in enumerate(peers[:-1]):
            answers = add_matches(peer, [f"type='signal',interface='com.example.Q{n}.I{i}'"
                                         for i in range(MAX_MATCH_RULES_PER_PEER)])
            refused += sum(a is not None for a in answers)
        over = peers[-1].call("AddMatch", "s", ("type='signal',interface='com.example.Over'",))
        report({"refused_while_filling": refused, "over": over.error_name,
                "text": over.args()[0] if over.msg_type == rw.ERROR else ""})
        for peer in peers:
            peer.close()
    return run


def bystander_rules(path: str) -> Callable[[Callable[[dict[str, Any]], None]], None]:
    def run(report: Callable[[dict[str, Any]], None]) -> None:
        with connect_at(path) as peer:
            answers = add_matches(peer, [f"type='signal',interface='com.example.B{i}'"
                                         for i in range(BYSTANDER_RULES)])
            report({"accepted": sum(a is None for a in answers)})
    return run


def user_rules_episode(target: Target) -> None:
    with ForeignUser(NOBODY, fill_user_rules(target.bus.socket_path)) as filler:
        got = filler.wait_report()
        assert got["refused_while_filling"] == 0, got
        assert got["over"] == LIMITS_EXCEEDED, got
        assert f"max_match_rules_per_user={MAX_MATCH_RULES_PER_USER}" in got["text"], got
        with ForeignUser(THIRD_UID, bystander_rules(target.bus.socket_path)) as third:
            assert third.wait_report() == {"accepted": BYSTANDER_RULES}
        # root is exempt from the per-user bounds, as from the connection quotas
        assert target.witness.call("AddMatch", "s", ("interface='com.example.Root'",)
                                   ).msg_type == rw.METHOD_RETURN
        target.witness.call("RemoveMatch", "s", ("interface='com.example.Root'",))


def test_one_users_match_rules_over_its_connections_are_bounded(fresh_target: Target) -> None:
    fresh_target.bus.assert_alive()
    user_rules_episode(fresh_target)
    fresh_target.assert_recovered(RULES_RSS_TOLERANCE_KIB)
    fresh_target.rebaseline()
    user_rules_episode(fresh_target)  # the sums went back to zero: the same again
    fresh_target.assert_recovered()


# -- a configuration's <limit>s ----------------------------------------------------------

CONFIG = """<busconfig>
  <listen>unix:tmpdir=/tmp</listen>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
  </policy>
  <limit name="max_names_per_connection">2</limit>
  <limit name="max_connections_per_user">3</limit>
  <limit name="reply_timeout">5000</limit>
  {rules}
</busconfig>
"""
RULES = '<limit name="max_match_rules_per_connection">{n}</limit>'


@pytest.fixture
def configured() -> Iterator[tuple[Bus, Path]]:
    with tempfile.TemporaryDirectory(prefix="bb-limits-") as tmp:
        conf = Path(tmp) / "bus.conf"
        conf.write_text(CONFIG.format(rules=RULES.format(n=5)))
        bus = start_bus("bootbus", ("--config", str(conf)))
        try:
            open_to_all_users(bus)
            yield bus, conf
        finally:
            stop_bus(bus)


def rules_accepted(bus: Bus, count: int) -> list[str | None]:
    with registered(bus) as peer:
        return add_matches(peer, [f"interface='com.example.C{i}'" for i in range(count)])


def user_connections(path: str) -> Callable[[Callable[[dict[str, Any]], None]], None]:
    def run(report: Callable[[dict[str, Any]], None]) -> None:
        peers = [connect_at(path) for _ in range(3)]
        extra = rw.RawPeer(path)
        try:
            extra.authenticate()
            extra.hello()
            refused = False
        except (ConnectionError, OSError, ValueError):
            refused = True
        report({"refused": refused or closed_by_peer(extra.sock)})
        for peer in peers:
            peer.close()
        extra.close()
    return run


def test_a_configurations_limits_are_enforced_and_reloaded(configured: tuple[Bus, Path]
                                                          ) -> None:
    bus, conf = configured
    assert rules_accepted(bus, 6) == [None] * 5 + [LIMITS_EXCEEDED]
    with registered(bus) as peer:
        for name in ("com.example.N1", "com.example.N2"):
            assert peer.call("RequestName", "su", (name, 0)).args() == [1]
        over = peer.call("RequestName", "su", ("com.example.N3", 0))
        assert over.error_name == LIMITS_EXCEEDED
        assert "max_names_per_connection=2" in over.args()[0]
    with ForeignUser(NOBODY, user_connections(bus.socket_path)) as user:
        assert user.wait_report() == {"refused": True}
    conf.write_text(CONFIG.format(rules=RULES.format(n=7)))
    with registered(bus) as admin:
        assert admin.call("ReloadConfig").msg_type == rw.METHOD_RETURN
    assert rules_accepted(bus, 8) == [None] * 7 + [LIMITS_EXCEEDED]
    log = bus.stderr_path.read_text(errors="replace")
    assert log.count('<limit name="reply_timeout"> not applied') == 1, log
    bus.assert_alive()
