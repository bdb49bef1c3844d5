"""The event loop: accepted connections, reads, writes and fds.

Owns: one epoll set, the listening sockets, one :class:`Connection` per peer
(the socket and nothing else: all protocol state lives in the bus's Peer),
SO_PEERCRED, SCM_RIGHTS in and out, the authentication timeout and the
per-user connection quotas (their effective values are the bus's ``limits``),
and when the loop wakes: for events, for timers (``add_timer``), for work asked
for ``soon``, never to poll. Per loop iteration it reads what is ready, lets the
bus route every complete message, then writes each peer's queue (one buffer
with send, several with one gathered ``sendmsg``, a new one only where a message
carries fds, so that the fds reach the receiver with their own message's first
byte).
"""

import array
import errno
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterable

from ..bus.peer import OutFrame, Peer, PeerState
from ..bus.router import Bus, PeerError
from ..wire.errors import AuthError
from ..wire.limits import MAX_UNIX_FDS_PER_MESSAGE
from ..wire.sasl import SaslServer
from .listen import Listener
from .memory import TRIM_AFTER_BYTES, release_free_memory

READ_SIZE = 256 * 1024  # one read per ready peer per iteration; big enough to batch
# Read into one reused buffer and copy out what came: recvmsg(READ_SIZE) allocates
# READ_SIZE per read and shrinks it, and with the mmap threshold fixed by
# bootbus.io.memory glibc's trim threshold stays at 128 KiB, so every such read
# also moved the heap's top (brk) twice: 15 us per small read against 4 us.
ANCILLARY_SIZE = socket.CMSG_SPACE(MAX_UNIX_FDS_PER_MESSAGE * 4)
IOV_MAX = 1024  # Linux UIO_MAXIOV
ACCEPTS_PER_WAKEUP = 64
TRIM_AFTER_CONNECTIONS = 64  # after a flood of at least this many halves, trim the heap
ACCEPT_BACKOFF = 0.25  # seconds a listener rests after accept() ran out of fds or memory
TIMER_RECHECK = 0.25  # seconds: how stale a timer's deadline may be (summary, journal replay)
NEVER = float("inf")  # nothing to wake up for: epoll waits without a timeout
SO_PEERGROUPS = 59
SO_PEERSEC = 31
MAX_GROUPS = 256
_UCRED = struct.Struct("3i")
_AUTH = PeerState.AUTH  # (a global: an enum member off its class costs ~35 ns more)
_IN = int(select.EPOLLIN)
_OUT = int(select.EPOLLOUT)
_CMSG_CLOEXEC = int(socket.MSG_CMSG_CLOEXEC)
_CTRUNC = int(socket.MSG_CTRUNC)  # plain ints: the IntFlag versions cost a call per test
_SOL_SOCKET = int(socket.SOL_SOCKET)
_SCM_RIGHTS = int(socket.SCM_RIGHTS)


class Connection:
    __slots__ = ("sock", "peer", "events", "deadline")

    def __init__(self, sock: socket.socket, peer: Peer, events: int = _IN,
                 deadline: float = 0.0) -> None:
        self.sock = sock
        self.peer = peer
        self.events = events
        self.deadline = deadline  # authentication deadline (monotonic), 0 once authenticated


def peer_credentials(sock: socket.socket) -> tuple[int, int, tuple[int, ...], str | None]:
    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                  _UCRED.size))
    groups: tuple[int, ...] = (gid,)
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * MAX_GROUPS)
        groups = tuple(sorted(set(array.array("I", raw[:len(raw) - len(raw) % 4])) | {gid}))
    except OSError:
        pass
    label = None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERSEC, 256)
        label = raw.rstrip(b"\0").decode("utf-8", "replace") or None
    except OSError:
        pass
    return pid, uid, groups, label


class Server:
    """Serves a :class:`Bus` on listening sockets until :meth:`stop`."""

    def __init__(self, bus: Bus, listeners: list[Listener],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bus = bus
        self.listeners = {lst.sock.fileno(): lst for lst in listeners}
        self.conns: dict[int, Connection] = {}
        self._read_buffer = bytearray(READ_SIZE)  # shared: every read is copied out at once
        self._read_view = memoryview(self._read_buffer)
        self._read_into = [self._read_buffer]  # recvmsg_into's buffer list, made once
        self._spare_dirty: set[Peer] = set()
        self.by_peer: dict[int, Connection] = {}
        self.authenticating: dict[Connection, None] = {}  # in deadline order
        self.incomplete_by_uid: dict[int, int] = {}
        self.conns_by_uid: dict[int, int] = {}
        self.clock = clock
        self.epoll = select.epoll()
        self.running = False
        self.soon: list[Callable[[], None]] = []  # once, when settle() runs next
        self.on_disconnect: list[Callable[[Peer, str], None]] = []
        self.on_connect: list[Callable[[Peer], None]] = []
        self.on_refuse: list[Callable[[int, int, str], None]] = []  # uid, pid, reason
        self.extra: dict[int, Callable[[int], None]] = {}  # other fds: fd -> handler(events)
        # (when is it due: monotonic seconds or None, what to run then); work that is
        # due after an event goes to soon, timers are for work that waits for a time
        self.timers: list[tuple[Callable[[], float | None], Callable[[], None]]] = []
        self._timers_due = 0.0  # when _when_due runs next (monotonic seconds, NEVER)
        self._conns_peak = 0  # most connections since memory was last given back
        self._paused: dict[int, float] = {}  # listeners not watched until then (out of fds)
        for fd in self.listeners:
            self.epoll.register(fd, _IN)

    # -- setup ----------------------------------------------------------------
    def add_fd(self, fd: int, handler: Callable[[int], None], events: int = _IN) -> None:
        self.extra[fd] = handler
        self.epoll.register(fd, events)

    def add_timer(self, source: Callable[[], float | None], callback: Callable[[], None]) -> None:
        """Run ``callback`` once ``source()`` (monotonic seconds, or None for no deadline)
        has passed; ``source`` is asked before the next sleep, then at least every
        TIMER_RECHECK, and ``callback`` may run early: it checks its own deadline."""
        self.timers.append((source, callback))
        self._timers_due = 0.0

    def remove_fd(self, fd: int) -> None:
        if self.extra.pop(fd, None) is not None:
            self.epoll.unregister(fd)

    def adopt(self, sock: socket.socket, peer: Peer) -> Connection:
        """Register an existing connection (after accept, or restored after re-exec)."""
        sock.setblocking(False)
        conn = Connection(sock, peer)
        if peer.state is PeerState.AUTH:
            # (after a reload that shortened auth_timeout the deadlines are briefly out of
            # order: _expire_auth then ends a new connection at most one old timeout late)
            conn.deadline = self.clock() + self.bus.limits.auth_timeout
            self.authenticating[conn] = None
            self._timers_due = min(self._timers_due, conn.deadline)
            self.incomplete_by_uid[peer.uid] = self.incomplete_by_uid.get(peer.uid, 0) + 1
        self.conns_by_uid[peer.uid] = self.conns_by_uid.get(peer.uid, 0) + 1
        self.conns[sock.fileno()] = conn
        self._conns_peak = max(self._conns_peak, len(self.conns))
        self.by_peer[peer.id] = conn
        if peer.outq:
            conn.events = _IN | _OUT
        self.epoll.register(sock.fileno(), conn.events)
        return conn

    # -- the loop -------------------------------------------------------------
    def run(self) -> None:
        self.running = True
        poll = self.epoll.poll
        clock = self.clock
        while self.running:
            now = clock()
            if now >= self._timers_due:
                self._when_due(now)
            due = self._timers_due
            try:
                events = poll(-1.0 if due == NEVER else max(0.0, due - now))  # (<0: forever)
            except InterruptedError:
                events = []
            self.process(events)

    def _when_due(self, now: float) -> None:
        """The work with a deadline: timers, listeners resting after running out of fds,
        authentication timeouts; then when to come back (``_timers_due``). Timer
        deadlines are asked for at most every TIMER_RECHECK."""
        if self._paused:
            self._resume_listeners()
        for _source, callback in self.timers:
            try:
                callback()
            except OSError:  # a component out of fds or memory must not end the bus
                self.bus.stats["timer_errors"] = self.bus.stats.get("timer_errors", 0) + 1
        self._expire_auth()
        self.settle()  # what the timers and expiries queued or doomed
        now = self.clock()
        due = NEVER
        if self.timers:
            due = now + TIMER_RECHECK
            for source, _callback in self.timers:
                wanted = source()
                if wanted is not None and wanted < due:
                    due = wanted
        if self.authenticating:
            due = min(due, next(iter(self.authenticating)).deadline)
        if self._paused:
            due = min(due, *self._paused.values())
        self._timers_due = due

    def process(self, events: list[tuple[int, int]]) -> None:
        """Handle what epoll reported, then write what it queued."""
        conns = self.conns
        for fd, mask in events:
            conn = conns.get(fd)
            if conn is not None:
                if mask & _OUT:
                    self._flush(conn)
                if mask & ~_OUT and fd in conns:
                    self._read(conn)
            elif fd in self.listeners:
                self._accept(self.listeners[fd].sock)
            else:
                handler = self.extra.get(fd)
                if handler is not None:
                    handler(mask)
        self.settle()

    def settle(self) -> None:
        """Disconnect doomed peers, write every dirty peer, run what was asked for
        soon (it may doom or queue more), close released fds."""
        bus = self.bus
        while bus.doomed or bus.dirty or self.soon:
            while bus.doomed:
                peer, reason = bus.doomed.popitem()
                conn = self.by_peer.get(peer.id)
                if conn is not None:
                    self.disconnect(conn, reason)
            if bus.dirty:
                dirty = bus.dirty
                bus.dirty = self._spare_dirty  # (two sets take turns: no set per wakeup)
                by_peer = self.by_peer
                for peer in dirty:
                    conn = by_peer.get(peer.id)
                    if conn is not None and not conn.events & _OUT:
                        self._flush(conn)
                dirty.clear()
                self._spare_dirty = dirty
            if self.soon and not bus.doomed:
                due, self.soon = self.soon, []
                for callback in due:
                    callback()
        if bus.fds_to_close:
            for fd in bus.fds_to_close:
                _close_fd(fd)
            bus.fds_to_close = []

    def stop(self) -> None:
        self.running = False

    # -- connections ------------------------------------------------------------
    def _accept(self, lsock: socket.socket) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                sock, _addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of resources: leave the rest in the backlog and stop watching
                    # this listener for a while, or level-triggered epoll spins on it.
                    self._pause_listener(lsock)
                    return
                raise
            try:
                pid, uid, gids, label = peer_credentials(sock)
            except OSError:
                sock.close()
                continue
            refused = self._over_quota(uid)
            if refused:
                sock.close()
                self.bus.stats[refused] = self.bus.stats.get(refused, 0) + 1
                for hook in self.on_refuse:
                    hook(uid, pid, refused)
                continue
            peer = self.bus.add_peer(uid, pid, gids, label)
            peer.sasl = SaslServer(uid, self.bus.bus_id)
            peer.connected_at = time.time()
            self.adopt(sock, peer)
            for connected in self.on_connect:
                connected(peer)

    def _over_quota(self, uid: int) -> str:
        """Why a new connection of ``uid`` must be refused, or '' to accept it."""
        limits = self.bus.limits
        if len(self.authenticating) >= limits.max_incomplete_connections:
            return "refused_incomplete_total"
        if uid in (0, self.bus.uid):
            return ""  # the quotas protect users from each other; root owns the bus anyway
        if self.incomplete_by_uid.get(uid, 0) >= limits.max_incomplete_per_user:
            return "refused_incomplete_user"
        if self.conns_by_uid.get(uid, 0) >= limits.max_connections_per_user:
            return "refused_connections_user"
        return ""

    def _pause_listener(self, lsock: socket.socket) -> None:
        fd = lsock.fileno()
        if fd not in self._paused:
            self.epoll.unregister(fd)
            self._paused[fd] = self.clock() + ACCEPT_BACKOFF
            self._timers_due = min(self._timers_due, self._paused[fd])

    def _resume_listeners(self, force: bool = False) -> None:
        now = self.clock()
        for fd, until in list(self._paused.items()):
            if force or until <= now:
                del self._paused[fd]
                self.epoll.register(fd, _IN)

    def _auth_done(self, conn: Connection) -> None:
        if conn in self.authenticating:  # (the dict's values are all None)
            del self.authenticating[conn]
            uid = conn.peer.uid
            left = self.incomplete_by_uid.get(uid, 1) - 1
            if left:
                self.incomplete_by_uid[uid] = left
            else:
                self.incomplete_by_uid.pop(uid, None)
        conn.deadline = 0.0

    def _read(self, conn: Connection) -> None:
        peer = conn.peer
        if peer.unix_fd or peer.state is _AUTH:
            self._read_with_fds(conn)
            return
        # No fd passing negotiated: recv_into, ~0.5 us cheaper than recvmsg_into. fds a
        # peer sends anyway never reach us: the kernel closes them, and a message that
        # announces some fails in the framer (they did not arrive).
        try:
            size = conn.sock.recv_into(self._read_buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.disconnect(conn, f"read failed: {exc.strerror}")
            return
        if not size:
            self.disconnect(conn, "end of file")
            return
        self._route(conn, self._read_view[:size].tobytes(), ())

    def _read_with_fds(self, conn: Connection) -> None:
        """Read from a peer that may send fds: one that negotiated fd passing, or one
        still authenticating (where fds are a protocol error)."""
        try:
            size, ancdata, flags, _ = conn.sock.recvmsg_into(self._read_into, ANCILLARY_SIZE,
                                                              _CMSG_CLOEXEC)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.disconnect(conn, f"read failed: {exc.strerror}")
            return
        fds: list[int] | tuple[()] = ()
        if ancdata:
            fds = []
            for level, kind, payload in ancdata:
                if level == _SOL_SOCKET and kind == _SCM_RIGHTS:
                    fds.extend(array.array("i", payload[:len(payload) - len(payload) % 4]))
        if flags & _CTRUNC:
            _close_all(fds)
            self.disconnect(conn, "too many fds in one message (ancillary data truncated)")
            return
        if not size:
            _close_all(fds)
            self.disconnect(conn, "end of file")
            return
        data = self._read_view[:size].tobytes()
        if conn.peer.state is _AUTH:
            if fds:
                _close_all(fds)
                self.disconnect(conn, "fds sent during authentication")
                return
            data = self._authenticate(conn, data)
            if not data:
                return
        self._route(conn, data, fds)

    def _route(self, conn: Connection, data: bytes, fds: list[int] | tuple[()]) -> None:
        """Frame what a peer sent and let the bus route every complete message."""
        peer = conn.peer
        bus = self.bus
        framer = peer.framer
        # most reads of a busy peer repeat its last header: no framing to do
        repeat = None if fds else framer.repeated(data)
        for msg in framer.feed(data, fds) if repeat is None else (repeat,):
            try:
                bus.dispatch(peer, msg)
            except PeerError as exc:
                _close_all(msg.fds)
                self.disconnect(conn, str(exc))
                return
        if framer.error is not None:
            self.disconnect(conn, f"protocol error: {framer.error}")

    def _authenticate(self, conn: Connection, data: bytes) -> bytes:
        peer = conn.peer
        sasl = peer.sasl
        assert sasl is not None
        try:
            reply = sasl.feed(data)
        except AuthError as exc:
            self.disconnect(conn, f"authentication failed: {exc}")
            return b""
        if reply:
            peer.outq.append(OutFrame([reply], None, len(reply)))
            peer.out_bytes += len(reply)
            peer.user.out_bytes += len(reply)
            self._flush(conn)
        if conn.sock.fileno() < 0 or peer.id not in self.by_peer:
            return b""
        if sasl.state.name != "DONE":
            return b""
        self.bus.authenticated(peer, sasl.unix_fd)
        self._auth_done(conn)
        return sasl.leftover

    def _expire_auth(self) -> None:
        if not self.authenticating:
            return
        now = self.clock()
        expired = []
        for conn in self.authenticating:
            if conn.deadline >= now:
                break
            expired.append(conn)
        for conn in expired:
            self.disconnect(conn, "authentication not completed in "
                            f"{self.bus.limits.auth_timeout:g} s")

    def _flush(self, conn: Connection) -> None:
        """Write the peer's queue until it is empty or the socket is full."""
        peer = conn.peer
        queue = peer.outq
        sock = conn.sock
        while queue:
            first = queue[0]
            try:
                if len(queue) == 1 and first.fds is None and len(first.bufs) == 1:
                    # the common case (one reply, one forwarded call): one buffer, which
                    # send() writes for less than sendmsg()
                    sent = sock.send(first.bufs[0])
                    count = 1
                else:
                    sent, count = _send_gathered(sock, queue)
            except (BlockingIOError, InterruptedError):
                self._want_write(conn, True)
                return
            except OSError as exc:
                self.disconnect(conn, f"write failed: {exc.strerror}")
                return
            peer.out_bytes -= sent
            peer.user.out_bytes -= sent  # (inline: the bus's per-user sum, on the hot path)
            if first.fds is not None:  # they went with the first byte
                peer.out_fds -= len(first.fds.fds)
                peer.user.out_fds -= len(first.fds.fds)
                self._release(first)
            if count == 1 and sent == first.size:
                del queue[0]
                continue
            if _consume(queue, sent) < count:  # the socket took less than was offered
                self._want_write(conn, True)
                return
        if conn.events != _IN:
            self._want_write(conn, False)

    def _want_write(self, conn: Connection, want: bool) -> None:
        events = _IN | _OUT if want else _IN
        if events != conn.events and conn.sock.fileno() >= 0:
            conn.events = events
            self.epoll.modify(conn.sock.fileno(), events)

    def _release(self, frame: OutFrame) -> None:
        shared = frame.fds
        frame.fds = None
        if shared is not None:
            shared.refs -= 1
            if shared.refs <= 0:
                _close_all(shared.fds)

    def disconnect(self, conn: Connection, reason: str) -> None:
        peer = conn.peer
        if self.by_peer.pop(peer.id, None) is None:
            return
        self._auth_done(conn)
        if self._paused:
            self._resume_listeners(force=True)  # an fd came free: accept again
        left = self.conns_by_uid.get(peer.uid, 1) - 1
        if left:
            self.conns_by_uid[peer.uid] = left
        else:
            self.conns_by_uid.pop(peer.uid, None)
        fd = conn.sock.fileno()
        self.conns.pop(fd, None)
        try:
            self.epoll.unregister(fd)
        except (OSError, ValueError):
            pass
        conn.sock.close()
        dropped = 0
        for frame in self.bus.remove_peer(peer):
            dropped += frame.size
            self._release(frame)
        if dropped >= TRIM_AFTER_BYTES or (
                self._conns_peak >= TRIM_AFTER_CONNECTIONS
                and len(self.conns) * 2 < self._conns_peak):
            self._conns_peak = len(self.conns)  # a flood went away: give its memory back
            release_free_memory()
        _close_all(peer.framer.take_fds())
        for hook in self.on_disconnect:
            hook(peer, reason)

    def close(self) -> None:
        for conn in list(self.conns.values()):
            self.disconnect(conn, "bus shutting down")
        for lst in self.listeners.values():
            lst.sock.close()
        self.epoll.close()


def _send_gathered(sock: socket.socket, queue: list[OutFrame]) -> tuple[int, int]:
    """One sendmsg of the queue's first frames (up to IOV_MAX buffers, and only the first
    may carry fds); return the bytes sent and how many frames were offered."""
    first = queue[0]
    bufs: list[bytes | memoryview] = []
    count = 0
    for frame in queue:
        if count and frame.fds is not None:
            break
        bufs.extend(frame.bufs)
        count += 1
        if len(bufs) >= IOV_MAX - 2:
            break
    if first.fds is None:
        return sock.sendmsg(bufs), count
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", first.fds.fds).tobytes())]
    return sock.sendmsg(bufs, anc), count


def _consume(queue: list[OutFrame], sent: int) -> int:
    """Drop the frames ``sent`` bytes completed and trim a partly sent one; return how
    many frames were completed."""
    done = 0
    for frame in queue:
        if sent >= frame.size:
            sent -= frame.size
            done += 1
            continue
        if sent:
            frame.size -= sent
            rest: list[bytes | memoryview] = []
            for buf in frame.bufs:
                if sent >= len(buf):
                    sent -= len(buf)
                elif sent:
                    rest.append(memoryview(buf)[sent:])
                    sent = 0
                else:
                    rest.append(buf)
            frame.bufs = rest
        break
    del queue[:done]
    return done


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        _close_fd(fd)
