#!/usr/bin/python3
"""The pause a client sees while bootbus re-executes itself with many clients.

    /usr/bin/python3 bench/reexec_pause.py [--clients 1000] [--rounds 3]

Starts a private bootbus, connects ``--clients`` raw clients (SASL and Hello,
then idle), an echo service and a prober (each its own process) that calls
the service back to back and timestamps every reply. Then asks the bus to
re-execute ``--rounds`` times. For each round it prints the pause (the
longest gap between two replies the prober saw while the re-exec ran), the
daemon's own "N ms after exec" (exec to serving again) and "M ms after
asking the twin" (the new image asked the forked twin, which served while the
new image started, for the bus: M is what clients wait for), the snapshot size,
and how long the preflight ran (the bus serves during it). The target is a
pause of at most 100 ms with 1,000 clients.

It never touches the machine's buses and stops everything it started.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bootbus.client import Client, connect_socket
from bootbus.wire import message as m
from bootbus.wire.framer import Framer

PYTHON = "/usr/bin/python3"
ECHO = "org.bootbus.bench.Echo"
ECHO_PATH = "/org/bootbus/bench/Echo"
CONNECT_BATCH = 16  # below the bus's per-user bound on connections still authenticating
BASELINE_S = 0.5  # prober runs this long before and after each re-exec
TIMEOUT_S = 60.0
TARGET_MS = 100.0
FDS_NEEDED_PER_CLIENT = 2  # ours here and the daemon's


# -- the echo service and the prober (child processes) -----------------------------


def serve(address: str) -> int:
    with Client(address, timeout=None) as client:
        client.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                    "RequestName", "su", (ECHO, 4))
        print("ready", flush=True)
        for msg in client.messages():
            if msg.type == m.METHOD_CALL:
                client.send(m.build(m.METHOD_RETURN, client.next_serial(),
                                    reply_serial=msg.serial, destination=msg.sender,
                                    signature=msg.signature, body=msg.body))
    return 0


def probe(address: str) -> int:
    """Call the echo service back to back until stdin says stop; print reply times."""
    stamps: list[float] = []
    with Client(address, timeout=TIMEOUT_S) as client:
        print("ready", flush=True)
        poll = select.poll()
        poll.register(sys.stdin.fileno(), select.POLLIN)
        while not poll.poll(0):
            client.call(ECHO, ECHO_PATH, ECHO, "Echo", "u", (len(stamps),), timeout=TIMEOUT_S)
            stamps.append(time.monotonic())
    print(json.dumps(stamps), flush=True)
    return 0


# -- the bench -----------------------------------------------------------------------


def hello_bytes() -> bytes:
    uid = str(os.geteuid()).encode().hex().encode()
    hello = m.build(m.METHOD_CALL, 1, path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus", member="Hello",
                    destination="org.freedesktop.DBus")
    return b"\0AUTH EXTERNAL " + uid + b"\r\nBEGIN\r\n" + hello


def connect_idle_clients(address: str, count: int) -> list[socket.socket]:
    """``count`` connections that said Hello and then stay idle."""
    greeting = hello_bytes()
    socks: list[socket.socket] = []
    while len(socks) < count:
        batch = [connect_socket(address, TIMEOUT_S) for _ in range(min(CONNECT_BATCH,
                                                                         count - len(socks)))]
        for sock in batch:
            sock.sendall(greeting)
        for sock in batch:
            _wait_hello_reply(sock)
        socks.extend(batch)
    return socks


def _wait_hello_reply(sock: socket.socket) -> None:
    buf = b""
    while b"\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("the bus closed a client during authentication")
        buf += chunk
    line, _, rest = buf.partition(b"\r\n")
    if not line.startswith(b"OK "):
        raise ConnectionError(f"authentication refused: {line!r}")
    framer = Framer()
    messages = framer.feed(rest)
    while not any(msg.reply_serial == 1 for msg in messages):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the bus closed a client before answering Hello")
        messages += framer.feed(chunk)


def start_child(mode: str, address: str) -> subprocess.Popen[bytes]:
    child = subprocess.Popen([PYTHON, __file__, mode, address], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert child.stdout is not None
    if child.stdout.readline().strip() != b"ready":
        raise RuntimeError(f"{mode} did not start")
    return child


def longest_gap(stamps: list[float], start: float, end: float) -> float:
    """Longest time between two replies, counted over [start, end] (edges included)."""
    inside = [start] + [t for t in stamps if start < t < end] + [end]
    after = [t for t in stamps if t >= end]
    if after:
        inside[-1] = after[0]
    return max(b - a for a, b in itertools.pairwise(inside))


def run(clients: int, rounds: int, nice: int | None, source: Path) -> int:
    if nice is not None:  # children (daemon, service, prober) inherit it
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, clients * FDS_NEEDED_PER_CLIENT + 256)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    tmp = Path(tempfile.mkdtemp(prefix="bb-pause-"))
    sock_path = tmp / "sock"
    stderr_path = tmp / "stderr.log"
    env = dict(os.environ, PYTHONPATH=str(source))  # the daemon's code; clients use REPO's
    with open(stderr_path, "wb") as stderr:
        daemon = subprocess.Popen([PYTHON, "-m", "bootbus", "--address", f"unix:path={sock_path}",
                                   "--print-address", "--runtime-dir", str(tmp / "rt")],
                                  stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=tmp)
    children: list[subprocess.Popen[bytes]] = []
    socks: list[socket.socket] = []
    try:
        assert daemon.stdout is not None
        address = daemon.stdout.readline().decode().strip()
        if not address:
            raise RuntimeError(f"bootbus did not start: {stderr_path.read_text()}")
        started = time.monotonic()
        socks = connect_idle_clients(address, clients)
        print(f"{clients} clients connected in {time.monotonic() - started:.1f} s",
              flush=True)
        children.append(start_child("--serve", address))
        results = []
        with Client(address, timeout=TIMEOUT_S) as control:
            for number in range(1, rounds + 1):
                prober = start_child("--probe", address)
                time.sleep(BASELINE_S)
                asked = time.monotonic()
                control.call("org.bootbus", "/org/bootbus/Supervisor1",
                             "org.bootbus.Supervisor1", "Reexec", timeout=TIMEOUT_S)
                answered = time.monotonic()
                time.sleep(BASELINE_S)
                out, _ = prober.communicate(b"stop\n", timeout=TIMEOUT_S)
                stamps = json.loads(out.decode().strip().splitlines()[-1])
                results.append(_round(number, stamps, asked, answered, stderr_path,
                                      tmp / "rt" / "steplog.jsonl"))
        pauses = [r["pause_ms"] for r in results]
        print(f"pause with {clients} clients over {rounds} re-execs: worst {max(pauses):.1f} ms, "
              f"median {statistics.median(pauses):.1f} ms (target <= {TARGET_MS:.0f} ms)")
        print("command: /usr/bin/python3 bench/reexec_pause.py "
              f"--clients {clients} --rounds {rounds}"
              + (f" --nice {nice}" if nice is not None else "")
              + (f" --source {source}" if source != REPO else ""))
        return 0
    finally:
        for child in children:
            child.kill()
            child.wait()
        for sock in socks:
            sock.close()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def _prepare_ms(steplog: Path, generation: str) -> float:
    """The old image's PREPARE_MS (settle and snapshot) for the exec into ``generation``."""
    for line in steplog.read_text().splitlines():
        record = json.loads(line)
        if re.match(f"(re-executing|handing over): generation {generation},",
                    record["message"]):
            return float(record["fields"].get("PREPARE_MS", "nan"))
    return float("nan")


def _round(number: int, stamps: list[float], asked: float, answered: float,
           stderr_path: Path, steplog: Path) -> dict[str, float]:
    log = stderr_path.read_text()
    after_exec = re.findall(r"restored generation (\d+) .*?, ([\d.]+) ms after exec", log)
    after_ask = re.findall(r"restored generation (\d+) .*?, ([\d.]+) ms after the twin", log)
    executing = re.findall(r"(?:re-executing|handing over): generation (\d+), "
                           r"snapshot (\d+) bytes", log)
    gen = str(number + 1)
    exec_ms = next((float(ms) for g, ms in after_exec if g == gen), float("nan"))
    ask_ms = next((float(ms) for g, ms in after_ask if g == gen), float("nan"))
    size = next((int(b) for g, b in executing if g == gen), 0)
    pause = longest_gap(stamps, asked, answered) * 1000
    before = [b - a for a, b in itertools.pairwise(stamps) if b < asked]
    baseline = max(before) * 1000 if before else float("nan")
    twin = (f"{ask_ms:.1f} ms after asking the twin that served meanwhile"
            if not math.isnan(ask_ms) else "no twin")
    print(f"round {number}: pause {pause:.1f} ms; daemon: {exec_ms:.1f} ms after exec, {twin}, "
          f"{_prepare_ms(steplog, gen):.1f} ms to snapshot; snapshot {size} bytes; "
          f"Reexec answered after {(answered - asked) * 1000:.0f} ms "
          f"(preflight included, bus serving meanwhile); {len(stamps)} probe calls, "
          f"longest gap before: {baseline:.1f} ms", flush=True)
    return {"pause_ms": pause, "exec_ms": exec_ms}


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        return serve(sys.argv[2])
    if len(sys.argv) == 3 and sys.argv[1] == "--probe":
        return probe(sys.argv[2])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nice", type=int, default=None,
                        help="run everything at this nice value (e.g. -20 as root, so that "
                        "other load on a shared machine does not count in the pause)")
    parser.add_argument("--source", type=Path, default=REPO,
                        help="run the daemon from this tree (holding bootbus/), to compare")
    args = parser.parse_args()
    return run(args.clients, args.rounds, args.nice, args.source.resolve())


if __name__ == "__main__":
    sys.exit(main())
