"""Run the real D-Bus command-line clients against a bus under test.

This module owns the subprocesses of busctl, gdbus, dbus-send, dbus-monitor
and the helper scripts: one-shot runs with a timeout, and background runs
(monitors, services) whose stdout lines are collected by a reader thread so a
test can wait for a line with a deadline.

It must never run a tool without a timeout, never let a background process
outlive its test, and never talk to the machine's own system or session bus
(every command gets an explicit address; DBUS_*_BUS_ADDRESS are removed).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Self

from .buses import PYTHON, REPO_ROOT

# Seconds a one-shot client run may take.
TOOL_TIMEOUT_S = 10.0
# Seconds a background tool gets to exit after SIGINT/SIGTERM before SIGKILL.
TOOL_STOP_TIMEOUT_S = 3.0


def tool_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBUS_")}
    env.update(LC_ALL="C.UTF-8", SYSTEMD_PAGER="", PAGER="cat", SYSTEMD_COLORS="0",
               PYTHONDONTWRITEBYTECODE="1")
    return env


def run(cmd: Sequence[str], *, check: bool = True,
        timeout: float = TOOL_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run a client to completion; with check, fail with its stderr if it fails."""
    done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                          env=tool_env(), stdin=subprocess.DEVNULL, check=False)
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {done.returncode}\nstdout: {done.stdout}\n"
            f"stderr: {done.stderr}"
        )
    return done


class Background:
    """A long-running client whose stdout lines are gathered as they come."""

    def __init__(self, cmd: Sequence[str], *, stop_signal: int = signal.SIGINT) -> None:
        self.cmd = list(cmd)
        self.stop_signal = stop_signal
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(
            self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=tool_env(), cwd=REPO_ROOT,
        )
        self._stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def wait_for_line(self, predicate: Callable[[str], bool],
                      timeout: float = TOOL_TIMEOUT_S) -> str:
        """Return the first new stdout line matching predicate (all are kept in lines)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                raise TimeoutError(
                    f"{self.cmd[0]}: no matching line within {timeout}s; got {self.lines[-20:]}"
                ) from None
            if line is None:
                raise AssertionError(f"{self.cmd[0]} exited early; output {self.lines[-20:]}")
            self.lines.append(line)
            if predicate(line):
                return line

    def poll_lines(self, within: float) -> list[str]:
        """Collect the lines that arrive within the given time."""
        deadline = time.monotonic() + within
        got: list[str] = []
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            got.append(line)
        return got

    def stop(self) -> int:
        """Stop the tool, collect its stderr, and return its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
        try:
            self.proc.wait(timeout=TOOL_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=TOOL_STOP_TIMEOUT_S)
        for reader in self._readers:
            reader.join(timeout=TOOL_STOP_TIMEOUT_S)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return self.proc.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def python_script(name: str, *args: str) -> list[str]:
    """The command running one of this directory's helper scripts."""
    return [PYTHON, os.path.join(os.path.dirname(__file__), name), *args]


# How often a test re-emits a signal while waiting for a monitor to see it.
EMIT_RETRY_S = 0.2


def emit_until_seen(emit: Callable[[], None], tool: Background,
                    predicate: Callable[[str], bool],
                    timeout: float = TOOL_TIMEOUT_S) -> str:
    """Emit a signal repeatedly until a monitor prints a matching line.

    A monitor has no portable "I am subscribed now" output, so the test keeps
    emitting until the first copy shows up; a bus that never delivers fails.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        emit()
        try:
            return tool.wait_for_line(predicate, timeout=EMIT_RETRY_S)
        except TimeoutError:
            continue
    raise TimeoutError(f"{tool.cmd[0]} never showed the signal; got {tool.lines[-20:]}")
