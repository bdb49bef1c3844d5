"""sd_notify: telling the service manager how bootbus is doing.

Owns the client side of the notification protocol (sd_notify(3)): one
datagram of newline-separated VAR=value assignments to the AF_UNIX socket
named by $NOTIFY_SOCKET (a path, or '@' for the abstract namespace), with
file descriptors attached by SCM_RIGHTS for the fd store. Covers READY=1,
STATUS=, RELOADING=1 with MONOTONIC_USEC= (what Type=notify-reload expects
around a re-exec), STOPPING=1, EXTEND_TIMEOUT_USEC=, the watchdog (WATCHDOG=1
every half WATCHDOG_USEC, only if WATCHDOG_PID is unset or ours) and
FDSTORE=1/FDNAME=/FDSTOREREMOVE=1.

Without $NOTIFY_SOCKET (or with one we cannot use) every call is a no-op that
returns False. The environment is read once, at construction, and never
modified: a re-exec'd bootbus must find NOTIFY_SOCKET again (children spawned
by bus activation should get an environment without it; see
`NOTIFY_ENVIRONMENT`).

Never: raises out of a notification (failures are counted in `errors` and
returned as False; only malformed requests raise NotifyError), waits longer
than NOTIFY_SEND_TIMEOUT_SECONDS for a congested manager, reads a clock
directly, or keeps more than one socket.
"""

from __future__ import annotations

import array
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence

# Variables meant for bootbus alone; strip them from activated services' environment.
NOTIFY_ENVIRONMENT = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
# The kernel's limit on fds in one SCM_RIGHTS message (SCM_MAX_FD).
NOTIFY_FDS_MAX = 253
# systemd's fdname_is_valid(): at most 255 printable ASCII characters, no ':'.
FDNAME_MAX = 255
# STATUS= is one line; longer text is clipped.
STATUS_MAX = 512
# sd_notify blocks while the manager's queue is full; we give up after this.
NOTIFY_SEND_TIMEOUT_SECONDS = 1.0


class NotifyError(ValueError):
    """A notification that would be malformed (bad fd name, too many fds)."""


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def notify_address(value: str) -> str | None:
    """The socket address for a $NOTIFY_SOCKET value, or None if unusable."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # relative paths and vsock: are not for us


def check_fdname(name: str) -> None:
    if not 0 < len(name) <= FDNAME_MAX or ":" in name or not all(" " < c < "\x7f" for c in name):
        raise NotifyError(
            f"invalid fd name {name!r}: 1..{FDNAME_MAX} printable ASCII characters, no ':'"
        )


def one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= STATUS_MAX else flat[: STATUS_MAX - 1] + "…"


class Notifier:
    """sd_notify for the daemon; `enabled` is False outside a notify-type service."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        monotonic_usec: Callable[[], int] = _monotonic_usec,
        pid: int | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self._clock = monotonic_usec
        self._address = notify_address(env.get("NOTIFY_SOCKET", ""))
        self._sock: socket.socket | None = None
        self.errors = 0
        self.watchdog_usec = _watchdog_usec(env, os.getpid() if pid is None else pid)
        self._next_ping_usec: int | None = None
        if self.watchdog_usec is not None:
            self._next_ping_usec = self._clock()

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *assignments: str, fds: Sequence[int] = ()) -> bool:
        """One datagram of VAR=value lines, with `fds` attached."""
        if self._address is None:
            return False
        if len(fds) > NOTIFY_FDS_MAX:
            raise NotifyError(f"at most {NOTIFY_FDS_MAX} fds per notification")
        payload = "".join(a + "\n" for a in assignments).encode()
        ancillary = []
        if fds:
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.settimeout(NOTIFY_SEND_TIMEOUT_SECONDS)
            self._sock.sendmsg([payload], ancillary, 0, self._address)
        except OSError:
            self.errors += 1
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Listening (first start), or back after a re-exec/reload."""
        return self.send("READY=1", *self._status(status))

    def status(self, text: str) -> bool:
        return self.send(*self._status(text))

    def reloading(self, status: str | None = None) -> bool:
        """Before a re-exec or pivot; send `ready()` once it is done."""
        return self.send("RELOADING=1", f"MONOTONIC_USEC={self._clock()}", *self._status(status))

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *self._status(status))

    def extend_timeout(self, usec: int) -> bool:
        """Ask for `usec` more before the start/stop/reload timeout fires (long pivots)."""
        return self.send(f"EXTEND_TIMEOUT_USEC={usec}")

    def store_fds(self, name: str, fds: Sequence[int]) -> bool:
        """Push `fds` into the service manager's fd store under `name`."""
        check_fdname(name)
        if not fds:
            raise NotifyError("no fds to store")
        return self.send("FDSTORE=1", f"FDNAME={name}", fds=fds)

    def remove_fds(self, name: str) -> bool:
        check_fdname(name)
        return self.send("FDSTOREREMOVE=1", f"FDNAME={name}")

    # -- the watchdog ---------------------------------------------------------

    @property
    def watchdog_interval_usec(self) -> int | None:
        """How often to ping: half of WATCHDOG_USEC, or None when there is no watchdog."""
        return None if self.watchdog_usec is None else max(1, self.watchdog_usec // 2)

    def next_deadline_usec(self) -> int | None:
        """Monotonic time of the next WATCHDOG=1, or None when there is no watchdog."""
        return self._next_ping_usec if self.enabled else None

    def watchdog_tick(self) -> bool:
        """Ping if due; the event loop calls this at `next_deadline_usec()`."""
        interval = self.watchdog_interval_usec
        if self._next_ping_usec is None or interval is None or not self.enabled:
            return False
        now = self._clock()
        if now < self._next_ping_usec:
            return False
        self._next_ping_usec = now + interval
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @staticmethod
    def _status(text: str | None) -> list[str]:
        return [] if text is None else [f"STATUS={one_line(text)}"]


def _watchdog_usec(env: Mapping[str, str], pid: int) -> int | None:
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner is not None and owner != str(pid):
        return None
    return int(usec)
