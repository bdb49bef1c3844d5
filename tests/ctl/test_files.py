"""bootbusctl reading the runtime directory with no daemon at all: a step log
written by the real StepLog on a fake clock, and a summary written by the real
SummaryWriter for a process that is gone. Checks the log filters (priority,
phase, since, lines), rotation, the offline tables, and version skew."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bootbus.ctl import EXIT_OFFLINE_UNAVAILABLE, EXIT_USAGE, main
from bootbus.io.steplog import RECORD_MAX_BYTES, StepLog
from bootbus.io.summary import ConnectionSummary, NameSummary, Summary, SummaryWriter

T0 = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z


class FakeClock:
    def __init__(self) -> None:
        self.realtime = T0
        self.monotonic = 5_000_000

    def realtime_usec(self) -> int:
        return self.realtime

    def monotonic_usec(self) -> int:
        return self.monotonic

    def advance(self, seconds: int) -> None:
        self.realtime += seconds * 1_000_000
        self.monotonic += seconds * 1_000_000


def ctl(*args: str) -> Result:
    return CliRunner(mix_stderr=False).invoke(main, list(args), catch_exceptions=False)


def messages(result: Result) -> list[str]:
    assert result.exit_code == 0, result.stderr
    return [json.loads(line)["message"] for line in result.stdout.splitlines()]


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    """Six records over three phases, one minute apart."""
    clock = FakeClock()
    log = StepLog(tmp_path, clock=clock, phase="initramfs", kmsg_path=None, pid=1)
    log.info("listening", ADDRESS="unix:path=/run/bootbus/bus")
    clock.advance(60)
    log.error("cannot open /sysroot")
    clock.advance(60)
    log.set_phase("root")  # notice "boot phase initramfs -> root"
    clock.advance(60)
    log.warning("slow peer", PEER="a b")
    clock.advance(60)
    log.set_phase("shutdown")
    clock.advance(60)
    log.debug("bye")
    log.close()
    return tmp_path


def test_log_everything_in_order(logdir: Path) -> None:
    assert messages(ctl("--runtime-dir", str(logdir), "log", "--json")) == [
        "listening", "cannot open /sysroot", "boot phase initramfs -> root", "slow peer",
        "boot phase root -> shutdown", "bye"]


def test_log_text_lines(logdir: Path) -> None:
    result = ctl("--runtime-dir", str(logdir), "log", "-n", "3")
    assert result.exit_code == 0
    assert result.stderr == f"bootbus (files in {logdir}; no summary, daemon state unknown)\n"
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].endswith('root warning: slow peer  PEER="a b"')
    assert lines[2].endswith("shutdown debug: bye")


@pytest.mark.parametrize(("args", "expected"), [
    (["--priority", "err"], ["cannot open /sysroot"]),
    (["-p", "4"], ["cannot open /sysroot", "slow peer"]),
    (["--priority", "notice", "--phase", "root"], ["boot phase initramfs -> root", "slow peer"]),
    (["--phase", "initramfs", "--phase", "shutdown"],
     ["listening", "cannot open /sysroot", "boot phase root -> shutdown", "bye"]),
    (["--since", "2023-11-14T22:16:20+00:00"], ["slow peer", "boot phase root -> shutdown", "bye"]),
    (["--since=2023-11-14T22:18:20+00:00"], ["bye"]),
    (["-n", "2", "--priority", "notice"], ["slow peer", "boot phase root -> shutdown"]),
    (["-n", "0"], []),
])
def test_log_filters(logdir: Path, args: list[str], expected: list[str]) -> None:
    assert messages(ctl("--runtime-dir", str(logdir), "log", "--json", *args)) == expected


def test_log_since_relative_is_against_now(logdir: Path) -> None:
    assert messages(ctl("--runtime-dir", str(logdir), "log", "--json", "--since", "-10m")) == []
    everything = ctl("--runtime-dir", str(logdir), "log", "--json", "--since", "-100000d")
    assert len(messages(everything)) == 6


def test_log_json_lines_are_records(logdir: Path) -> None:
    result = ctl("--runtime-dir", str(logdir), "log", "--json", "--priority", "warning")
    first = json.loads(result.stdout.splitlines()[-1])
    assert first == {"seq": 4, "realtime_usec": T0 + 180_000_000,
                     "monotonic_usec": 5_000_000 + 180_000_000, "phase": "root",
                     "priority": 4, "message": "slow peer", "fields": {"PEER": "a b"}}


def test_log_reads_across_rotation(tmp_path: Path) -> None:
    log = StepLog(tmp_path, clock=FakeClock(), kmsg_path=None, pid=1,
                  max_bytes=2 * RECORD_MAX_BYTES)
    for i in range(400):
        log.info(f"record {i}", PAD="x" * 100)
    log.close()
    assert (tmp_path / "steplog.jsonl.1").exists()
    result = ctl("--runtime-dir", str(tmp_path), "log", "--json")
    seqs = [json.loads(line)["seq"] for line in result.stdout.splitlines()]
    assert seqs == list(range(seqs[0], 401)) and seqs[0] > 1  # contiguous, oldest rotated away


def test_log_missing_is_exit_3_and_bad_options_exit_2(tmp_path: Path) -> None:
    missing = ctl("--runtime-dir", str(tmp_path), "log")
    assert missing.exit_code == EXIT_OFFLINE_UNAVAILABLE and "no step log" in missing.stderr
    for bad in (["--priority", "9"], ["--since", "tomorrow"], ["-n", "-1"]):
        assert ctl("--runtime-dir", str(tmp_path), "log", *bad).exit_code == EXIT_USAGE


# -- offline tables from a summary ------------------------------------------------------------


def gone_pid() -> int:
    child = subprocess.Popen(["/bin/true"])
    child.wait()
    return child.pid


def write_summary(runtime_dir: Path) -> int:
    pid = gone_pid()
    summary = Summary(
        phase="initramfs", state="running", generation=2, pivots=1,
        started_realtime_usec=T0, started_monotonic_usec=1_000_000,
        connections=[
            ConnectionSummary(":1.10", pid=300, comm="udevd", uid=0,
                              names=["org.example.A", "org.example.B"], match_count=2,
                              queued_bytes=4096, queued_messages=3),
            ConnectionSummary(":1.2", pid=200, comm="plymouthd", uid=0,
                              names=["org.example.B"], match_count=0),
        ],
        connection_count=2,
        # :1.2 owns B, :1.10 waits for it: a connection's names list holds both
        names=[NameSummary("org.example.A", ":1.10"),
               NameSummary("org.example.B", ":1.2", queue_depth=1, queued=[":1.10"])],
        name_count=2)
    clock = FakeClock()
    clock.advance(90)
    writer = SummaryWriter(runtime_dir, lambda: summary, clock=clock, pid=pid)
    assert writer.flush()
    return pid


def test_offline_tables(tmp_path: Path) -> None:
    pid = write_summary(tmp_path)
    files = ("--runtime-dir", str(tmp_path))
    status = ctl(*files, "status", "--json")
    data = json.loads(status.stdout)
    assert (data["mode"], data["daemon_running"], data["pid"], data["phase"]) == (
        "offline", False, pid, "initramfs")
    assert (data["generation"], data["pivots"], data["connections"], data["names"]) == (2, 1, 2, 2)
    assert data["name_queue_waiting"] == 1 and data["queued_bytes"] == 4096
    assert data["uptime_seconds"] == 94.0  # written at monotonic 5 + 90 s, started at 1 s

    table = ctl(*files, "connections")
    assert table.stderr.startswith(f"bootbus (OFFLINE: daemon pid {pid} is not running")
    rows = [line.split() for line in table.stdout.splitlines()]
    assert rows == [["UNIQUE", "PID", "COMM", "UID", "NAMES", "MATCHES", "QUEUED"],
                    [":1.2", "200", "plymouthd", "0", "org.example.B", "0", "0"],
                    [":1.10", "300", "udevd", "0", "org.example.A", "2", "4096"]]

    names = [line.split() for line in ctl(*files, "names").stdout.splitlines()]
    assert names[1:] == [["org.example.A", ":1.10", "300", "udevd", "-"],
                         ["org.example.B", ":1.2", "200", "plymouthd", "1", "(:1.10)"]]

    matches = ctl(*files, "matches").stdout.splitlines()
    assert matches == [":1.2: 0 rules (the summary records the count only)",
                       ":1.10: 2 rules (the summary records the count only)"]


def test_offline_matches_shown_when_the_summary_records_them(tmp_path: Path) -> None:
    write_summary(tmp_path)
    path = tmp_path / "summary.json"
    obj = json.loads(path.read_text())
    obj["connections"][0]["matches"] = ["type='signal'", "member='Foo'"]
    obj["a_key_from_a_newer_bootbus"] = {"ignored": True}
    path.write_text(json.dumps(obj))
    result = ctl("--runtime-dir", str(tmp_path), "matches", "--json")
    rows = {r["unique_name"]: r for r in json.loads(result.stdout)["matches"]}
    assert rows[":1.10"]["rules"] == ["type='signal'", "member='Foo'"]
    assert rows[":1.2"]["rules"] is None


def test_unreadable_summary_is_exit_3(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text("{not json")
    result = ctl("--runtime-dir", str(tmp_path), "status")
    assert result.exit_code == EXIT_OFFLINE_UNAVAILABLE
    assert "cannot read" in result.stderr and "Traceback" not in result.stderr
