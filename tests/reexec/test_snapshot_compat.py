"""Version skew and broken snapshots: restore the old formats, refuse the bad ones.

The committed fixtures (tests/data/snapshots/, made by generate.py there)
are snapshots of formats 1.0 and 1.1. A daemon of this version restores them
end to end: it is given real sockets and a pipe at exactly the fd numbers the
fixture names, and the test then talks as those peers: the queued call (with
its fd) reaches the service, the half-read call completes, the peer halfway
through SASL finishes it, names, queues, match rules, the monitor and the
pending reply all still work, and new clients connect on the inherited
listener.

A snapshot with a bad record, a bad checksum, cut short, or of a newer major
version is refused whole: the daemon logs why on stderr, closes the
connections it cannot serve (their peers see EOF rather than silence), and
serves new clients on its listener.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from jeepney import DBusAddress, MessageType, new_method_call, new_method_return, new_signal

from bootbus.client import Client
from bootbus.state import snapshot

from . import harness
from .restore import FIXTURE, SNAPSHOTS, Restoring, records, sign

V10 = SNAPSHOTS / "v1.0-bus.jsonl"
V11 = SNAPSHOTS / "v1.1-bus.jsonl"
V12 = SNAPSHOTS / "v1.2-bus.jsonl"
VERSION_OF = {V10: (1, 0), V11: (1, 1), V12: (1, 2)}
FIXTURE_IFACE = "org.bootbus.Fixture"
SERVICE = DBusAddress("/org/bootbus/Fixture", bus_name=FIXTURE_IFACE, interface=FIXTURE_IFACE)
DBUS = DBusAddress("/org/freedesktop/DBus", bus_name="org.freedesktop.DBus",
                   interface="org.freedesktop.DBus")


def newer_minor() -> bytes:
    """The 1.1 fixture as a future 1.x would write it: a new record type and a new key."""
    recs = records(V11.read_bytes())
    recs[0]["version"] = [1, 99]
    recs.insert(2, {"t": "quota", "peer": 1, "bytes": 4096})
    for rec in recs:
        if rec["t"] == "peer":
            rec["priority_class"] = "interactive"
    return sign(recs)


# -- decode level ----------------------------------------------------------------


@pytest.mark.parametrize("path", [V10, V11, V12], ids=["v1.0", "v1.1", "v1.2"])
def test_decode_previous_formats(path: Any) -> None:
    logged: list[str] = []
    restored = snapshot.decode(path.read_bytes(), logged.append)
    assert logged == []
    assert restored.version == VERSION_OF[path]
    bus = restored.bus
    assert bus.bus_id == FIXTURE["bus_id"]
    by_name = {p.unique_name: p for p in bus.peers.values() if p.unique_name}
    assert {name: [bus.peers[o.peer].unique_name for o in queue]
            for name, queue in bus.registry.queues.items()} == FIXTURE["names"]
    service = by_name[FIXTURE["service"]]
    assert [r.text for r in service.matches] == [FIXTURE["match"]]
    assert len(service.outq) == 1 and service.outq[0].fds is not None
    assert service.outq[0].fds.fds == [FIXTURE["passed_fd"]]
    assert bus.pending == {(by_name[FIXTURE["caller"]].id, FIXTURE["call_serial"]): service.id}
    assert by_name[FIXTURE["monitor"]] in bus.monitors
    assert sorted(restored.conn_fds.values()) == sorted(FIXTURE["fds"].values())
    assert sorted(restored.fds) == sorted([*FIXTURE["fds"].values(), FIXTURE["listener_fd"],
                                           FIXTURE["passed_fd"]])
    if path == V10:  # 1.0 had no comm or counters: they take their defaults
        assert {p.comm for p in bus.peers.values()} == {""}
        assert {p.messages_in for p in bus.peers.values()} == {0}
    else:
        assert service.comm == "fixture-svc" and service.messages_in > 0


def test_decode_newer_minor_skips_what_it_does_not_know() -> None:
    logged: list[str] = []
    restored = snapshot.decode(newer_minor(), logged.append)
    assert restored.version == (1, 99)
    assert restored.skipped == ["quota"]
    assert any("unknown type 'quota', skipped" in line for line in logged)
    assert sum("unknown key 'priority_class'" in line for line in logged) == 1  # once per key
    assert len(restored.bus.peers) == 4


def _bad_record() -> bytes:
    recs = records(V11.read_bytes())
    peer = next(r for r in recs if r["t"] == "peer")
    peer["state"] = "FLYING"
    return sign(recs)


def _bad_checksum() -> bytes:
    data = V11.read_bytes()
    return data.replace(b'"org.bootbus.Fixture"', b'"org.bootbus.Fixturf"', 1)


def _truncated() -> bytes:
    data = V11.read_bytes()
    return data[:len(data) // 2]


def _truncated_at_record() -> bytes:
    lines = V11.read_bytes().splitlines(keepends=True)
    return b"".join(lines[:5])  # whole records, but no end record


def _newer_major() -> bytes:
    recs = records(V11.read_bytes())
    recs[0]["version"] = [2, 0]
    return sign(recs)


def _dangling_pending() -> bytes:
    recs = records(V11.read_bytes())
    next(r for r in recs if r["t"] == "pending")["callee"] = 99
    return sign(recs)


BROKEN = {
    "bad-record": (_bad_record, "snapshot record 5 (peer) is invalid: KeyError: 'FLYING'"),
    "bad-checksum": (_bad_checksum, "snapshot checksum mismatch"),
    "truncated": (_truncated, "snapshot is truncated"),
    "truncated-at-record": (_truncated_at_record, "snapshot is truncated (no end record)"),
    "newer-major": (_newer_major, "snapshot format 2.0 is not supported"),
    "dangling-pending": (_dangling_pending, "expected reply between unknown peers"),
}


@pytest.mark.parametrize("kind", BROKEN)
def test_decode_refuses(kind: str) -> None:
    make, reason = BROKEN[kind]
    with pytest.raises(snapshot.SnapshotError) as info:
        snapshot.decode(make())
    assert reason in str(info.value)


# -- end to end: a daemon restores the fixture --------------------------------------


def _status(client: Client) -> dict[str, Any]:
    (status,) = client.call(harness.SERVICE, harness.PATH, harness.IFACE, "GetStatus")
    return {key: value[1] for key, value in status.items()}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("data", [V10.read_bytes(), V11.read_bytes(), V12.read_bytes(),
                                  newer_minor()],
                         ids=["v1.0", "v1.1", "v1.2", "v1.99"])
def test_daemon_restores_fixture(data: bytes) -> None:
    generation = FIXTURE["generation"] + 1
    with Restoring(data) as daemon:
        daemon.wait_log(f"restored generation {generation} in phase {FIXTURE['phase']}: "
                        "4 connections")
        service, caller = daemon.peers["service"], daemon.peers["caller"]
        auth, monitor = daemon.peers["auth"], daemon.peers["monitor"]

        # the call queued for the service arrives, with the fd it carried
        (call,) = service.receive_until(1)
        assert call.header.message_type is MessageType.method_call
        assert call.header.serial == FIXTURE["call_serial"]
        assert str(call.header.fields[7]) == FIXTURE["caller"]  # sender
        assert call.body == ("across the re-exec",)
        (passed,) = service.fds
        os.write(passed, b"through the fd")
        assert os.read(daemon.pipe_read, 100) == b"through the fd"
        # its reply is routed: the expected reply survived
        service.send(new_method_return(call, "s", ("pong",)))

        # the half-read GetId completes, and the reply to the old call arrives
        caller.send_raw(_partial_call_rest())
        replies = {int(m.header.fields[5]): m for m in caller.receive_until(2)}
        assert replies[FIXTURE["partial_serial"]].body == (FIXTURE["bus_id"],)
        assert replies[FIXTURE["call_serial"]].body == ("pong",)
        assert str(replies[FIXTURE["call_serial"]].header.fields[7]) == FIXTURE["service"]

        # the peer halfway through SASL finishes it and gets the next unique name
        auth.send_raw(b"BEGIN\r\n")
        auth.send(new_method_call(DBUS, "Hello"))
        (hello,) = auth.receive_until(1)
        assert hello.body == (":1.4",)

        # a new client on the inherited listener sees the names, queue and status
        with Client(daemon.address) as client:
            assert client.unique_name == ":1.5"
            bus = (harness.DBUS, harness.DBUS_PATH, harness.DBUS)
            assert client.call(*bus, "GetId") == [FIXTURE["bus_id"]]
            assert client.call(*bus, "GetNameOwner", "s", (FIXTURE_IFACE,)) == [":1.1"]
            assert client.call(*bus, "ListQueuedOwners", "s", ("org.bootbus.Shared",)) == [
                FIXTURE["names"]["org.bootbus.Shared"]]
            status = _status(client)
            assert status["Generation"] == generation
            assert status["Phase"] == FIXTURE["phase"]
            assert status["Pivots"] == 1
            assert status["BusId"] == FIXTURE["bus_id"]
            # the service's match rule survived: it gets a broadcast on its interface
            client.send(_signal(client))
            (tick,) = service.receive_until(1)
            assert tick.header.message_type is MessageType.signal and tick.body == ("tick",)
            # the monitor's rule survived: it sees a call on the fixture interface
            serial = client.call_async(FIXTURE_IFACE, "/org/bootbus/Fixture", FIXTURE_IFACE,
                                       "Ping", "s", ("watched",))
            (seen,) = monitor.receive_until(1)
            assert seen.body == ("watched",) and seen.header.serial == serial
            (ping,) = service.receive_until(1)
            service.send(new_method_return(ping, "s", ("pong",)))
            assert client.wait_reply(serial, timeout=5).args() == ["pong"]
        log = daemon.log()
        assert "refused" not in log
        if b'"quota"' in data:  # the newer minor's record this version does not know
            assert "<4>bootbus: snapshot record 3: unknown type 'quota', skipped" in log


def _partial_call_rest() -> bytes:
    from bootbus.wire import message as m  # the exact bytes the fixture holds the start of
    raw = m.build(m.METHOD_CALL, FIXTURE["partial_serial"], path="/org/freedesktop/DBus",
                  interface="org.freedesktop.DBus", member="GetId",
                  destination="org.freedesktop.DBus")
    return raw[FIXTURE["partial_cut"]:]


def _signal(client: Client) -> bytes:
    return new_signal(DBusAddress("/org/bootbus/Fixture", interface=FIXTURE_IFACE), "Tick",
                      "s", ("tick",)).serialise(serial=client.next_serial())


# -- end to end: a daemon refuses a broken snapshot and keeps serving -------------------


def _serves_new_clients(daemon: Restoring) -> None:
    with Client(daemon.address) as client:
        bus = (harness.DBUS, harness.DBUS_PATH, harness.DBUS)
        (bus_id,) = client.call(*bus, "GetId")
        assert bus_id != FIXTURE["bus_id"]  # a fresh bus: nothing of the snapshot was used
        assert client.call(*bus, "NameHasOwner", "s", (FIXTURE_IFACE,)) == [False]
        assert _status(client)["Generation"] == 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", BROKEN)
def test_daemon_refuses_broken_snapshot_and_keeps_serving(kind: str) -> None:
    make, reason = BROKEN[kind]
    with Restoring(make()) as daemon:
        log = daemon.wait_log("state snapshot refused")
        line = next(x for x in log.splitlines() if "state snapshot refused" in x)
        assert line.startswith("<2>bootbus: state snapshot refused, serving new clients only:")
        assert reason in line
        # the connections it cannot serve are closed, not left hanging
        for role, wire in daemon.peers.items():
            assert wire.closed_by_bus(), role
        # and so is the fd that rode in the snapshot: our read end sees EOF
        os.set_blocking(daemon.pipe_read, True)
        assert os.read(daemon.pipe_read, 10) == b""
        _serves_new_clients(daemon)


@pytest.mark.timeout(30)
def test_refused_when_fds_not_inherited() -> None:
    """A snapshot naming fds this process does not have: refused, never a crash."""
    with Restoring(V11.read_bytes(), listener_only=True) as daemon:
        line = next(x for x in daemon.wait_log("state snapshot refused").splitlines()
                    if "refused" in x)
        assert "was not inherited" in line
        _serves_new_clients(daemon)


@pytest.mark.parametrize("path", [V10, V11, V12], ids=["v1.0", "v1.1", "v1.2"])
def test_per_user_usage_is_rebuilt_not_stored(path: Any) -> None:
    """The per-uid sums behind the per-user quotas are derived from the restored peers."""
    from bus.test_user_quotas import recount

    bus = snapshot.decode(path.read_bytes()).bus
    assert {uid: u.totals() for uid, u in bus.users.items()} == recount(bus)
    assert sum(u.matches for u in bus.users.values()) >= 1  # the fixture has some of each
    assert sum(u.names for u in bus.users.values()) >= 1
    assert sum(u.replies for u in bus.users.values()) == 1
    assert sum(u.out_fds for u in bus.users.values()) == 1
    assert all(p.user is bus.users[p.uid] for p in bus.peers.values())
