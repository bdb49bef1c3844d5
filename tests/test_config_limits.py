"""A configuration's <limit>s become the bus's bounds (bootbus.io.policyload).

Only limits a file sets are applied (the rest keep bootbus's defaults); units
are converted, the specification's maxima are not exceeded, a raised
per-connection bound lifts the per-user one, limits bootbus has no mechanism
for are warned about once, and a reload applies the new file's limits or,
when it fails, keeps the old ones.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from bootbus.bus import quota
from bootbus.bus.router import Bus
from bootbus.io.busconfig import load_config
from bootbus.io.policyload import ConfigManager, limits_from_config
from bootbus.wire.limits import MAX_MESSAGE_SIZE

HEAD = """<busconfig>
  <listen>unix:path=/run/test</listen>
  <policy context="default"><allow user="*"/></policy>
"""


def write(path: Path, limits: dict[str, str], extra: str = "") -> Path:
    body = "".join(f'  <limit name="{k}">{v}</limit>\n' for k, v in limits.items())
    path.write_text(HEAD + body + textwrap.dedent(extra) + "</busconfig>\n")
    return path


def test_only_the_limits_a_file_sets_are_applied(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path / "bus.conf", {
        "max_match_rules_per_connection": "7", "auth_timeout": "1500"})))
    assert config.explicit_limits == {"max_match_rules_per_connection", "auth_timeout"}
    limits, not_applied = limits_from_config(config.limits, config.explicit_limits)
    assert (limits.max_match_rules, limits.auth_timeout) == (7, 1.5)
    assert not_applied == {}
    # dbus-daemon's defaults for the rest (512 names, 128 replies...) are not imposed
    assert limits.max_names == quota.MAX_NAMES_PER_PEER
    assert limits.max_replies == quota.MAX_PENDING_REPLIES_PER_PEER
    assert limits.max_connections_per_user == quota.MAX_CONNECTIONS_PER_USER


def test_every_applied_limit_reaches_its_bound() -> None:
    values = {"max_outgoing_bytes": 1000, "max_outgoing_unix_fds": 9,
              "max_match_rules_per_connection": 8, "max_names_per_connection": 7,
              "max_replies_per_connection": 6, "max_message_size": 4096,
              "max_message_unix_fds": 5, "max_connections_per_user": 4,
              "max_incomplete_connections": 3, "auth_timeout": 2000,
              "service_start_timeout": 60000, "max_pending_service_starts": 2}
    limits, not_applied = limits_from_config(values, values)
    assert not_applied == {}
    assert limits.as_dict() == {
        **quota.Limits().as_dict(),
        "max_outgoing_bytes": 1000, "max_outgoing_fds": 9, "max_match_rules": 8,
        "max_names": 7, "max_replies": 6, "max_message_size": 4096, "max_message_fds": 5,
        "max_connections_per_user": 4, "max_incomplete_connections": 3,
        "auth_timeout": 2.0, "activation_timeout": 60.0, "max_pending_activations": 2}


def test_raised_connection_bounds_lift_the_user_bounds_and_maxima_hold() -> None:
    # session.conf's values
    values = {"max_match_rules_per_connection": 50000, "max_outgoing_bytes": 1_000_000_000,
              "max_message_size": 1_000_000_000, "max_replies_per_connection": 50000}
    limits, not_applied = limits_from_config(values, values)
    assert limits.max_match_rules == limits.max_match_rules_per_user == 50000
    assert limits.max_replies_per_user == 50000
    assert limits.max_outgoing_bytes_per_user == 1_000_000_000
    assert limits.max_message_size == MAX_MESSAGE_SIZE
    assert "max_message_size" in not_applied
    assert limits.max_names_per_user == quota.MAX_NAMES_PER_USER  # not raised: unchanged


def test_limits_without_a_mechanism_are_reported() -> None:
    values = {"reply_timeout": 5000, "pending_fd_timeout": 1000, "max_incoming_bytes": 10,
              "max_completed_connections": 10, "max_containers": 1}
    limits, not_applied = limits_from_config(values, values)
    assert set(not_applied) == set(values)
    assert "reply timeout" in not_applied["reply_timeout"]
    assert limits.as_dict() == quota.Limits().as_dict()


def test_an_included_file_sets_limits_and_a_skipped_one_does_not(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    write(tmp_path / "d" / "a.conf", {"max_names_per_connection": "3"})
    (tmp_path / "d" / "b.conf").write_text(
        '<busconfig><limit name="max_replies_per_connection">2</limit><bogus</busconfig>')
    conf = write(tmp_path / "bus.conf", {}, extra=f"<includedir>{tmp_path}/d</includedir>\n")
    config = load_config(str(conf))
    assert config.explicit_limits == {"max_names_per_connection"}
    assert config.limits["max_names_per_connection"] == 3


class Logged:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, priority: int, text: str, **fields: Any) -> None:
        self.lines.append(text)


def test_reload_applies_new_limits_and_warns_once(tmp_path: Path) -> None:
    conf = write(tmp_path / "bus.conf", {"max_match_rules_per_connection": "5",
                                         "reply_timeout": "1000"})
    bus = Bus(bus_id="0" * 32)
    log = Logged()
    manager = ConfigManager(str(conf), bus, log)
    assert bus.limits.max_match_rules == 5
    peer = bus.add_peer(uid=1000, pid=1)
    assert peer.framer.max_size == MAX_MESSAGE_SIZE
    write(conf, {"max_match_rules_per_connection": "9", "reply_timeout": "1000",
                 "max_message_size": "65536"})
    assert manager.reload() is None
    assert bus.limits.max_match_rules == 9
    assert peer.framer.max_size == 65536  # an existing connection's next message
    write(conf, {"reply_timeout": "1000"})  # the limit removed: back to the default
    assert manager.reload() is None
    assert bus.limits.max_match_rules == quota.MAX_MATCH_RULES_PER_PEER
    assert sum("reply_timeout" in line for line in log.lines) == 1
    conf.write_text("<busconfig><limit name='max_match_rules_per_connection'>x</limit>")
    assert manager.reload() is not None  # a file that does not load keeps the old bounds
    assert bus.limits.max_match_rules == quota.MAX_MATCH_RULES_PER_PEER
