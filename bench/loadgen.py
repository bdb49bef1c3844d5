"""Building and driving the C load generator (bench/loadgen.c).

Owns: compiling loadgen.c with gcc into bench/build/ when the source is
newer than the binary, and one loadgen session: start it, wait for "ready",
pin it, say "go", read its JSON result line, let it exit. It must never
interpret the numbers; workloads.py does that.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Self

import procfs

BENCH = Path(__file__).resolve().parent
SOURCE = BENCH / "loadgen.c"
BINARY = BENCH / "build" / "loadgen"
CFLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror"]
SETUP_TIMEOUT_S = 120.0  # connecting 1,000 clients to a slow broker
RESULT_GRACE_S = 60.0  # beyond the window: draining replies, re-exec
EXIT_TIMEOUT_S = 30.0  # closing 1,000 connections


class LoadgenError(RuntimeError):
    """The load generator failed; the message carries its stderr."""


def build() -> Path:
    """Compile loadgen.c unless the binary is up to date; returns its path."""
    if BINARY.exists() and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return BINARY
    if not shutil.which("gcc"):
        raise LoadgenError("gcc is needed to build bench/loadgen.c (apt-get install gcc libc6-dev)")
    BINARY.parent.mkdir(exist_ok=True)
    tmp = BINARY.with_suffix(".tmp")
    result = subprocess.run(["gcc", *CFLAGS, "-o", str(tmp), str(SOURCE)],
                            check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise LoadgenError(f"gcc failed:\n{result.stderr}")
    tmp.replace(BINARY)
    return BINARY


class Session:
    """One loadgen process: setup, measured window, result."""

    def __init__(self, mode: str, address: str, options: dict[str, Any]) -> None:
        argv = [str(BINARY), mode, address, *(f"{k}={v}" for k, v in options.items())]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self._pending = b""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise LoadgenError(f"no answer from loadgen within {timeout:.0f} s"
                                   f"{self._stderr(kill=True)}")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise LoadgenError(f"loadgen exited{self._stderr(kill=False)}")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode()

    def _stderr(self, kill: bool) -> str:
        if kill and self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        assert self.proc.stderr is not None
        err = self.proc.stderr.read().decode(errors="replace").strip()
        return f" (status {self.proc.returncode}): {err}"

    def ready(self, cpus: set[int] | None) -> None:
        line = self._line(SETUP_TIMEOUT_S)
        if line != "ready":
            raise LoadgenError(f"unexpected loadgen output {line!r}")
        if cpus:
            procfs.pin(self.pid, cpus)

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def result(self, window_s: float) -> dict[str, Any]:
        line = self._line(window_s + RESULT_GRACE_S)
        try:
            parsed: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LoadgenError(f"bad loadgen result {line!r}: {exc}") from exc
        return parsed

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr, self.proc.stdin):
            if stream is not None and not stream.closed:
                stream.close()
