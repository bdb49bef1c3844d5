"""How the committed snapshot fixtures were made. The tests never run this.

A fixture is a frozen snapshot of an earlier format: once committed it is
never regenerated, or it would stop being the old format. When the format
version is raised, run this with the *previous* code (``git stash`` the
change, or a worktree of the last release) to commit a fixture of it:

    /usr/bin/python3 tests/data/snapshots/generate.py tests/data/snapshots/v1.1-bus.jsonl
    /usr/bin/python3 tests/data/snapshots/generate.py --as-1.0 tests/data/snapshots/v1.0-bus.jsonl

``--as-1.0`` rewrites the current snapshot as format 1.0 did it: peers
without ``comm``, ``messages_in`` and ``messages_out``, version [1, 0], and
a checksum over the edited records.

The bus it builds is described in ``FIXTURE`` (read by the tests too), with
every kind of state a snapshot carries: active peers with names (one name
with a queue of two), a match rule, an expected reply whose call is still in
the callee's output queue carrying an fd, a half-read message, a peer halfway
through SASL, a monitor, and the supervisor's record of an earlier pivot.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bootbus.bus import driver
from bootbus.bus.peer import Peer, PeerState
from bootbus.bus.router import Bus
from bootbus.state.snapshot import ListenerRecord, encode
from bootbus.wire import message as m
from bootbus.wire.sasl import SaslServer

# What the fixtures hold; tests/reexec/test_snapshot_compat.py asserts it after restoring.
FIXTURE: dict[str, Any] = {
    "bus_id": "0123456789abcdef0123456789abcdef",
    # fd numbers in the previous process, as the header's fd table lists them
    "listener_fd": 40, "fds": {"service": 41, "caller": 42, "auth": 43, "monitor": 44},
    "passed_fd": 45,  # rides with the queued call to the service
    "service": ":1.1", "caller": ":1.2", "monitor": ":1.3",
    "names": {"org.bootbus.Fixture": [":1.1"], "org.bootbus.Shared": [":1.2", ":1.1"]},
    "match": "type='signal',interface='org.bootbus.Fixture'",
    "call_serial": 7,  # the caller's call to the service, awaiting its reply
    "partial_serial": 8,  # the caller's GetId call, of which the bus has read 20 bytes
    "partial_cut": 20,
    "generation": 3, "phase": "root",
}


def partial_call() -> bytes:
    return m.build(m.METHOD_CALL, FIXTURE["partial_serial"], path="/org/freedesktop/DBus",
                   interface="org.freedesktop.DBus", member="GetId",
                   destination="org.freedesktop.DBus")


def _call(bus: Bus, peer: Peer, serial: int, member: str, signature: str = "",
          args: tuple[Any, ...] = (), interface: str = "org.freedesktop.DBus") -> None:
    raw = m.build(m.METHOD_CALL, serial, path="/org/freedesktop/DBus",
                  interface=interface, member=member,
                  destination="org.freedesktop.DBus", signature=signature, args=args)
    bus.dispatch(peer, m.parse(raw))


def build_bus() -> tuple[Bus, dict[int, int]]:
    bus = Bus(bus_id=FIXTURE["bus_id"], uid=0, pid=1)
    bus.driver = driver.handle
    peers = {}
    for role, comm in (("service", "fixture-svc"), ("caller", "fixture-cli"),
                       ("monitor", "fixture-mon")):
        peer = bus.add_peer(0, 1000 + len(peers), (0,), None, comm)
        peer.connected_at = 1700000000.0
        bus.authenticated(peer, True)
        _call(bus, peer, 1, "Hello")
        peers[role] = peer
    service, caller, monitor = peers["service"], peers["caller"], peers["monitor"]
    _call(bus, service, 2, "RequestName", "su", ("org.bootbus.Fixture", 0))
    _call(bus, service, 3, "RequestName", "su", ("org.bootbus.Shared", 1))  # allow replacement
    _call(bus, caller, 2, "RequestName", "su", ("org.bootbus.Shared", 2))  # replace
    _call(bus, service, 4, "AddMatch", "s", (FIXTURE["match"],))
    _call(bus, monitor, 2, "BecomeMonitor", "asu",
          (["type='method_call',interface='org.bootbus.Fixture'"], 0),
          "org.freedesktop.DBus.Monitoring")
    assert monitor.state is PeerState.MONITOR
    auth = bus.add_peer(0, 1003, (0,), None, "fixture-auth")
    auth.sasl = SaslServer(0, FIXTURE["bus_id"])
    auth.sasl.feed(b"\0AUTH EXTERNAL 30\r\nNEGOTIATE_UNIX_FD\r\n")  # waits for BEGIN
    for peer in bus.peers.values():  # as if all of that had been written out
        peer.outq.clear()
        peer.out_bytes = 0
    bus.dirty.clear()
    call = m.parse(m.build(m.METHOD_CALL, FIXTURE["call_serial"], path="/org/bootbus/Fixture",
                           interface="org.bootbus.Fixture", member="Ping",
                           destination="org.bootbus.Fixture", signature="s",
                           args=("across the re-exec",), unix_fds=1))
    call.fds = [FIXTURE["passed_fd"]]
    bus.dispatch(caller, call)
    monitor.outq.clear()  # the monitor saw it; that copy was written out
    monitor.out_bytes = 0
    caller.framer.feed(partial_call()[:FIXTURE["partial_cut"]])
    assert service.state is PeerState.ACTIVE and len(service.outq) == 1
    conn_fds = {service.id: FIXTURE["fds"]["service"], caller.id: FIXTURE["fds"]["caller"],
                auth.id: FIXTURE["fds"]["auth"], monitor.id: FIXTURE["fds"]["monitor"]}
    return bus, conn_fds


def snapshot() -> bytes:
    bus, conn_fds = build_bus()
    supervisor = {"phase": FIXTURE["phase"], "generation": FIXTURE["generation"],
                  "started_at": 1700000000.0,
                  "pivots": [{"from_phase": "initramfs", "to_phase": "root",
                              "root": "/sysroot", "at": 1700000001.0}],
                  "answer_after_exec": []}
    listener = ListenerRecord(FIXTURE["listener_fd"], "unix:path=/run/bootbus/bus",
                              "/run/bootbus/bus")
    data, _fds = encode(bus, conn_fds, [listener], supervisor)
    return data


def as_1_0(data: bytes) -> bytes:
    records = [json.loads(line) for line in data.splitlines()[:-1]]
    records[0]["version"] = [1, 0]
    for record in records:
        if record.get("t") == "peer":
            for key in ("comm", "messages_in", "messages_out"):
                del record[key]
    body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
    trailer = {"t": "end", "records": len(records), "sha256": hashlib.sha256(body).hexdigest()}
    return body + json.dumps(trailer).encode() + b"\n"


def main(argv: list[str]) -> int:
    old = argv[0] == "--as-1.0"
    path = Path(argv[-1])
    data = snapshot()
    if old:
        data = as_1_0(data)
    path.write_bytes(data)
    print(f"wrote {path} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
