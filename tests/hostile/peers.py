"""Peers of the hostile suite: the witness, attackers on raw sockets, and
attackers running as another user.

This module owns the client side of the attacks: a registered raw peer, a
raw peer that negotiated fd passing, the witness's "still served promptly"
check, and `ForeignUser`, a forked child that drops to another uid and holds
its connections until told to let go. The byte-level protocol comes from
tests/integration/rawwire.py, which shares no code with bootbus.

It must never import bootbus, never block without a timeout, and never leave
a child process behind: ForeignUser kills and reaps its child on exit.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import traceback
from collections.abc import Callable
from typing import Any, Self

from integration import rawwire as rw
from integration.buses import Bus

# A call to the driver must be answered within this, even under attack.
PROMPT_S = 1.0
# How long a forked attacker may take to report, and to exit once released.
CHILD_TIMEOUT_S = 20.0
NOBODY = 65534
THIRD_UID = 65533  # neither root nor nobody: a bystander user


def registered(bus: Bus, timeout: float = 5.0) -> rw.RawPeer:
    peer = rw.RawPeer(bus.socket_path, timeout=timeout)
    peer.authenticate()
    peer.hello()
    return peer


def registered_with_fds(bus: Bus) -> rw.RawPeer:
    """A raw peer that negotiated unix fd passing before BEGIN."""
    peer = rw.RawPeer(bus.socket_path)
    assert peer.auth_external().startswith("OK ")
    peer.send(b"NEGOTIATE_UNIX_FD\r\n")
    assert peer.sasl_line() == "AGREE_UNIX_FD"
    peer.send(b"BEGIN\r\n")
    peer.hello()
    return peer


def assert_served_promptly(witness: rw.RawPeer) -> float:
    """The witness's calls are answered correctly and within PROMPT_S; return the slowest."""
    slowest = 0.0
    for member, sig, args, expect in (
        ("NameHasOwner", "s", (witness.unique_name,), [True]),
        ("GetNameOwner", "s", (rw.DRIVER,), [rw.DRIVER]),
    ):
        start = time.monotonic()
        reply = witness.call(member, sig, args)
        took = time.monotonic() - start
        slowest = max(slowest, took)
        assert reply.msg_type == rw.METHOD_RETURN, f"{member}: {reply.error_name}"
        assert reply.args() == expect
        assert took < PROMPT_S, f"{member} took {took:.2f}s under attack (bound {PROMPT_S}s)"
    return slowest


def call_header(**fields: object) -> dict[int, object]:
    """Header fields of a GetId call, with some replaced (None removes one)."""
    base: dict[int, object] = {rw.PATH: rw.DRIVER_PATH, rw.INTERFACE: rw.DRIVER,
                               rw.MEMBER: "GetId", rw.DESTINATION: rw.DRIVER}
    base.update({getattr(rw, k.upper()): v for k, v in fields.items()})
    return {k: v for k, v in base.items() if v is not None}


def assert_disconnected(peer: rw.RawPeer, timeout: float = 5.0) -> bytes:
    """The bus hangs up on the peer (what it sent first is returned)."""
    try:
        return peer.wait_closed(timeout)
    except (BrokenPipeError, ConnectionResetError):
        return b""


class ForeignUser:
    """Run `attack(report)` in a child that has dropped to `uid`.

    The child calls `report(dict)` once its attack is in place; the parent
    reads that with :meth:`wait_report`, does its checks while the child
    holds on, then :meth:`release` lets the child close everything and exit.
    """

    def __init__(self, uid: int, attack: Callable[[Callable[[dict[str, Any]], None]], None]):
        self.uid = uid
        report_r, report_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                os.close(report_r)
                os.close(go_w)
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)

                def report(data: dict[str, Any]) -> None:
                    os.write(report_w, json.dumps(data).encode() + b"\n")
                    os.read(go_r, 1)  # hold everything open until released

                attack(report)
                code = 0
            except BaseException:  # noqa: BLE001 - the forked child reports anything, then exits
                os.write(report_w, json.dumps({"error": traceback.format_exc()}).encode() + b"\n")
            finally:
                os._exit(code)
        os.close(report_w)
        os.close(go_r)
        self.pid = pid
        self._report = os.fdopen(report_r, "rb")
        self._go = go_w

    def wait_report(self) -> dict[str, Any]:
        import select
        ready, _, _ = select.select([self._report], [], [], CHILD_TIMEOUT_S)
        assert ready, f"the uid {self.uid} attacker did not report within {CHILD_TIMEOUT_S}s"
        line = self._report.readline()
        assert line, f"the uid {self.uid} attacker exited without a report"
        data: dict[str, Any] = json.loads(line)
        assert "error" not in data, f"the uid {self.uid} attacker failed:\n{data['error']}"
        return data

    def release(self) -> None:
        """Let the child close its connections and exit; reap it."""
        if self._go >= 0:
            try:
                os.write(self._go, b"x")
            except BrokenPipeError:
                pass
            os.close(self._go)
            self._go = -1
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while time.monotonic() < deadline:
            pid, _status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self._report.close()
                return
            time.sleep(0.02)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        self._report.close()
        raise AssertionError(f"the uid {self.uid} attacker did not exit once released")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def open_unix(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5.0)
    sock.connect(path)
    return sock
