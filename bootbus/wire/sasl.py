"""The server side of the D-Bus SASL exchange, as a table-driven state machine.

Owns: the line protocol of the specification's "Authentication Protocol"
section with the EXTERNAL mechanism only (ANONYMOUS and DBUS_COOKIE_SHA1 are
off), NEGOTIATE_UNIX_FD, the leading NUL byte and the bounds on line length
and on the number of commands. The peer's uid comes from the caller (it read
SO_PEERCRED); this module never touches a socket.

Rules it keeps:
  * the first byte must be NUL;
  * the claimed uid of EXTERNAL (hex of decimal ASCII) must equal the peer's
    uid; an empty claim means "the uid the socket says";
  * a command not valid in the current state gets ERROR, never a disconnect,
    except BEGIN before OK, which ends the connection as the spec requires;
  * after BEGIN the remaining bytes belong to the message stream.
"""

import enum
from collections.abc import Callable

from .errors import AuthError

MAX_LINE_LENGTH = 16 * 1024  # dbus-daemon's DBUS_AUTH_MAX_LINE_LENGTH is 16 KiB
MAX_COMMANDS = 64  # commands before BEGIN; a client needs at most a handful
MECHANISMS = "EXTERNAL"


class State(enum.Enum):
    WAIT_NUL = "wait-nul"
    WAIT_AUTH = "wait-auth"
    WAIT_DATA = "wait-data"
    WAIT_BEGIN = "wait-begin"
    DONE = "done"


class SaslServer:
    """Feed bytes with :meth:`feed`; send what it returns; stop at ``state == DONE``."""

    __slots__ = ("peer_uid", "guid", "allow_unix_fd", "state", "buf", "commands", "unix_fd",
                 "uid", "leftover")

    def __init__(self, peer_uid: int, guid: str, allow_unix_fd: bool = True,
                 state: State = State.WAIT_NUL, buf: bytes = b"", commands: int = 0,
                 unix_fd: bool = False, uid: int | None = None, leftover: bytes = b"") -> None:
        self.peer_uid = peer_uid
        self.guid = guid
        self.allow_unix_fd = allow_unix_fd
        self.state = state
        self.buf = buf
        self.commands = commands
        self.unix_fd = unix_fd
        self.uid = uid
        self.leftover = leftover

    def feed(self, data: bytes) -> bytes:
        """Consume input; return the reply lines to send. Raises AuthError to disconnect."""
        if self.state is State.DONE:
            raise AuthError("authentication already finished")
        self.buf += data
        out = []
        if self.state is State.WAIT_NUL and self.buf:
            if self.buf[0] != 0:
                raise AuthError("the first byte of the connection is not NUL")
            self.buf = self.buf[1:]
            self.state = State.WAIT_AUTH
        while self.state is not State.DONE:
            end = self.buf.find(b"\r\n")
            if end < 0:
                if len(self.buf) > MAX_LINE_LENGTH:
                    raise AuthError(f"authentication line longer than {MAX_LINE_LENGTH} bytes")
                break
            if end > MAX_LINE_LENGTH:
                raise AuthError(f"authentication line longer than {MAX_LINE_LENGTH} bytes")
            line = self.buf[:end]
            self.buf = self.buf[end + 2:]
            self.commands += 1
            if self.commands > MAX_COMMANDS:
                raise AuthError(f"more than {MAX_COMMANDS} authentication commands")
            reply = self._command(line)
            if reply:
                out.append(reply)
        if self.state is State.DONE:
            self.leftover, self.buf = self.buf, b""
        return b"".join(out)

    def _command(self, line: bytes) -> bytes:
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            return b"ERROR \"command is not ASCII\"\r\n"
        verb, _, rest = text.partition(" ")
        handler = _TABLE.get((self.state, verb))
        if handler is None:
            if verb == "BEGIN":
                raise AuthError("BEGIN before authentication succeeded")
            return f"ERROR \"{verb} not expected now\"\r\n".encode()
        return handler(self, rest)

    # -- handlers -----------------------------------------------------------
    def _auth(self, rest: str) -> bytes:
        mech, _, response = rest.partition(" ")
        if mech != "EXTERNAL":
            return self._rejected()
        if not response:
            self.state = State.WAIT_DATA
            return b"DATA\r\n"
        return self._external(response)

    def _data(self, rest: str) -> bytes:
        return self._external(rest)

    def _external(self, response: str) -> bytes:
        if response:
            try:
                claimed = int(bytes.fromhex(response).decode("ascii"), 10)
            except ValueError:
                return self._rejected()
            if claimed != self.peer_uid:
                return self._rejected()
        self.uid = self.peer_uid
        self.state = State.WAIT_BEGIN
        return f"OK {self.guid}\r\n".encode()

    def _rejected(self, _rest: str = "") -> bytes:
        self.state = State.WAIT_AUTH
        return f"REJECTED {MECHANISMS}\r\n".encode()

    def _error_in_auth(self, _rest: str) -> bytes:
        return self._rejected()

    def _begin(self, _rest: str) -> bytes:
        self.state = State.DONE
        return b""

    def _negotiate(self, _rest: str) -> bytes:
        if not self.allow_unix_fd:
            return b"ERROR \"unix fd passing is not supported\"\r\n"
        self.unix_fd = True
        return b"AGREE_UNIX_FD\r\n"


_TABLE: dict[tuple[State, str], Callable[[SaslServer, str], bytes]] = {
    (State.WAIT_AUTH, "AUTH"): SaslServer._auth,
    (State.WAIT_AUTH, "ERROR"): SaslServer._error_in_auth,
    (State.WAIT_AUTH, "CANCEL"): SaslServer._rejected,
    (State.WAIT_DATA, "DATA"): SaslServer._data,
    (State.WAIT_DATA, "CANCEL"): SaslServer._rejected,
    (State.WAIT_DATA, "ERROR"): SaslServer._rejected,
    (State.WAIT_BEGIN, "BEGIN"): SaslServer._begin,
    (State.WAIT_BEGIN, "CANCEL"): SaslServer._rejected,
    (State.WAIT_BEGIN, "ERROR"): SaslServer._rejected,
    (State.WAIT_BEGIN, "NEGOTIATE_UNIX_FD"): SaslServer._negotiate,
}
