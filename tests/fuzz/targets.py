"""Fuzz targets: each takes one byte string and asserts the invariant of its layer.

  * wire (framer, header parsing, bodies, SASL): only a WireError subclass
    escapes, or the framer's ``error`` is set -- never any other exception;
  * what the framer or the parser accepts can be forwarded: the sender field
    can be set and the result parses again with every other field unchanged;
  * match rules: only MatchRuleError escapes, and a parsed rule can be matched;
  * the bus: a peer's input gives routing or a PeerError (a disconnect), never
    another exception, and every frame the bus queues for anyone parses.

An AssertionError or any other exception out of a target is a bug. The targets
are plain functions so hypothesis (in CI) and atheris (long runs) share them.
"""

from collections.abc import Callable
from typing import Any

from bootbus.bus import driver
from bootbus.bus.match import MatchRuleError, matches, parse_rule
from bootbus.bus.peer import Peer
from bootbus.bus.router import Bus, PeerError
from bootbus.wire import message as m
from bootbus.wire.errors import AuthError, WireError
from bootbus.wire.framer import Framer
from bootbus.wire.marshal import marshal, unmarshal
from bootbus.wire.sasl import SaslServer, State

from . import seeds

GUID = "0123456789abcdef0123456789abcdef"
SASL_VERBS = (b"OK ", b"REJECTED", b"DATA", b"ERROR", b"AGREE_UNIX_FD")
MAX_PADDING = 1 << 16  # the header target pads short frames up to this many bytes


def check_message(msg: m.Message) -> None:
    """A message the parser accepted must survive what the bus does with it."""
    assert msg.serial != 0 and msg.type != 0  # unknown types parse when well-formed (spec)
    assert len(msg.fds) in (0, msg.unix_fds)
    try:
        msg.args()
    except WireError:
        pass
    header, body = m.with_sender(msg, m.sender_field(":1.7", msg.endian))
    again = m.parse(header + bytes(body))
    assert again.sender == ":1.7"
    for key in ("type", "flags", "serial", "path", "interface", "member", "error_name",
                "reply_serial", "destination", "signature", "unix_fds", "endian"):
        assert getattr(again, key) == getattr(msg, key), key
    assert again.body == msg.body
    # parsing the same bytes again (the header-field cache answers) gives the same message
    twice = m.parse(bytes(msg.raw))
    for key in ("path", "interface", "member", "error_name", "reply_serial", "destination",
                "sender", "signature", "unix_fds", "sender_span"):
        assert getattr(twice, key) == getattr(msg, key), key


def framer(data: bytes) -> None:
    """The stream cut in chunks whose sizes come from the first 4 bytes, with fake fds;
    a chunk without fds is offered to repeated() first, as the server does."""
    sizes, stream = data[:4] or b"\x00", data[4:]
    framer_ = Framer()
    pos = step = 0
    while pos < len(stream):
        size = 1 + sizes[step % len(sizes)]
        fds = [100 + step] if sizes[step % len(sizes)] & 1 else []
        chunk = stream[pos:pos + size]
        repeat = None if fds else framer_.repeated(chunk)
        if repeat is not None:  # exactly what a framer that parses it would make
            check_message(repeat)
            fresh = Framer()
            fresh.max_size = framer_.max_size
            (parsed,) = fresh.feed(chunk)
            assert fresh.error is None and not fresh.buf
            assert (parsed.raw, parsed.type, parsed.flags, parsed.serial, parsed.reply_serial,
                    parsed.fields, parsed.body_offset) == (
                repeat.raw, repeat.type, repeat.flags, repeat.serial, repeat.reply_serial,
                repeat.fields, repeat.body_offset)
        for msg in framer_.feed(chunk, fds) if repeat is None else ():
            check_message(msg)
        if framer_.error is not None:
            assert isinstance(framer_.error, WireError)
            try:
                framer_.feed(b"\0")
            except WireError:
                pass
            else:
                raise AssertionError("a failed framer accepted more input")
            return
        pos += size
        step += 1


def header(data: bytes) -> None:
    """message.parse on frames whose length agrees with their first 16 bytes."""
    if len(data) < 16:
        return
    try:
        size = m.frame_size(data[:16])
    except WireError:
        return
    if size > len(data) + MAX_PADDING:
        return
    try:
        msg = m.parse((data + bytes(max(0, size - len(data))))[:size])
    except WireError:
        return
    check_message(msg)


def body(data: bytes) -> None:
    """unmarshal of a known or fuzzed signature; what it reads marshals back the same."""
    if len(data) < 2:
        return
    endian = "l" if data[0] & 0x80 else "B"
    if data[0] & 0x40:
        length = data[1]
        sig = data[2:2 + length].decode("latin-1")
        raw = data[2 + length:]
    else:
        sig = seeds.SIGNATURES[data[1] % len(seeds.SIGNATURES)]
        raw = data[2:]
    try:
        values = unmarshal(sig, raw, endian)
    except WireError:
        return
    if not _lossy(values):
        assert marshal(sig, values, endian) == raw


def _lossy(value: Any) -> bool:
    """Values whose re-encoding may differ: dicts (duplicate keys), doubles (NaN bits)."""
    if isinstance(value, (dict, float)):
        return True
    if isinstance(value, (list, tuple)):
        return any(_lossy(v) for v in value)
    return False


def sasl(data: bytes) -> None:
    """A SASL conversation fed in chunks; replies are whole lines of known commands."""
    if not data:
        return
    uid = 0 if data[0] & 1 else 1000
    chunk = 1 + (data[0] >> 1)
    server = SaslServer(peer_uid=uid, guid=GUID, allow_unix_fd=bool(data[0] & 0x80))
    stream = data[1:]
    for pos in range(0, len(stream), chunk):
        try:
            out = server.feed(stream[pos:pos + chunk])
        except AuthError:
            return
        if out:
            assert out.endswith(b"\r\n")
            for line in out.split(b"\r\n")[:-1]:
                assert line.startswith(SASL_VERBS), line
        if server.state is State.DONE:
            assert server.uid == uid
            return


_SAMPLES = [m.parse(frame) for frame in seeds.FRAMES]


def rule(data: bytes) -> None:
    """parse_rule on any text; a rule that parses can be matched against messages."""
    try:
        parsed = parse_rule(data.decode("utf-8", "replace"))
    except MatchRuleError:
        return
    for msg in _SAMPLES:
        matches(parsed, msg, ":1.1", lambda _rule, _sender: False, msg.args)


def _hello(bus: Bus, uid: int, unix_fd: bool) -> Peer:
    peer = bus.add_peer(uid=uid, pid=uid + 1)
    bus.authenticated(peer, unix_fd)
    for msg in peer.framer.feed(seeds.FRAMES[0]):
        bus.dispatch(peer, msg)
    return peer


def _driver(bus: Bus, peer: Peer, frame: bytes) -> None:
    for msg in peer.framer.feed(frame):
        bus.dispatch(peer, msg)


def router(data: bytes) -> None:
    """A peer's bytes into a bus that has a name owner, a subscriber and a monitor."""
    bus = Bus(bus_id=GUID, uid=0, pid=1, machine_id=GUID)
    bus.driver = driver.handle
    owner = _hello(bus, 1000, True)
    _driver(bus, owner, seeds._call(2, "RequestName", "su", ("com.example.B", 0)))
    _driver(bus, owner, seeds._call(3, "AddMatch", "s", ("type='signal'",)))
    monitor = _hello(bus, 0, False)
    _driver(bus, monitor, seeds.FRAMES[7])  # BecomeMonitor
    fuzzer = _hello(bus, 1000, bool(data[:1] and data[0] & 1))
    stream = data[1:]
    for msg in fuzzer.framer.feed(stream, [1000, 1001, 1002]):
        try:
            bus.dispatch(fuzzer, msg)
        except PeerError:
            break
    _check_bus(bus)


def _check_bus(bus: Bus) -> None:
    for peer in bus.peers.values():
        for frame in peer.outq:
            data = b"".join(bytes(buf) for buf in frame.bufs)
            assert frame.size == len(data)
            assert m.frame_size(data[:16]) == len(data)
            msg = m.parse(data)
            assert msg.sender is not None or msg.type == m.METHOD_CALL
    for (caller, _serial), callee in bus.pending.items():
        assert caller in bus.peers and callee in bus.peers
    for peer in bus.peers.values():
        assert peer.pending_calls == sum(1 for c, _ in bus.pending if c == peer.id)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "framer": framer, "header": header, "body": body, "sasl": sasl, "rule": rule,
    "router": router,
}
_ORDER = list(TARGETS)


def one_input(data: bytes) -> None:
    """The single entry point for atheris: the first byte picks the target."""
    if data:
        TARGETS[_ORDER[data[0] % len(_ORDER)]](data[1:])


def seed_inputs() -> dict[str, list[bytes]]:
    """Seeds per target, in each target's own input format (without the selector byte)."""
    return {
        "framer": [b"\x0f\x00\x7f\x03" + f for f in seeds.FRAMES]
        + [b"\xff" + b"".join(seeds.FRAMES)],
        "header": list(seeds.FRAMES),
        "body": [bytes((0x80, i)) + marshal(sig, _sample_value(sig), "l")
                 for i, sig in enumerate(seeds.SIGNATURES) if _sample_value(sig) is not None],
        "sasl": [bytes((b,)) + conv for conv in seeds.SASL for b in (0xfe, 0x81, 0x07)],
        "rule": [r.encode() for r in seeds.RULES],
        "router": [b"\x01" + f for f in seeds.FRAMES[1:]] + [b"\x00" + seeds.FRAMES[11]],
    }


_SAMPLE_VALUES: dict[str, list[Any]] = {
    "y": [1], "b": [True], "n": [-1], "q": [2], "i": [-3], "u": [4], "x": [-5], "t": [6],
    "d": [0.5], "s": ["s"], "o": ["/o"], "g": ["a{sv}"], "h": [0], "v": [("i", 1)],
    "ay": [b"ab"], "as": [["a", "b"]], "a{sv}": [{"k": ("s", "v")}],
    "(ybnqiuxtdsogh)": [(1, True, -1, 2, -3, 4, -5, 6, 0.5, "s", "/o", "g", 0)],
    "aay": [[b"a", b""]], "a(sa{sv})": [[("s", {"k": ("b", False)})]],
    "av": [[("y", 1), ("as", ["x"])]], "a{oa{sa{sv}}}": [{"/o": {"i.f": {"p": ("u", 1)}}}],
    "sa{sv}as": ["i.f", {"p": ("t", 7)}, ["q"]], "a{yv}": [{1: ("o", "/")}],
    "vvv": [("v", ("y", 1)), ("g", "v"), ("ad", [1.5])],
}


def _sample_value(sig: str) -> list[Any] | None:
    return _SAMPLE_VALUES.get(sig)
