"""The state snapshot: the whole bus as versioned records, fds by index.

Owns: the snapshot format (JSON lines, one record per line), its version and
its integrity check, and turning a :class:`Bus` plus the io layer's fd
numbers into records and back. Modelled on systemd's re-exec serialization:

  * the first record names the format and its ``major.minor`` version; a
    snapshot of a newer major version is refused, any minor is accepted;
  * fds are inherited across exec and referenced by index into the header's
    fd table; only fds the snapshot lists are made inheritable;
  * unknown record types and unknown keys are logged and skipped; retired
    keys are ignored; missing keys (an older minor) take their defaults;
  * derived state (indexes, counters) is rebuilt, never stored;
  * the last record carries the record count and a SHA-256 of everything
    before it: a truncated, corrupted or edited snapshot is refused whole.

Never touches an fd or a file: the io layer writes the bytes to a memfd.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable

from ..bus import names as nm
from ..bus.match import MatchRuleError, parse_rule
from ..bus.peer import OutFrame, Peer, PeerState, SharedFds
from ..bus.router import Bus
from ..plain import Fields
from ..wire.framer import Framer
from ..wire.sasl import SaslServer, State

TYPE_CHECKING = False  # typing's, without importing typing (see bootbus.plain)
if TYPE_CHECKING:
    from typing import Any

FORMAT = "bootbus-state"
# 1.1 added per-peer comm and message counters; 1.2 added supervisor_fd records
# (a pivot prepared before a re-exec keeps its directory fd across it); 1.3 added
# component records (bus activation's children and held calls, device waiters).
VERSION = (1, 3)
MAX_SNAPSHOT_SIZE = 512 * 1024 * 1024  # refuses absurd inputs before parsing

# The restore is on the path of the re-exec pause: hashlib would load OpenSSL
# (~5 ms) for one digest, where the builtin SHA-256 module does it alone.
try:
    from _sha256 import sha256 as _sha256  # type: ignore[import]  # CPython <= 3.11
except ImportError:  # pragma: no cover - CPython >= 3.12 renamed it
    try:
        from _sha2 import sha256 as _sha256  # type: ignore[import]
    except ImportError:
        from hashlib import sha256 as _sha256

# json is imported where a snapshot is made or read, not with this module: a cold start
# needs neither, and json's import (~2.5 ms with re) would come before its first Hello.
# The daemon loads it with its other deferred imports (bootbus.daemon.import_deferred),
# at once in the initramfs and before any re-exec.


class SnapshotError(Exception):
    """The snapshot cannot be restored; nothing of it may be used."""


class ListenerRecord(Fields):
    _fields = ("fd", "address", "path")

    def __init__(self, fd: int, address: str, path: str | None) -> None:
        self.fd = fd
        self.address = address
        self.path = path


class ComponentRecord(Fields):
    """One record of an io component's own state (activation, devices), opaque here.

    ``fds`` maps the component's names for its fds to fd numbers: the running
    image's numbers when encoding, the inherited ones after decoding.
    """

    _fields = ("component", "kind", "data", "fds")

    def __init__(self, component: str, kind: str, data: dict[str, Any],
                 fds: dict[str, int] | None = None) -> None:
        self.component = component
        self.kind = kind
        self.data = data
        self.fds: dict[str, int] = {} if fds is None else fds


class Restored:
    """What `decode` gives back: the bus and what the io layer must adopt."""

    def __init__(self, bus: Bus, conn_fds: dict[int, int], listeners: list[ListenerRecord],
                 supervisor: dict[str, Any], auth_deadlines: dict[int, float],
                 version: tuple[int, int], fds: list[int] | None = None,
                 skipped: list[str] | None = None) -> None:
        self.bus = bus
        self.conn_fds = conn_fds  # peer id -> socket fd
        self.listeners = listeners
        self.supervisor = supervisor
        self.auth_deadlines = auth_deadlines
        self.version = version
        self.fds: list[int] = [] if fds is None else fds  # the header's table: every fd inherited
        self.skipped: list[str] = [] if skipped is None else skipped


def _b64(data: bytes | bytearray) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _unb64(text: str) -> bytes:
    return binascii.a2b_base64(text, strict_mode=True) if text else b""


def checksum(body: bytes) -> str:
    """The end record's digest of everything before it."""
    digest: str = _sha256(body).hexdigest()
    return digest


class _FdTable:
    def __init__(self) -> None:
        self.fds: list[int] = []
        self.index: dict[int, int] = {}

    def ref(self, fd: int) -> int:
        if fd not in self.index:
            self.index[fd] = len(self.fds)
            self.fds.append(fd)
        return self.index[fd]


def encode(bus: Bus, conn_fds: dict[int, int], listeners: list[ListenerRecord],
           supervisor: dict[str, Any], auth_deadlines: dict[int, float] | None = None,
           supervisor_fds: dict[str, int] | None = None,
           components: list[ComponentRecord] | None = None) -> tuple[bytes, list[int]]:
    """Serialize; return the snapshot and the fds that must survive exec.

    ``supervisor_fds`` are the supervisor's own fds by name; the restored
    supervisor state has them as ``state["fds"][name]``. ``components`` come
    back as ``state["components"]`` (a list of :class:`ComponentRecord`), so
    that the supervisor hands them to their components as those start.
    """
    import json

    table = _FdTable()
    records: list[dict[str, Any]] = []
    records.append({"t": "bus", "bus_id": bus.bus_id, "next_peer_id": bus.next_peer_id,
                    "next_unique": bus.next_unique, "serial": bus.serial,
                    "stats": bus.stats})
    records.append({"t": "supervisor", **supervisor})
    for name, fd in (supervisor_fds or {}).items():
        records.append({"t": "supervisor_fd", "name": name, "fd": table.ref(fd)})
    for lst in listeners:
        records.append({"t": "listener", "fd": table.ref(lst.fd), "address": lst.address,
                        "path": lst.path})
    shared_ids: dict[int, int] = {}
    for peer in bus.peers.values():
        if peer.id not in conn_fds:
            continue
        records.append(_peer_record(peer, conn_fds[peer.id], table, shared_ids,
                                    (auth_deadlines or {}).get(peer.id, 0.0)))
    for name, queue in bus.registry.queues.items():
        records.append({"t": "name", "name": name,
                        "owners": [[o.peer, o.flags] for o in queue]})
    for (caller, serial), callee in bus.pending.items():
        records.append({"t": "pending", "caller": caller, "serial": serial, "callee": callee})
    for comp in components or ():
        records.append({"t": "component", "component": comp.component, "kind": comp.kind,
                        "data": comp.data,
                        "fds": {name: table.ref(fd) for name, fd in comp.fds.items()}})
    encode_json = json.JSONEncoder(separators=(",", ":")).encode  # one for all records
    lines = [encode_json({"t": "header", "format": FORMAT, "version": list(VERSION),
                          "fds": table.fds})]
    lines.extend(map(encode_json, records))
    body = ("\n".join(lines) + "\n").encode()
    trailer = encode_json({"t": "end", "records": len(lines), "sha256": checksum(body)})
    return body + trailer.encode() + b"\n", table.fds


def _peer_record(peer: Peer, sock_fd: int, table: _FdTable, shared_ids: dict[int, int],
                 deadline: float) -> dict[str, Any]:
    frames = []
    for frame in peer.outq:
        data = b"".join(bytes(b) for b in frame.bufs)
        entry: dict[str, Any] = {"data": _b64(data)}
        if frame.fds is not None:
            key = id(frame.fds)
            entry["shared"] = shared_ids.setdefault(key, len(shared_ids))
            entry["fds"] = [table.ref(fd) for fd in frame.fds.fds]
        frames.append(entry)
    record: dict[str, Any] = {
        "t": "peer", "id": peer.id, "fd": table.ref(sock_fd), "uid": peer.uid,
        "pid": peer.pid, "gids": list(peer.gids), "label": peer.label,
        "state": peer.state.name, "unique_name": peer.unique_name, "unix_fd": peer.unix_fd,
        "in": _b64(peer.framer.buf), "in_fds": [table.ref(fd) for fd in peer.framer.fds],
        "out": frames, "matches": [r.text for r in peer.matches],
        "monitor_rules": [r.text for r in peer.monitor_rules],
        "connected_at": peer.connected_at, "auth_deadline": deadline,
        "comm": peer.comm, "messages_in": peer.messages_in, "messages_out": peer.messages_out,
    }
    if peer.sasl is not None:
        s = peer.sasl
        record["sasl"] = {"state": s.state.name, "buf": _b64(s.buf), "commands": s.commands,
                          "unix_fd": s.unix_fd, "guid": s.guid}
    return record


def _parse_lines(data: bytes) -> list[dict[str, Any]]:
    import json

    if len(data) > MAX_SNAPSHOT_SIZE:
        raise SnapshotError(f"snapshot of {len(data)} bytes exceeds {MAX_SNAPSHOT_SIZE}")
    if not data.endswith(b"\n"):
        raise SnapshotError("snapshot is truncated (no final newline)")
    body, _, last = data[:-1].rpartition(b"\n")
    body += b"\n"
    try:
        trailer = json.loads(last)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"snapshot is not valid JSON lines: {exc}") from None
    if not isinstance(trailer, dict) or trailer.get("t") != "end":
        raise SnapshotError("snapshot is truncated (no end record)")
    if trailer.get("sha256") != checksum(body):
        raise SnapshotError("snapshot checksum mismatch: corrupted or modified")
    try:
        # One parse for all lines (a JSON text never holds a raw newline): the
        # per-call overhead of json.loads was half of decoding 1,000 peers.
        records: list[dict[str, Any]] = json.loads(
            b"[" + body[:-1].replace(b"\n", b",") + b"]")
    except (ValueError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"snapshot is not valid JSON lines: {exc}") from None
    if trailer.get("records") != len(records) or len(records) != body.count(b"\n"):
        raise SnapshotError("snapshot record count mismatch")
    if not all(isinstance(r, dict) for r in records):
        raise SnapshotError("snapshot record is not an object")
    return records


def decode(data: bytes, log: Callable[[str], None] = lambda _m: None,
           received: list[int] | None = None) -> Restored:
    """Parse and check a snapshot; ``received`` replaces the header's fd table.

    An exec inherits the fds under the numbers the table lists; a handover
    (see bootbus.io.reexec) receives them, in table order, under new numbers.
    """
    records = _parse_lines(data)
    header = records[0] if records else {}
    if header.get("t") != "header" or header.get("format") != FORMAT:
        raise SnapshotError("not a bootbus state snapshot")
    try:
        major, minor = (int(v) for v in header["version"])
        fds = [int(fd) for fd in header["fds"]]
    except (KeyError, TypeError, ValueError):
        raise SnapshotError("snapshot header is malformed") from None
    if major != VERSION[0]:
        raise SnapshotError(f"snapshot format {major}.{minor} is not supported "
                            f"(this bootbus reads {VERSION[0]}.x)")
    if received is not None:
        if len(received) != len(fds):
            raise SnapshotError(f"snapshot lists {len(fds)} fds, {len(received)} arrived")
        fds = received
    if len(set(fds)) != len(fds) or any(fd < 0 for fd in fds):
        raise SnapshotError("snapshot fd table lists an fd twice or a negative fd")
    restored = Restored(bus=Bus(bus_id=""), conn_fds={}, listeners=[], supervisor={},
                        auth_deadlines={}, version=(major, minor), fds=fds)
    shared: dict[int, SharedFds] = {}
    unknown_keys: set[tuple[str, str]] = set()
    for number, record in enumerate(records[1:], start=2):
        kind = record.get("t")
        loader = _LOADERS.get(kind)  # type: ignore[arg-type]
        if loader is None:
            restored.skipped.append(str(kind))
            log(f"snapshot record {number}: unknown type {kind!r}, skipped")
            continue
        for key in record.keys() - _KEYS.get(kind, record.keys()):  # type: ignore[arg-type]
            if (kind, key) not in unknown_keys and key not in _RETIRED_KEYS:
                unknown_keys.add((kind, key))  # type: ignore[arg-type]
                log(f"snapshot record {number} ({kind}): unknown key {key!r}, skipped")
        try:
            loader(restored, record, fds, shared)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError,
                MatchRuleError) as exc:
            raise SnapshotError(f"snapshot record {number} ({kind}) is invalid: "
                                f"{type(exc).__name__}: {exc}") from None
    _check(restored)
    restored.bus.rebuild_indexes()
    return restored


def _check(restored: Restored) -> None:
    """Cross-record consistency: what no single record can check."""
    bus = restored.bus
    if not bus.bus_id:
        raise SnapshotError("snapshot has no bus record")
    sockets = list(restored.conn_fds.values()) + [lst.fd for lst in restored.listeners]
    if len(set(sockets)) != len(sockets):
        raise SnapshotError("snapshot gives one socket to two connections or listeners")
    uniques = [p.unique_name for p in bus.peers.values() if p.state is PeerState.ACTIVE]
    if len(set(uniques)) != len(uniques):
        raise SnapshotError("snapshot has two active peers with one unique name")
    for (caller, _serial), callee in bus.pending.items():
        if caller not in bus.peers or callee not in bus.peers:
            raise SnapshotError("snapshot has an expected reply between unknown peers")
    for name, queue in bus.registry.queues.items():
        if not queue or any(o.peer not in bus.peers for o in queue):
            raise SnapshotError(f"snapshot name {name!r} has an unknown owner")
    for peer in bus.peers.values():
        if peer.state is PeerState.AUTH and peer.sasl is None:
            raise SnapshotError(f"snapshot peer {peer.id} is authenticating without SASL state")


def _load_bus(r: Restored, rec: dict[str, Any], fds: list[int],
              shared: dict[int, SharedFds]) -> None:
    bus = r.bus
    bus.bus_id = str(rec["bus_id"])
    if len(bus.bus_id) != 32:
        raise ValueError("bus id must be 32 hex digits")
    int(bus.bus_id, 16)
    bus.next_peer_id = int(rec["next_peer_id"])
    bus.next_unique = int(rec["next_unique"])
    bus.serial = int(rec["serial"])
    bus.stats = {str(k): int(v) for k, v in rec.get("stats", {}).items()}


def _load_supervisor(r: Restored, rec: dict[str, Any], fds: list[int],
                     shared: dict[int, SharedFds]) -> None:
    r.supervisor.update((k, v) for k, v in rec.items() if k not in ("t", "fds", "components"))


def _load_supervisor_fd(r: Restored, rec: dict[str, Any], fds: list[int],
                        shared: dict[int, SharedFds]) -> None:
    r.supervisor.setdefault("fds", {})[str(rec["name"])] = fds[int(rec["fd"])]


def _load_component(r: Restored, rec: dict[str, Any], fds: list[int],
                    shared: dict[int, SharedFds]) -> None:
    data = rec["data"]
    if not isinstance(data, dict):
        raise TypeError("component data is not an object")
    comp = ComponentRecord(str(rec["component"]), str(rec["kind"]), data,
                           {str(k): fds[int(i)] for k, i in rec.get("fds", {}).items()})
    r.supervisor.setdefault("components", []).append(comp)


def _load_listener(r: Restored, rec: dict[str, Any], fds: list[int],
                   shared: dict[int, SharedFds]) -> None:
    r.listeners.append(ListenerRecord(fds[int(rec["fd"])], str(rec["address"]),
                                      rec.get("path")))


def _load_peer(r: Restored, rec: dict[str, Any], fds: list[int],
               shared: dict[int, SharedFds]) -> None:
    state = PeerState[rec["state"]]
    peer = Peer(id=int(rec["id"]), uid=int(rec["uid"]), pid=int(rec["pid"]),
                gids=tuple(int(g) for g in rec["gids"]), label=rec.get("label"),
                comm=str(rec.get("comm", "")), state=state,
                unique_name=str(rec["unique_name"]), unix_fd=bool(rec["unix_fd"]))
    if peer.id in r.bus.peers:
        raise ValueError(f"peer {peer.id} appears twice")
    if state >= PeerState.ACTIVE and not peer.unique_name.startswith(":"):
        raise ValueError("an active peer has no unique name")
    if rec["in"] or rec["in_fds"]:
        peer.framer = Framer(_unb64(rec["in"]), [fds[int(i)] for i in rec["in_fds"]])
    for entry in rec["out"]:
        data = _unb64(entry["data"])
        group = None
        if "fds" in entry:
            key = int(entry["shared"])
            group = shared.get(key)
            if group is None:
                group = shared[key] = SharedFds([fds[int(i)] for i in entry["fds"]])
            group.refs += 1
        peer.outq.append(OutFrame([data], group, len(data)))
        peer.out_bytes += len(data)
    if rec["matches"]:
        peer.matches = [parse_rule(t) for t in rec["matches"]]
    if rec["monitor_rules"]:
        peer.monitor_rules = [parse_rule(t) for t in rec["monitor_rules"]]
    peer.connected_at = float(rec.get("connected_at", 0.0))
    peer.messages_in = int(rec.get("messages_in", 0))
    peer.messages_out = int(rec.get("messages_out", 0))
    sasl = rec.get("sasl")
    if sasl is not None:
        peer.sasl = SaslServer(peer.uid, str(sasl["guid"]), state=State[sasl["state"]],
                               buf=_unb64(sasl["buf"]),
                               commands=int(sasl["commands"]), unix_fd=bool(sasl["unix_fd"]))
    r.bus.peers[peer.id] = peer
    r.conn_fds[peer.id] = fds[int(rec["fd"])]
    if rec.get("auth_deadline"):
        r.auth_deadlines[peer.id] = float(rec["auth_deadline"])


def _load_name(r: Restored, rec: dict[str, Any], fds: list[int],
               shared: dict[int, SharedFds]) -> None:
    name = str(rec["name"])
    r.bus.registry.queues[name] = [nm.Owner(int(p), int(f)) for p, f in rec["owners"]]


def _load_pending(r: Restored, rec: dict[str, Any], fds: list[int],
                  shared: dict[int, SharedFds]) -> None:
    r.bus.pending[(int(rec["caller"]), int(rec["serial"]))] = int(rec["callee"])


# The keys each record type has in this version (a newer minor may add more:
# those are logged once and skipped); keys older versions wrote and this one
# no longer reads go in _RETIRED_KEYS and are ignored silently. The supervisor
# record is the supervisor's own state, opaque here.
_KEYS: dict[str, frozenset[str]] = {
    "bus": frozenset({"t", "bus_id", "next_peer_id", "next_unique", "serial", "stats"}),
    "supervisor_fd": frozenset({"t", "name", "fd"}),
    "listener": frozenset({"t", "fd", "address", "path"}),
    "peer": frozenset({"t", "id", "fd", "uid", "pid", "gids", "label", "state", "unique_name",
                       "unix_fd", "in", "in_fds", "out", "matches", "monitor_rules",
                       "connected_at", "auth_deadline", "comm", "messages_in",
                       "messages_out", "sasl"}),
    "name": frozenset({"t", "name", "owners"}),
    "pending": frozenset({"t", "caller", "serial", "callee"}),
    "component": frozenset({"t", "component", "kind", "data", "fds"}),
}
_RETIRED_KEYS: frozenset[str] = frozenset()

_LOADERS: dict[str, Callable[[Restored, dict[str, Any], list[int], dict[int, SharedFds]],
                             None]] = {
    "bus": _load_bus, "supervisor": _load_supervisor, "supervisor_fd": _load_supervisor_fd,
    "listener": _load_listener,
    "peer": _load_peer, "name": _load_name, "pending": _load_pending,
    "component": _load_component,
}
