"""The offline summary: coalesced atomic writes, bounds, version skew, offline marking."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bootbus.io.steplog import LOG_ERR, Record
from bootbus.io.summary import (
    SUMMARY_FILENAME,
    SUMMARY_MAX_CONNECTIONS,
    SUMMARY_MAX_ERRORS,
    SUMMARY_MAX_NAMES_PER_CONNECTION,
    SUMMARY_MAX_QUEUED_OWNERS_LISTED,
    SUMMARY_MIN_INTERVAL_USEC,
    SUMMARY_VERSION,
    ConnectionSummary,
    ErrorSummary,
    NameSummary,
    Summary,
    SummaryError,
    SummaryWriter,
    clip_summary,
    proc_stat,
    read_summary,
    summary_from_json,
)
from fakes import FakeClock

REPO = Path(__file__).resolve().parent.parent


class Bus:
    """Stands in for the daemon's state; counts how often the summary is built."""

    def __init__(self) -> None:
        self.builds = 0
        self.connections: list[ConnectionSummary] = []
        self.names: list[NameSummary] = []
        self.phase = "initramfs"

    def build(self) -> Summary:
        self.builds += 1
        return Summary(
            phase=self.phase,
            generation=2,
            pivots=1,
            started_realtime_usec=1_699_999_000_000_000,
            started_monotonic_usec=1_000_000,
            addresses=["unix:path=/run/dbus/system_bus_socket"],
            connections=list(self.connections),
            names=list(self.names),
            last_errors=[ErrorSummary(5, "auth failed", 3, "initramfs", LOG_ERR)],
        )


def sample_bus() -> Bus:
    bus = Bus()
    bus.connections = [
        ConnectionSummary(":1.0", 1, "systemd", 0, ["org.freedesktop.systemd1"], 4, 0),
        ConnectionSummary(":1.7", 812, "udevadm", 0, [], 1, 2048, 3),
    ]
    bus.names = [NameSummary("org.freedesktop.systemd1", ":1.0", 1, [":1.7"])]
    return bus


def test_round_trip_while_the_writer_is_alive(tmp_path: Path) -> None:
    bus = sample_bus()
    clock = FakeClock(monotonic=9_000_000)
    writer = SummaryWriter(tmp_path, bus.build, clock=clock)
    writer.mark_dirty()
    assert writer.flush_if_due()
    view = read_summary(tmp_path)
    assert view.online, view.reason
    s = view.summary
    assert s.pid == os.getpid() and s.version == SUMMARY_VERSION
    assert s.process_start_ticks == proc_stat(os.getpid())[1]  # type: ignore[index]
    assert s.phase == "initramfs" and s.generation == 2 and s.pivots == 1
    assert s.connections == bus.connections
    assert s.names == bus.names
    assert s.connection_count == 2 and s.name_count == 1
    assert s.last_errors == [ErrorSummary(5, "auth failed", 3, "initramfs", LOG_ERR)]
    assert s.written_realtime_usec == clock.realtime and s.write_count == 1


def test_refreshes_are_coalesced(tmp_path: Path) -> None:
    bus = sample_bus()
    clock = FakeClock(monotonic=9_000_000)
    writer = SummaryWriter(tmp_path, bus.build, clock=clock)
    assert writer.next_deadline_usec() is None and not writer.flush_if_due()
    writer.mark_dirty()
    assert writer.next_deadline_usec() == clock.monotonic, "the first change is written at once"
    assert writer.flush_if_due()
    first = os.stat(tmp_path / SUMMARY_FILENAME).st_ino

    for i in range(1000):  # a flood of changes within one interval
        bus.phase = f"p{i}"
        writer.mark_dirty()
        clock.monotonic += 100
        assert not writer.flush_if_due()
    assert bus.builds == 1
    assert writer.next_deadline_usec() == 9_000_000 + SUMMARY_MIN_INTERVAL_USEC
    clock.monotonic = 9_000_000 + SUMMARY_MIN_INTERVAL_USEC
    assert writer.flush_if_due()
    assert bus.builds == 2
    assert read_summary(tmp_path).summary.phase == "p999"
    assert os.stat(tmp_path / SUMMARY_FILENAME).st_ino != first, "replaced, not rewritten in place"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        SUMMARY_FILENAME
    ], "no temporary file left"
    assert not writer.dirty and writer.next_deadline_usec() is None


def test_explicit_flush_ignores_the_interval(tmp_path: Path) -> None:
    bus = sample_bus()
    writer = SummaryWriter(tmp_path, bus.build, clock=FakeClock(monotonic=9_000_000))
    assert writer.flush()
    bus.phase = "reexecuting"
    assert writer.flush()
    assert bus.builds == 2
    assert read_summary(tmp_path).summary.phase == "reexecuting"


def test_write_failure_keeps_it_dirty(tmp_path: Path) -> None:
    clock = FakeClock(monotonic=9_000_000)
    runtime = tmp_path / "rt"
    writer = SummaryWriter(runtime, sample_bus().build, clock=clock)
    writer.mark_dirty()
    assert not writer.flush_if_due()
    assert writer.dirty and writer.write_errors == 1
    assert writer.next_deadline_usec() == clock.monotonic + SUMMARY_MIN_INTERVAL_USEC
    runtime.mkdir()
    clock.monotonic += SUMMARY_MIN_INTERVAL_USEC
    assert writer.flush_if_due()
    assert read_summary(runtime).online


def test_lists_are_bounded_but_counts_are_true(tmp_path: Path) -> None:
    bus = Bus()
    many = [f"com.example.N{i}" for i in range(500)]
    bus.connections = [
        ConnectionSummary(f":1.{i}", i, "flood", 0, many, 0, 0) for i in range(10_000)
    ]
    bus.names = [NameSummary("com.example.Q", ":1.0", 999, [f":1.{i}" for i in range(1, 1000)])]
    writer = SummaryWriter(tmp_path, bus.build, clock=FakeClock(monotonic=9_000_000))
    assert writer.flush()
    s = read_summary(tmp_path).summary
    assert len(s.connections) == SUMMARY_MAX_CONNECTIONS and s.connection_count == 10_000
    assert all(len(c.names) == SUMMARY_MAX_NAMES_PER_CONNECTION for c in s.connections)
    assert (
        s.names[0].queue_depth == 999 and len(s.names[0].queued) == SUMMARY_MAX_QUEUED_OWNERS_LISTED
    )
    assert os.path.getsize(tmp_path / SUMMARY_FILENAME) < 4 * 1024 * 1024


def test_last_errors_from_step_records() -> None:
    record = Record(12, 777, 5, "root", LOG_ERR, "peer :1.4 sent garbage", {})
    assert ErrorSummary.from_record(record) == ErrorSummary(
        777, "peer :1.4 sent garbage", 12, "root", LOG_ERR
    )
    s = Summary(last_errors=[ErrorSummary(i, f"e{i}") for i in range(40)])
    assert [e.message for e in clip_summary(s).last_errors] == [
        f"e{i}" for i in range(40 - SUMMARY_MAX_ERRORS, 40)
    ]


# -- reading what other versions wrote ------------------------------------------------


def test_newer_and_older_summaries_are_read() -> None:
    newer = {
        "version": SUMMARY_VERSION + 1,
        "phase": "root",
        "pid": 5,
        "future_key": {"x": 1},
        "connections": [{"unique_name": ":1.1", "pid": 3, "future": True}, "garbage"],
        "names": [{"name": "a.b", "owner": ":1.1", "queue_depth": "many"}],
    }
    s = summary_from_json(newer)
    assert s.version == SUMMARY_VERSION + 1 and s.phase == "root" and s.pid == 5
    assert s.connections == [ConnectionSummary(":1.1", 3)]
    assert s.names == [NameSummary("a.b", ":1.1", 0, [])]
    older = summary_from_json({"phase": "initramfs", "generation": True})
    assert older.phase == "initramfs" and older.generation == 0 and older.connections == []


@pytest.mark.parametrize("content", [b"", b"{", b"[1, 2]", b"\xff"])
def test_corrupt_summary_is_an_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / SUMMARY_FILENAME).write_bytes(content)
    with pytest.raises(SummaryError):
        read_summary(tmp_path)


def test_missing_summary_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SummaryError, match="never ran"):
        read_summary(tmp_path)


# -- offline --------------------------------------------------------------------------------


def write_for(tmp_path: Path, pid: int, start_ticks: int | None) -> None:
    data = json.loads(Summary(phase="root").to_json())
    data.update(pid=pid, process_start_ticks=start_ticks)
    (tmp_path / SUMMARY_FILENAME).write_text(json.dumps(data))


def test_offline_when_the_pid_is_gone(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    write_for(tmp_path, child.pid, 1)
    view = read_summary(tmp_path)
    assert not view.online and view.reason == f"process {child.pid} is gone"


def test_offline_when_the_pid_is_a_zombie(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stat = proc_stat(child.pid)
    assert stat is not None
    write_for(tmp_path, child.pid, stat[1])
    assert read_summary(tmp_path).online
    child.kill()
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # dead, not reaped
    view = read_summary(tmp_path)
    assert not view.online and view.reason == f"process {child.pid} has exited"
    child.wait()


def test_offline_when_the_pid_was_reused(tmp_path: Path) -> None:
    stat = proc_stat(os.getpid())
    assert stat is not None
    write_for(tmp_path, os.getpid(), stat[1] + 1)
    view = read_summary(tmp_path)
    assert not view.online and "another process" in view.reason


def test_proc_stat_with_a_hostile_comm(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    fields = " ".join(["S"] + [str(i) for i in range(1, 30)])
    (tmp_path / "42" / "stat").write_text(f"42 (a) b (c) {fields}\n")
    assert proc_stat(42, str(tmp_path)) == ("S", 19)
    assert proc_stat(43, str(tmp_path)) is None


def test_kill_9_leaves_the_last_state_readable_offline(tmp_path: Path) -> None:
    """A writer process killed with SIGKILL: its last summary reads back, offline."""
    program = textwrap.dedent(
        f"""
        import sys
        from bootbus.io.summary import ConnectionSummary, NameSummary, Summary, SummaryWriter
        def build():
            return Summary(
                phase="root",
                connections=[ConnectionSummary(":1.3", 99, "flood", 0, ["com.example.A"], 2, 10)],
                names=[NameSummary("com.example.A", ":1.3")],
            )
        writer = SummaryWriter({str(tmp_path)!r}, build)
        writer.mark_dirty()
        assert writer.flush_if_due()
        print("written", flush=True)
        sys.stdin.read()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", program], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline() == b"written\n"
    assert read_summary(tmp_path).online
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdin.close()
    child.stdout.close()
    view = read_summary(tmp_path)
    assert not view.online
    assert view.summary.pid == child.pid
    assert [(c.unique_name, c.names) for c in view.summary.connections] == [
        (":1.3", ["com.example.A"])
    ]
    assert [n.name for n in view.summary.names] == ["com.example.A"]
