"""bootbusctl against a real daemon: every command live, and offline after kill -9.

A daemon is started from the repository root exactly as an operator would;
bootbusctl runs in-process through click's CliRunner (its stderr apart, where
the mode line goes), except `monitor` and `log --follow`, which run as
processes because they wait for traffic. Peers are bootbus.client clients
that own and queue for names and add match rules, so the tables have real
rows to show. The pcap written by `monitor --pcap` is read back by tshark.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bootbus.client import BUS, BUS_PATH, Client
from bootbus.ctl import (
    EXIT_BUS,
    EXIT_OFFLINE_UNAVAILABLE,
    EXIT_USAGE,
    LINKTYPE_DBUS,
    PCAP_MAGIC,
    PCAP_SNAPLEN,
    main,
)
from bootbus.io.summary import SummaryError, read_summary
from bootbus.wire import message as m

REPO = Path(__file__).resolve().parent.parent
PYTHON = "/usr/bin/python3"
START_TIMEOUT = 10.0
SUMMARY_WAIT = 5.0  # the summary is rewritten at most every 250 ms; be generous
NAME = "org.example.CtlTest"
MATCH_RULE = "type='signal',interface='org.example.CtlTest'"
OWN_COMM = Path("/proc/self/comm").read_text().strip()


@dataclass
class Daemon:
    proc: subprocess.Popen[str]
    address: str
    runtime_dir: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


def start_daemon(tmp: Path, *, default_address: bool = False) -> Daemon:
    """The daemon on TMP/sock, or on its default RUNTIME_DIR/bus."""
    runtime_dir = tmp / "rt"
    address = f"unix:path={runtime_dir}/bus" if default_address else f"unix:path={tmp}/sock"
    flags = [] if default_address else ["--address", address]
    proc = subprocess.Popen(
        [PYTHON, "-m", "bootbus", *flags, "--runtime-dir", str(runtime_dir), "--print-address"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line.startswith(address + ","), f"daemon printed {line!r}"
    return Daemon(proc, address, runtime_dir)


def stop_daemon(daemon: Daemon) -> None:
    if daemon.proc.poll() is None:
        daemon.proc.send_signal(signal.SIGTERM)
        try:
            daemon.proc.wait(5)
        except subprocess.TimeoutExpired:
            daemon.proc.kill()
            daemon.proc.wait()
    if daemon.proc.stdout is not None:
        daemon.proc.stdout.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = start_daemon(tmp_path_factory.mktemp("ctl"))
    yield running
    stop_daemon(running)


@dataclass
class Peers:
    owner: Client
    queued: Client


@pytest.fixture(scope="module")
def peers(daemon: Daemon) -> Iterator[Peers]:
    """One peer owning NAME with a match rule, one queued behind it."""
    owner, queued = Client(daemon.address), Client(daemon.address)
    assert request_name(owner, NAME) == 1  # primary owner
    assert request_name(queued, NAME) == 2  # in queue
    owner.add_match(MATCH_RULE)
    yield Peers(owner, queued)
    owner.close()
    queued.close()


def request_name(client: Client, name: str) -> int:
    (code,) = client.call(BUS, BUS_PATH, BUS, "RequestName", "su", (name, 0))
    return int(code)


def ctl(*args: str) -> Result:
    return CliRunner(mix_stderr=False).invoke(main, list(args), catch_exceptions=False)


def live(daemon: Daemon, *args: str) -> Result:
    return ctl("--address", daemon.address, *args)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result


def json_of(result: Result) -> Any:
    return json.loads(ok(result).stdout)


def has_method(daemon: Daemon, member: str) -> bool:
    """Whether the daemon implements an optional org.bootbus.Supervisor1 method yet."""
    with Client(daemon.address) as client:
        serial = client.call_async("org.bootbus", "/org/bootbus/Supervisor1",
                                   "org.bootbus.Supervisor1", member)
        reply = client.wait_reply(serial, 5)
    return not (reply.type == m.ERROR
                and reply.error_name == "org.freedesktop.DBus.Error.UnknownMethod")


# -- live ----------------------------------------------------------------------------------------


def test_status_live_table_names_the_mode(daemon: Daemon, peers: Peers) -> None:
    result = ok(live(daemon, "status"))
    assert result.stderr.splitlines()[0] == f"bootbus (live, {daemon.address})"
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    assert lines["PID"].strip() == str(daemon.pid)
    assert lines["Names"].strip() == "1 well-known, 1 waiting in name queues"


def test_status_live_json(daemon: Daemon, peers: Peers) -> None:
    status = json_of(live(daemon, "status", "--json"))
    assert status["mode"] == "live" and status["address"] == daemon.address
    assert status["pid"] == daemon.pid
    assert status["generation"] >= 1 and status["pivots"] == 0
    assert status["names"] == 1 and status["name_queue_waiting"] == 1
    assert status["connections"] >= 3  # the two peers and bootbusctl itself
    assert 0 <= status["uptime_seconds"] < 600
    assert isinstance(status["last_errors"], list)


def test_names_live(daemon: Daemon, peers: Peers) -> None:
    rows = {r["name"]: r for r in json_of(live(daemon, "names", "--json"))["names"]}
    row = rows[NAME]
    assert row["owner"] == peers.owner.unique_name
    assert row["pid"] == os.getpid() and row["comm"] == OWN_COMM
    assert row["queue_depth"] == 1 and row["queued"] == [peers.queued.unique_name]
    assert rows[BUS]["owner"] == BUS and rows[BUS]["pid"] == daemon.pid
    assert rows["org.bootbus"]["owner"] == BUS  # answered by the bus itself
    assert peers.owner.unique_name not in rows  # unique names only with --unique
    table = ok(live(daemon, "names")).stdout.splitlines()
    assert table[0].split() == ["NAME", "OWNER", "PID", "COMM", "QUEUE"]
    assert (f"{NAME} {peers.owner.unique_name} {os.getpid()} {OWN_COMM} 1 "
            f"({peers.queued.unique_name})") in [" ".join(line.split()) for line in table]


def test_names_live_unique(daemon: Daemon, peers: Peers) -> None:
    rows = {r["name"]: r for r in json_of(live(daemon, "names", "--unique", "--json"))["names"]}
    assert rows[peers.queued.unique_name]["owner"] == peers.queued.unique_name
    assert rows[peers.queued.unique_name]["pid"] == os.getpid()


def test_connections_live(daemon: Daemon, peers: Peers) -> None:
    rows = {r["unique_name"]: r
            for r in json_of(live(daemon, "connections", "--json"))["connections"]}
    owner = rows[peers.owner.unique_name]
    assert owner["pid"] == os.getpid() and owner["comm"] == OWN_COMM
    assert owner["uid"] == os.geteuid() and owner["names"] == [NAME]
    assert rows[peers.queued.unique_name]["names"] == []
    table = [line.split() for line in ok(live(daemon, "connections")).stdout.splitlines()]
    assert table[0] == ["UNIQUE", "PID", "COMM", "UID", "NAMES", "MATCHES", "QUEUED"]
    owner_line = next(line for line in table if line[0] == peers.owner.unique_name)
    if has_method(daemon, "ListConnections"):
        assert owner["match_count"] == 1 and owner["queued_bytes"] == 0
        assert owner_line[5:] == ["1", "0"]
    else:  # the driver alone knows neither: shown as unknown, never as 0
        assert owner["match_count"] is None and owner["queued_bytes"] is None
        assert owner_line[5:] == ["-", "-"]


def test_matches_live(daemon: Daemon, peers: Peers) -> None:
    result = live(daemon, "matches", "--json")
    if has_method(daemon, "ListMatches"):
        rows = {r["unique_name"]: r for r in json_of(result)["matches"]}
        assert rows[peers.owner.unique_name]["rules"] == [MATCH_RULE]
    else:
        assert result.exit_code == EXIT_BUS
        assert "ListMatches" in result.stderr and "Traceback" not in result.stderr


def test_dump_state_live(daemon: Daemon, peers: Peers) -> None:
    state = json_of(live(daemon, "dump-state"))
    assert state["mode"] == "live" and state["status"]["pid"] == daemon.pid
    assert NAME in {n["name"] for n in state["names"]}
    assert peers.owner.unique_name in {c["unique_name"] for c in state["connections"]}


def test_call_prints_the_reply(daemon: Daemon, peers: Peers) -> None:
    result = ok(live(daemon, "call", BUS, BUS_PATH, f"{BUS}.GetNameOwner", "s", NAME))
    assert result.stdout == f's "{peers.owner.unique_name}"\n'
    reply = json_of(live(daemon, "call", "--json", BUS, BUS_PATH, f"{BUS}.ListQueuedOwners",
                         "s", NAME))
    assert reply["signature"] == "as"
    assert reply["args"] == [[peers.owner.unique_name, peers.queued.unique_name]]


def test_call_error_reply_exits_1_without_traceback(daemon: Daemon) -> None:
    result = live(daemon, "call", BUS, BUS_PATH, f"{BUS}.GetNameOwner", "s", "org.example.None")
    assert result.exit_code == EXIT_BUS
    assert "org.freedesktop.DBus.Error.NameHasNoOwner" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [
    ("i", "ten"),  # not an integer
    ("s",),  # missing value
    ("s", "a", "b"),  # one too many
    ("as", "3", "a", "b"),  # array shorter than its count
    ("o", "not/a/path"),
    ("a{sv}",),  # not expressible on the command line
])
def test_call_bad_arguments_are_usage_errors(daemon: Daemon, args: tuple[str, ...]) -> None:
    result = live(daemon, "call", BUS, BUS_PATH, f"{BUS}.GetId", *args)
    assert result.exit_code == EXIT_USAGE, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr


def test_emit_marshals_every_basic_type(daemon: Daemon) -> None:
    with Client(daemon.address) as listener:
        listener.add_match("type='signal',interface='org.example.Emit'")
        ok(live(daemon, "emit", "/org/example", "org.example.Emit.Everything", "ybnqiuxtdsogasv",
                "7", "yes", "-3", "3", "-5", "4", "-9", "9", "2.5", "hello world", "/a/b",
                "a{sv}", "2", "x", "y", "s", "inner"))
        signal_msg = next(msg for msg in listener.messages(timeout=5)
                          if msg.member == "Everything")
        assert signal_msg.path == "/org/example"
        assert signal_msg.args() == [7, True, -3, 3, -5, 4, -9, 9, 2.5, "hello world", "/a/b",
                                     "a{sv}", ["x", "y"], ("s", "inner")]


# -- monitor and pcap ---------------------------------------------------------------------------


def start_monitor(daemon: Daemon, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([PYTHON, "-m", "bootbus.ctl", "--address", daemon.address,
                             "monitor", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    ready = proc.stderr.readline()  # printed once BecomeMonitor is answered
    assert ready.startswith("bootbus (live"), ready + proc.stderr.read()
    return proc


def test_monitor_pcap_is_read_by_tshark(daemon: Daemon, tmp_path: Path) -> None:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.fail("tshark is missing (apt-get install tshark): the pcap cannot be checked")
    pcap = tmp_path / "bus.pcap"
    proc = start_monitor(daemon, "--count", "2", "--duration", "10", "--pcap", str(pcap),
                         "interface='org.example.Pcap'")
    with Client(daemon.address) as peer:
        peer.send(m.build(m.SIGNAL, peer.next_serial(), path="/org/example",
                          interface="org.example.Pcap", member="FirstSignal", signature="s",
                          args=("one",)))
        peer.send(m.build(m.SIGNAL, peer.next_serial(), path="/org/example",
                          interface="org.example.Pcap", member="SecondSignal", signature="as",
                          args=(["x", "y"],)))
        stdout, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    lines = stdout.splitlines()
    assert len(lines) == 2
    assert "signal" in lines[0] and "member=FirstSignal" in lines[0] and 'args=["one"]' in lines[0]
    assert f"sender={peer.unique_name}" in lines[0] and "path=/org/example" in lines[0]
    assert 'args=[["x", "y"]]' in lines[1]

    data = pcap.read_bytes()
    magic, major, minor, _zone, _sigfigs, snaplen, linktype = struct.unpack_from("=IHHiIII", data)
    assert (magic, major, minor, snaplen, linktype) == (PCAP_MAGIC, 2, 4, PCAP_SNAPLEN,
                                                         LINKTYPE_DBUS) == (0xA1B2C3D4, 2, 4,
                                                                            1 << 27, 231)
    members = []
    pos = 24
    while pos < len(data):
        _sec, _usec, incl, orig = struct.unpack_from("=IIII", data, pos)
        assert incl == orig
        members.append(m.parse(data[pos + 16:pos + 16 + incl]).member)
        pos += 16 + incl
    assert members == ["FirstSignal", "SecondSignal"]

    decoded = subprocess.run([tshark, "-r", str(pcap), "-V"], capture_output=True, text=True,
                             timeout=60, check=False)
    assert decoded.returncode == 0, decoded.stderr
    assert "D-Bus" in decoded.stdout
    assert "Member: FirstSignal" in decoded.stdout
    assert "Member: SecondSignal" in decoded.stdout


def test_monitor_json_lines_and_rules(daemon: Daemon) -> None:
    proc = subprocess.Popen([PYTHON, "-m", "bootbus.ctl", "--address", daemon.address, "monitor",
                             "--json", "--count", "1", "--duration", "10",
                             "interface='org.example.Json'"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    with Client(daemon.address) as peer:
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:  # until it is monitoring
            peer.send(m.build(m.SIGNAL, peer.next_serial(), path="/j",
                              interface="org.example.Other", member="Ignored"))
            peer.send(m.build(m.SIGNAL, peer.next_serial(), path="/j",
                              interface="org.example.Json", member="Wanted", signature="u",
                              args=(42,)))
            time.sleep(0.05)
        stdout, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    (line,) = stdout.splitlines()
    info = json.loads(line)
    assert (info["type"], info["member"], info["args"], info["sender"]) == (
        "signal", "Wanted", [42], peer.unique_name)


def test_monitor_duration_ends_quietly(daemon: Daemon) -> None:
    proc = start_monitor(daemon, "--duration", "0.3", "interface='org.example.Nothing'")
    stdout, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0 and stdout == "", stderr


# -- log ----------------------------------------------------------------------------------


def test_log_live_daemon_records_connections(daemon: Daemon, peers: Peers) -> None:
    args = ("--runtime-dir", str(daemon.runtime_dir), "log")
    records = [json.loads(line) for line in ok(ctl(*args, "--json")).stdout.splitlines()]
    assert records, "the daemon wrote no step log"
    assert [r["seq"] for r in records] == sorted({r["seq"] for r in records})
    ours = [r for r in records if r["fields"].get("PEER_PID") == str(os.getpid())]
    assert ours, "no record of our own connections"
    text = ok(ctl(*args))
    assert f"daemon pid {daemon.pid} is running" in text.stderr
    assert len(text.stdout.splitlines()) == len(records)
    warnings = ok(ctl(*args, "--priority", "warning", "--json")).stdout.splitlines()
    assert all(json.loads(line)["priority"] <= 4 for line in warnings)


def test_log_follow_prints_new_records(daemon: Daemon) -> None:
    proc = subprocess.Popen([PYTHON, "-m", "bootbus.ctl", "--runtime-dir", str(daemon.runtime_dir),
                             "log", "--follow", "--json", "-n", "0"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        assert proc.stderr.readline().startswith("bootbus (files in")
        time.sleep(0.3)  # past LogTail's first read: what follows is new
        with Client(daemon.address):
            pass
        record = json.loads(proc.stdout.readline())
        assert record["fields"].get("PEER_PID") == str(os.getpid())
    finally:
        proc.terminate()
        proc.communicate(timeout=5)


# -- offline after kill -9 ---------------------------------------------------------------------


def wait_for_summary(runtime_dir: Path, unique_names: set[str]) -> None:
    deadline = time.monotonic() + SUMMARY_WAIT
    while time.monotonic() < deadline:
        try:
            summary = read_summary(runtime_dir).summary
        except SummaryError:
            summary = None
        if summary is not None and unique_names <= {c.unique_name for c in summary.connections}:
            return
        time.sleep(0.05)
    pytest.fail(f"summary.json in {runtime_dir} never listed {unique_names} "
                f"(files: {sorted(os.listdir(runtime_dir))})")


def test_offline_after_kill_9(tmp_path: Path) -> None:
    dead = start_daemon(tmp_path)
    try:
        owner, queued = Client(dead.address), Client(dead.address)
        try:
            assert request_name(owner, "org.example.Survivor") == 1
            assert request_name(queued, "org.example.Survivor") == 2
            owner.add_match(MATCH_RULE)
            wait_for_summary(dead.runtime_dir, {owner.unique_name, queued.unique_name})
            os.kill(dead.pid, signal.SIGSTOP)  # wedged first: alive, but never answers
            check_wedged(dead, owner.unique_name)
            os.kill(dead.pid, signal.SIGKILL)
            dead.proc.wait(5)
            check_offline(dead, owner.unique_name, queued.unique_name)
        finally:
            owner.close()
            queued.close()
    finally:
        stop_daemon(dead)


def check_wedged(wedged: Daemon, owner: str) -> None:
    started = time.monotonic()
    data = json_of(ctl("--address", wedged.address, "--runtime-dir", str(wedged.runtime_dir),
                       "--timeout", "0.5", "connections", "--json"))
    assert time.monotonic() - started < 5
    assert data["mode"] == "offline" and data["daemon_running"] is True
    assert "wedged" in data["live_error"]
    assert owner in {c["unique_name"] for c in data["connections"]}
    table = ok(ctl("--address", wedged.address, "--runtime-dir", str(wedged.runtime_dir),
                   "--timeout", "0.5", "status"))
    assert table.stderr.startswith(f"bootbus (offline, from the files in {wedged.runtime_dir}: "
                                   f"process {wedged.pid} is running; state as of ")


def check_offline(dead: Daemon, owner: str, queued: str) -> None:
    files = ("--runtime-dir", str(dead.runtime_dir))
    status = ok(ctl(*files, "status"))
    assert status.stderr.startswith(f"bootbus (OFFLINE: daemon pid {dead.pid} is not running")
    assert "state as of" in status.stderr
    data = json_of(ctl(*files, "status", "--json"))
    assert data["mode"] == "offline" and data["daemon_running"] is False
    assert data["pid"] == dead.pid and data["connections"] >= 2 and data["names"] == 1
    assert data["name_queue_waiting"] == 1

    names = {r["name"]: r for r in json_of(ctl(*files, "names", "--json"))["names"]}
    survivor = names["org.example.Survivor"]
    assert (survivor["owner"], survivor["queued"], survivor["pid"]) == (owner, [queued],
                                                                          os.getpid())
    conns = {r["unique_name"]: r for r in json_of(ctl(*files, "connections", "--json"))
             ["connections"]}
    assert conns[owner]["names"] == ["org.example.Survivor"]
    assert conns[owner]["pid"] == os.getpid() and conns[owner]["uid"] == os.geteuid()
    assert conns[owner]["match_count"] == 1 and conns[queued]["match_count"] == 0
    assert conns[queued]["names"] == []  # it only waits for the name, as live mode shows
    table = ok(ctl(*files, "connections"))
    assert "OFFLINE" in table.stderr and owner in table.stdout
    matches = {r["unique_name"]: r for r in json_of(ctl(*files, "matches", "--json"))["matches"]}
    assert matches[owner]["match_count"] == 1
    assert matches[owner]["rules"] in (None, [MATCH_RULE])

    log = ok(ctl(*files, "log"))
    assert "OFFLINE" in log.stderr
    assert f"pid {os.getpid()}" in log.stdout  # "connection from pid N ..."

    # Both flags: the live bus is tried first, then the files, and the reason is kept.
    both = json_of(ctl("--address", dead.address, *files, "status", "--json"))
    assert both["mode"] == "offline" and "cannot connect" in both["live_error"]
    dump = json_of(ctl(*files, "dump-state"))
    assert dump["mode"] == "offline" and dump["summary"]["pid"] == dead.pid
    # --address alone means live only: a dead bus is an error, not stale data.
    only_live = ctl("--address", dead.address, "status")
    assert only_live.exit_code == EXIT_BUS and "cannot connect" in only_live.stderr


def test_neither_flag_tries_live_then_the_files(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """No flags: the bus at RUNTIME_DIR/bus, and after kill -9 that directory's files."""
    monkeypatch.delenv("BOOTBUS_ADDRESS", raising=False)
    auto = start_daemon(tmp_path, default_address=True)
    monkeypatch.setattr("bootbus.ctl.sources.default_runtime_dir", lambda: str(auto.runtime_dir))
    try:
        with Client(auto.address) as peer:
            assert request_name(peer, "org.example.Auto") == 1
            status = ok(ctl("status"))
            assert status.stderr == f"bootbus (live, {auto.address})\n"
            wait_for_summary(auto.runtime_dir, {peer.unique_name})
            os.kill(auto.pid, signal.SIGKILL)
            auto.proc.wait(5)
            names = json_of(ctl("names", "--json"))
            assert names["mode"] == "offline" and "Connection refused" in names["live_error"]
            assert [n["owner"] for n in names["names"] if n["name"] == "org.example.Auto"] == [
                peer.unique_name]
            assert ok(ctl("status")).stderr.startswith(
                f"bootbus (OFFLINE: daemon pid {auto.pid} is not running")
    finally:
        stop_daemon(auto)


def test_clients_log_through_the_bus_with_call(daemon: Daemon) -> None:
    """An early tool logs with `call` (org.bootbus.Log1); `log` finds it by priority."""
    ok(live(daemon, "call", "org.bootbus", "/org/bootbus", "org.bootbus.Log1.Log", "ysa{ss}",
            "2", "ctl test: the disk is on fire", "1", "DISK", "sda"))
    records = [json.loads(line) for line in ok(ctl(
        "--runtime-dir", str(daemon.runtime_dir), "log", "--json", "--priority", "crit",
    )).stdout.splitlines()]
    ours = [r for r in records if r["message"] == "ctl test: the disk is on fire"]
    assert len(ours) == 1 and ours[0]["priority"] == 2 and ours[0]["fields"]["DISK"] == "sda"
    assert all(r["priority"] <= 2 for r in records)
    # crit is an error, so status shows it, from the step log in the runtime directory
    # (the socket is not in it here, so it is named: both flags, live first).
    status = json_of(live(daemon, "--runtime-dir", str(daemon.runtime_dir), "status", "--json"))
    assert status["mode"] == "live" and status["step_log"] == str(daemon.runtime_dir)
    assert "ctl test: the disk is on fire" in [e["message"] for e in status["last_errors"]]
    table = ok(live(daemon, "--runtime-dir", str(daemon.runtime_dir), "status")).stdout
    assert "[root] crit: ctl test: the disk is on fire" in table


# -- exit codes ---------------------------------------------------------------------------------


def test_no_daemon_no_files_is_exit_3(tmp_path: Path) -> None:
    for command in ("status", "names", "connections", "log", "dump-state"):
        result = ctl("--runtime-dir", str(tmp_path), command)
        assert result.exit_code == EXIT_OFFLINE_UNAVAILABLE, (command, result.stderr)
        assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr
    # Neither flag given and nothing there: both failures are reported.
    result = ctl("--address", f"unix:path={tmp_path}/nosock", "--runtime-dir", str(tmp_path),
                 "status")
    assert result.exit_code == EXIT_OFFLINE_UNAVAILABLE
    assert "cannot connect" in result.stderr and "no summary" in result.stderr


def test_unreachable_bus_is_exit_1(tmp_path: Path) -> None:
    address = f"unix:path={tmp_path}/nosock"
    for args in (["status"], ["call", BUS, BUS_PATH, f"{BUS}.GetId"], ["monitor"], ["reexec"]):
        result = ctl("--address", address, *args)
        assert result.exit_code == EXIT_BUS, (args, result.stderr)
        assert f"cannot connect to {address}" in result.stderr


def test_usage_errors_are_exit_2(tmp_path: Path) -> None:
    assert ctl("no-such-command").exit_code == EXIT_USAGE
    assert ctl("--runtime-dir", str(tmp_path), "log", "--priority", "loud").exit_code == EXIT_USAGE
    assert ctl("--runtime-dir", str(tmp_path), "log", "--since", "yesterday").exit_code == \
        EXIT_USAGE


def test_help_documents_modes_and_exit_codes() -> None:
    text = ok(ctl("--help")).stdout
    assert "Exit status:" in text
    for line in ("0  success", "1  the bus could not be reached", "2  usage error",
                 "3  offline data unavailable"):
        assert line in text


# -- steering -------------------------------------------------------------------------------------


def test_reexec_keeps_the_bus_and_bumps_the_generation(daemon: Daemon, peers: Peers) -> None:
    before = json_of(live(daemon, "status", "--json"))
    result = ok(live(daemon, "reexec"))
    assert "re-executed" in result.stdout
    after = json_of(live(daemon, "status", "--json"))
    assert after["generation"] == before["generation"] + 1 and after["pid"] == daemon.pid
    rows = {r["name"]: r for r in json_of(live(daemon, "names", "--json"))["names"]}
    assert rows[NAME]["owner"] == peers.owner.unique_name  # connections survived


def test_pivot_into_a_missing_root_is_refused(daemon: Daemon, tmp_path: Path) -> None:
    result = live(daemon, "pivot", "--prepare", str(tmp_path / "nowhere"))
    assert result.exit_code == EXIT_BUS
    assert "cannot open new root" in result.stderr


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
