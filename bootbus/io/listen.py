"""Listening sockets from D-Bus addresses or from systemd socket activation.

Owns: turning ``unix:path=``, ``unix:abstract=``, ``unix:dir=``,
``unix:tmpdir=`` and ``unix:runtime=yes`` into bound, listening, non-blocking
sockets, and adopting sockets passed with LISTEN_FDS. Returns each socket
with the address a client should use.
"""

import os
import socket
import stat

from ..wire.address import Address, escape, parse_addresses
from ..wire.errors import AddressError

LISTEN_BACKLOG = socket.SOMAXCONN
SD_LISTEN_FDS_START = 3


class Listener:
    def __init__(self, sock: socket.socket, address: str, path: str | None = None) -> None:
        self.sock = sock
        self.address = address  # without guid
        self.path = path  # a filesystem socket we created (to unlink at exit)


def listen_all(text: str) -> list[Listener]:
    return [listen(a) for a in parse_addresses(text)]


def listen(addr: Address) -> Listener:
    if addr.transport != "unix":
        raise AddressError(f"transport {addr.transport!r} is not supported (only unix)")
    keys = {k for k, _ in addr.params} - {"guid"}
    if len(keys) != 1:
        raise AddressError(f"address {addr} needs exactly one of path, abstract, dir, "
                           "tmpdir, runtime")
    (key,) = keys
    value = addr.get(key) or ""
    if key == "path":
        return _bind_path(value)
    if key == "abstract":
        return _bind(b"\0" + value.encode(), f"unix:abstract={escape(value)}", None)
    if key in ("dir", "tmpdir"):
        name = os.path.join(value, "dbus-" + os.urandom(8).hex())
        return _bind_path(name)
    if key == "runtime" and value == "yes":
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        if not runtime:
            raise AddressError("unix:runtime=yes needs XDG_RUNTIME_DIR")
        return _bind_path(os.path.join(runtime, "bus"))
    raise AddressError(f"unsupported unix address key {key!r}")


def _bind_path(path: str) -> Listener:
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)  # a stale socket of an earlier run
    except FileNotFoundError:
        pass
    listener = _bind(path, f"unix:path={escape(path)}", path)
    os.chmod(path, 0o666)  # access is decided by authentication and policy, as for dbus-daemon
    return listener


def _bind(where: str | bytes, address: str, path: str | None) -> Listener:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(where)
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return Listener(sock, address, path)


def from_systemd(environ: dict[str, str] | None = None) -> list[Listener]:
    """Adopt sockets passed by systemd (LISTEN_PID/LISTEN_FDS); empty when none."""
    env = os.environ if environ is None else environ
    try:
        if int(env.get("LISTEN_PID", "0")) != os.getpid():
            return []
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    listeners = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        os.set_inheritable(fd, False)
        name = sock.getsockname()
        if isinstance(name, bytes) and name.startswith(b"\0"):
            address = f"unix:abstract={escape(name[1:].decode())}"
        else:
            address = f"unix:path={escape(str(name))}"
        listeners.append(Listener(sock, address))
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(key, None)
    return listeners
