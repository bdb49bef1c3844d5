"""org.bootbus.Supervisor1's ListConnections, ListMatches and GetStatus' RuntimeDir,
through bootbusctl as an operator runs it (a process, ``python3 -m bootbus.ctl``).

One daemon for the module (tests/reexec/harness.py starts it with
``--runtime-dir TMP/rt`` and the socket outside it, so RuntimeDir is the only way
bootbusctl can learn where the daemon keeps its files). Peers are real
clients: one owns a name and adds a rule twice, one only queues for the name,
one never reads, so that its output queue fills up for real.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bootbus.client import BUS, BUS_PATH, Client
from bootbus.wire import message as m
from tests.reexec import harness

PYTHON = "/usr/bin/python3"
NAME = "org.example.SupervisorMethods"
RULE = "type='signal',interface='org.example.SupervisorMethods'"
RULE2 = "type='signal',member='Other'"
FLOOD_BYTES = 4 * 1024 * 1024  # well beyond any socket buffer: the rest must queue
FLOOD_CHUNK = 64 * 1024
CTL_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def daemon() -> Iterator[harness.Daemon]:
    with harness.running() as d:
        yield d


def ctl(daemon: harness.Daemon, *args: str) -> Any:
    result = subprocess.run([PYTHON, "-m", "bootbus.ctl", "--address", daemon.address, *args],
                            cwd=harness.REPO, capture_output=True, text=True,
                            timeout=CTL_TIMEOUT, check=False)
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout)


def request_name(client: Client, name: str) -> int:
    (code,) = client.call(BUS, BUS_PATH, BUS, "RequestName", "su", (name, 0), timeout=5)
    return int(code)


def test_connections_and_matches(daemon: harness.Daemon) -> None:
    with Client(daemon.address) as owner, Client(daemon.address) as queued:
        assert request_name(owner, NAME) == 1
        assert request_name(queued, NAME) == 2  # in the queue, not the primary owner
        owner.add_match(RULE)
        owner.add_match(RULE2)
        owner.add_match(RULE)  # counted twice, as D-Bus counts it
        rows = {r["unique_name"]: r for r in ctl(daemon, "connections", "--json")["connections"]}
        mine = rows[owner.unique_name]
        assert (mine["pid"], mine["uid"], mine["names"]) == (os.getpid(), os.geteuid(), [NAME])
        assert mine["match_count"] == 3 and mine["queued_bytes"] == 0
        other = rows[queued.unique_name]
        assert other["names"] == [] and other["match_count"] == 0
        rules = {r["unique_name"]: r["rules"] for r in ctl(daemon, "matches", "--json")["matches"]}
        assert rules[owner.unique_name] == [RULE, RULE2, RULE]
        assert queued.unique_name not in rules


def test_list_connections_is_in_peer_order_and_raw(daemon: harness.Daemon) -> None:
    with Client(daemon.address) as first, Client(daemon.address) as second:
        (rows,) = daemon.supervisor("ListConnections", client=first, timeout=5)
        uniques = [r[0] for r in rows]
        assert uniques.index(first.unique_name) < uniques.index(second.unique_name)
        assert all(u.startswith(":") for u in uniques)
        with pytest.raises(Exception, match="InvalidArgs"):
            daemon.supervisor("ListMatches", "s", ("x",), client=first, timeout=5)


def test_queued_bytes_of_a_peer_that_does_not_read(daemon: harness.Daemon) -> None:
    with Client(daemon.address) as sleeper, Client(daemon.address) as sender:
        payload = "x" * FLOOD_CHUNK
        sent = 0
        sender.sock.setblocking(True)
        while sent < FLOOD_BYTES:
            sender.send(m.build(m.METHOD_CALL, sender.next_serial(), path="/x",
                                interface="org.example.Flood", member="Fill",
                                destination=sleeper.unique_name, signature="s",
                                args=(payload,), flags=m.FLAG_NO_REPLY_EXPECTED))
            sent += FLOOD_CHUNK
        sender.call(BUS, BUS_PATH, "org.freedesktop.DBus.Peer", "Ping", timeout=10)
        buffered = sleeper.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        row = _row(daemon, sleeper.unique_name)
        # what the kernel holds is at most both socket buffers; the bus queues the rest
        assert row["queued_bytes"] >= FLOOD_BYTES - 4 * buffered, row
        status = ctl(daemon, "status", "--json")
        assert status["queued_bytes"] >= row["queued_bytes"], status
        for _ in range(3):  # drained once the peer reads
            try:
                sleeper.sock.settimeout(0.2)
                while sleeper.sock.recv(1 << 20):
                    pass
            except (TimeoutError, BlockingIOError):
                pass
            if _row(daemon, sleeper.unique_name)["queued_bytes"] == 0:
                break
            time.sleep(0.1)
        assert _row(daemon, sleeper.unique_name)["queued_bytes"] == 0


def _row(daemon: harness.Daemon, unique: str) -> dict[str, Any]:
    rows = ctl(daemon, "connections", "--json")["connections"]
    return next(r for r in rows if r["unique_name"] == unique)


def test_status_names_the_runtime_dir(daemon: harness.Daemon) -> None:
    assert daemon.status()["RuntimeDir"] == str(daemon.tmpdir / "rt")
    with Client(daemon.address) as client:
        (xml,) = client.call(harness.SERVICE, harness.PATH,
                             "org.freedesktop.DBus.Introspectable", "Introspect", timeout=5)
    assert '<method name="ListConnections"><arg name="connections" direction="out" ' \
           'type="a(suuasuu)"/></method>' in xml
    assert 'type="a(ss)"' in xml
