"""The step log: file format, size bound, crash tolerance, kmsg, filters, tail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootbus.io.steplog import (
    KMSG_BURST,
    KMSG_LINE_MAX_BYTES,
    KMSG_RESERVE_FOR_WARNINGS,
    LAST_ERRORS_MAX,
    LOG_DEBUG,
    LOG_ERR,
    LOG_INFO,
    LOG_NOTICE,
    LOG_WARNING,
    RECORD_FIELDS_MAX,
    RECORD_MAX_BYTES,
    STEPLOG_FILENAME,
    STEPLOG_MAX_BYTES,
    LogTail,
    Note,
    Record,
    RecordError,
    RecordFilter,
    StepLog,
    StepLogError,
    canonical_seq,
    kmsg_line,
    read_records,
    seq_of_line,
)
from fakes import FakeClock


class FakeSink:
    """Records what it is given; `reachable` and the notes it returns are set by the test."""

    def __init__(self, reachable: bool) -> None:
        self.reachable = reachable
        self.delivered: list[Record] = []
        self.notes_on_next_deliver: list[Note] = []
        self.attached_at: int | None = None

    def attach(self, last_seq: int) -> list[Note]:
        self.attached_at = last_seq
        return []

    def deliver(self, record: Record) -> list[Note]:
        self.delivered.append(record)
        notes, self.notes_on_next_deliver = self.notes_on_next_deliver, []
        return notes

    def poll(self) -> list[Note]:
        return []

    def next_deadline_usec(self) -> int | None:
        return None


def make_log(tmp_path: Path, clock: FakeClock, **kw: object) -> StepLog:
    kw.setdefault("kmsg_path", None)
    return StepLog(tmp_path, clock=clock, pid=4242, **kw)  # type: ignore[arg-type]


def test_record_line_round_trip() -> None:
    r = Record(
        7, 1, 2, "initramfs", LOG_WARNING, 'a "quoted"\nline ✓', {"PEER_PID": "12", "X": "é"}
    )
    line = r.to_line()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line.startswith(b'{"seq":7,')
    assert seq_of_line(line) == 7
    assert Record.from_line(line) == r


_TRICKY = st.text(alphabet='ab"\\\n\t\x00\x1f\x7f /\u00e9\u20ac\U0001d11e\ud800', max_size=8)


@settings(max_examples=500)
@given(st.integers(1, 2**63), st.integers(0, 2**63), _TRICKY, st.integers(0, 7), _TRICKY,
       st.dictionaries(_TRICKY, _TRICKY, max_size=3))
def test_record_line_is_what_json_writes(seq: int, usec: int, phase: str, priority: int,
                                         message: str, fields: dict[str, str]) -> None:
    """The line is written without json (its import costs a cold start), byte for byte
    as json.dumps with ensure_ascii writes it: escapes, surrogates and non-ASCII too."""
    r = Record(seq, usec, usec + 1, phase, priority, message, fields)
    expected = json.dumps({"seq": seq, "realtime_usec": usec, "monotonic_usec": usec + 1,
                           "phase": phase, "priority": priority, "message": message,
                           "fields": fields}, separators=(",", ":"), ensure_ascii=True)
    assert r.to_line() == expected.encode() + b"\n"


@settings(max_examples=300)
@given(st.integers(1, 2**63), _TRICKY, _TRICKY, st.dictionaries(_TRICKY, _TRICKY, max_size=3),
       st.data())
def test_canonical_seq_reads_whole_lines_and_refuses_torn_or_broken_ones(
        seq: int, phase: str, message: str, fields: dict[str, str], data: st.DataObject) -> None:
    """A restart reads its last seq without json: exact on lines to_line wrote, None on
    every torn prefix, and never a seq for a line that from_line refuses."""
    line = Record(seq, 1, 2, phase, LOG_DEBUG, message, fields).to_line()[:-1]
    assert canonical_seq(line) == seq
    assert all(canonical_seq(line[:n]) is None for n in range(len(line)))
    at = data.draw(st.integers(0, len(line) - 1))
    broken = line[:at] + data.draw(st.binary(min_size=1, max_size=2)) + line[at + 1:]
    got = canonical_seq(broken)
    if got is not None:
        assert Record.from_line(broken).seq == got


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"{",
        b"[]",
        b'{"seq":1}',
        (b'{"seq":0,"realtime_usec":1,"monotonic_usec":1,"phase":"p","priority":1,'
         b'"message":"m","fields":{}}'),
        (b'{"seq":1,"realtime_usec":1,"monotonic_usec":1,"phase":"p","priority":8,'
         b'"message":"m","fields":{}}'),
        (b'{"seq":1,"realtime_usec":1,"monotonic_usec":1,"phase":"p","priority":1,'
         b'"message":"m","fields":{"a":1}}'),
        b'{"seq":true,"realtime_usec":1,"monotonic_usec":1,"phase":"p","priority":1,"message":"m"}',
    ],
)
def test_invalid_lines_are_record_errors(line: bytes) -> None:
    with pytest.raises(RecordError):
        Record.from_line(line)


def test_log_appends_json_lines_and_reads_back_in_order(tmp_path: Path) -> None:
    clock = FakeClock()
    log = make_log(tmp_path, clock, phase="initramfs")
    first = log.info("bootbus starting", ADDRESS="unix:path=/run/bootbus")
    clock.advance(1500)
    second = log.log(LOG_WARNING, "auth failed", {"PEER_PID": "99", "PEER_UID": "1000"})
    log.close()

    lines = (tmp_path / STEPLOG_FILENAME).read_bytes().splitlines()
    assert [json.loads(x)["seq"] for x in lines] == [1, 2]
    got = list(read_records(tmp_path))
    assert got == [first, second]
    assert got[0].realtime_usec == 1_700_000_000_000_000 and got[0].monotonic_usec == 5_000_000
    assert got[1].monotonic_usec - got[0].monotonic_usec == 1500
    assert got[1].fields == {"PEER_PID": "99", "PEER_UID": "1000"}
    assert got[1].phase == "initramfs" and got[1].priority == LOG_WARNING


def test_filters_priority_phase_since_and_after(tmp_path: Path) -> None:
    clock = FakeClock()
    log = make_log(tmp_path, clock, phase="initramfs")
    log.debug("d1")
    log.error("e1")
    clock.advance(10)
    log.set_phase("root")
    since = clock.realtime
    log.info("i2")
    log.warning("w2")
    log.close()

    def messages(flt: RecordFilter) -> list[str]:
        return [r.message for r in read_records(tmp_path, flt)]

    assert messages(RecordFilter(max_priority=LOG_WARNING)) == ["e1", "w2"]
    assert messages(RecordFilter(phases=frozenset({"initramfs"}))) == ["d1", "e1"]
    assert messages(RecordFilter(since_realtime_usec=since)) == [
        "boot phase initramfs -> root",
        "i2",
        "w2",
    ]
    assert messages(RecordFilter(after_seq=3)) == ["i2", "w2"]
    assert messages(RecordFilter(max_priority=LOG_NOTICE, phases=frozenset({"root"}))) == [
        "boot phase initramfs -> root",
        "w2",
    ]


def test_step_takes_keyword_fields_of_any_type(tmp_path: Path) -> None:
    log = make_log(tmp_path, FakeClock())
    record = log.step(LOG_INFO, "re-executing", GENERATION=3, PREPARE_MS=1.5, NEWROOT="/sysroot")
    assert record.fields == {"GENERATION": "3", "PREPARE_MS": "1.5", "NEWROOT": "/sysroot"}


def test_log_own_writes_what_log_writes_and_keeps_the_bounds(tmp_path: Path) -> None:
    """The daemon's own records skip the field checks, not the bounds."""
    checked = make_log(tmp_path / "a", FakeClock())
    own = make_log(tmp_path / "b", FakeClock())
    fields = {"PEER_PID": "42", "PEER_COMM": "busctl"}
    assert own.log_own(LOG_INFO, "connection", dict(fields)).to_line() == checked.log(
        LOG_INFO, "connection", dict(fields)).to_line()
    with pytest.raises(StepLogError):
        own.log_own(LOG_DEBUG + 1, "bad priority", {})
    with pytest.raises(StepLogError):
        own.log_own(LOG_INFO, "too many", {f"F{i}": "" for i in range(RECORD_FIELDS_MAX + 1)})


def test_set_phase_logs_the_change_in_the_new_phase(tmp_path: Path) -> None:
    log = make_log(tmp_path, FakeClock(), phase="initramfs")
    record = log.set_phase("switch-root", NEW_ROOT="/sysroot")
    assert log.phase == "switch-root"
    assert record.phase == "switch-root"
    assert record.fields == {"PREVIOUS_PHASE": "initramfs", "NEW_ROOT": "/sysroot"}


def test_file_stays_within_bound_under_a_flood(tmp_path: Path) -> None:
    clock = FakeClock()
    log = make_log(tmp_path, clock)
    n = 12_000
    for i in range(n):
        clock.advance(7)
        log.info(
            "connection accepted",
            PEER_PID=str(1000 + i),
            PEER_COMM="flood-client",
            PEER_UID="0",
            UNIQUE_NAME=f":1.{i}",
        )
    log.close()
    cur = tmp_path / STEPLOG_FILENAME
    old = tmp_path / (STEPLOG_FILENAME + ".1")
    assert old.exists(), "the flood must have rotated the file"
    assert cur.stat().st_size <= STEPLOG_MAX_BYTES // 2
    assert old.stat().st_size <= STEPLOG_MAX_BYTES // 2
    assert cur.stat().st_size + old.stat().st_size <= STEPLOG_MAX_BYTES
    seqs = [r.seq for r in read_records(tmp_path)]
    assert seqs[-1] == n
    assert seqs == list(range(seqs[0], n + 1)), "what is kept is the newest, contiguous"
    assert seqs[0] > 1, "older records were dropped"
    assert not list(tmp_path.glob("*.2"))


def test_torn_last_line_is_skipped_then_terminated(tmp_path: Path) -> None:
    clock = FakeClock()
    log = make_log(tmp_path, clock)
    for i in range(3):
        log.info(f"step {i}")
    log.close()
    path = tmp_path / STEPLOG_FILENAME
    whole = Record(4, 1, 1, "start", LOG_INFO, "step 3", {}).to_line()
    with open(path, "ab") as f:
        f.write(whole[: len(whole) // 2])  # the crash happened here

    assert [r.seq for r in read_records(tmp_path)] == [1, 2, 3]
    reopened = make_log(tmp_path, clock)
    assert reopened.last_seq == 3
    reopened.info("after the crash")
    reopened.close()
    got = list(read_records(tmp_path))
    assert [r.seq for r in got] == [1, 2, 3, 4]
    assert got[-1].message == "after the crash"


def test_seq_continues_across_reopen_even_right_after_rotation(tmp_path: Path) -> None:
    clock = FakeClock()
    log = make_log(tmp_path, clock, max_bytes=2 * RECORD_MAX_BYTES)
    while not (tmp_path / (STEPLOG_FILENAME + ".1")).exists():
        log.info("x" * 500)
    log.close()
    # A crash between the rotation and the write of the record that caused it:
    (tmp_path / STEPLOG_FILENAME).write_bytes(b"")
    last = max(r.seq for r in read_records(tmp_path))
    again = make_log(tmp_path, clock, max_bytes=2 * RECORD_MAX_BYTES)
    assert again.last_seq == last
    assert again.info("next").seq == last + 1


def test_oversized_record_is_clipped_to_the_bound(tmp_path: Path) -> None:
    log = make_log(tmp_path, FakeClock())
    fields = {f"F{i}": "\x01" * 5000 for i in range(RECORD_FIELDS_MAX)}
    record = log.log(LOG_INFO, "m" * 100_000, fields)
    log.close()
    line = (tmp_path / STEPLOG_FILENAME).read_bytes()
    assert len(line) <= RECORD_MAX_BYTES
    assert record.message.startswith("mmmm") and record.message.endswith("…")
    assert list(read_records(tmp_path)) == [record]


def test_bad_priority_and_fields_are_refused(tmp_path: Path) -> None:
    log = make_log(tmp_path, FakeClock())
    for bad in (-1, 8, True):
        with pytest.raises(StepLogError):
            log.log(bad, "m")
    with pytest.raises(StepLogError):
        log.log(LOG_INFO, "m", {f"F{i}": "" for i in range(RECORD_FIELDS_MAX + 1)})
    with pytest.raises(StepLogError):
        log.log(LOG_INFO, "m", {"": "empty name"})
    with pytest.raises(StepLogError):
        log.log(LOG_INFO, "m", {"N" * 65: "too long"})
    assert log.last_seq == 0, "refused records take no sequence number"


def test_unwritable_runtime_dir_does_not_raise(tmp_path: Path) -> None:
    sink = FakeSink(reachable=True)
    log = make_log(tmp_path / "missing", FakeClock(), sink=sink)
    record = log.info("still logged")
    assert log.write_errors >= 1
    assert sink.delivered == [record]


def test_last_errors_keeps_the_newest_errors(tmp_path: Path) -> None:
    log = make_log(tmp_path, FakeClock())
    for i in range(LAST_ERRORS_MAX + 5):
        log.error(f"e{i}")
        log.warning("not an error")
    assert [r.message for r in log.last_errors] == [f"e{i}" for i in range(5, LAST_ERRORS_MAX + 5)]


# -- kmsg -----------------------------------------------------------------------


def kmsg_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_kmsg_line_format() -> None:
    assert kmsg_line(LOG_INFO, 321, "listening") == b"<30>bootbus[321]: listening\n"
    assert kmsg_line(LOG_ERR, 1, "two\nlines") == b"<27>bootbus[1]: two lines\n"
    long = kmsg_line(LOG_INFO, 1, "é" * 2000)
    assert len(long) <= KMSG_LINE_MAX_BYTES and long.endswith("…\n".encode())
    long.decode("utf-8")


def test_kmsg_gets_everything_while_journald_is_unreachable(tmp_path: Path) -> None:
    kmsg = tmp_path / "kmsg"
    kmsg.touch()
    sink = FakeSink(reachable=False)
    log = make_log(tmp_path, FakeClock(), kmsg_path=str(kmsg), sink=sink)
    log.debug("early step")
    sink.reachable = True
    log.info("journald is here")
    log.warning("but warnings still go to the console")
    log.close()
    assert kmsg_lines(kmsg) == [
        b"<31>bootbus[4242]: early step\n",
        b"<28>bootbus[4242]: but warnings still go to the console\n",
    ]
    assert [r.message for r in sink.delivered] == [
        "early step",
        "journald is here",
        "but warnings still go to the console",
    ]


def test_kmsg_is_rate_limited_and_keeps_a_reserve_for_warnings(tmp_path: Path) -> None:
    kmsg = tmp_path / "kmsg"
    kmsg.touch()
    clock = FakeClock()
    log = make_log(tmp_path, clock, kmsg_path=str(kmsg))
    for i in range(50):
        log.info(f"info {i}")
    infos = KMSG_BURST - KMSG_RESERVE_FOR_WARNINGS
    assert len(kmsg_lines(kmsg)) == infos
    for i in range(50):
        log.warning(f"warn {i}")
    lines = kmsg_lines(kmsg)
    assert len(lines) == KMSG_BURST
    # The reserve lets warnings through, and the first one announces the gap.
    suppressed_infos = 50 - infos
    assert lines[infos:] == [
        f"<28>bootbus[4242]: {suppressed_infos} messages suppressed by rate limit\n".encode(),
        b"<28>bootbus[4242]: warn 0\n",
        b"<28>bootbus[4242]: warn 1\n",
    ]
    assert KMSG_RESERVE_FOR_WARNINGS == 3
    assert log.kmsg.suppressed == 48
    assert list(read_records(tmp_path))[-1].seq == 100, "the file has everything"

    clock.advance(10_000_000)  # the bucket is full again
    log.info("back")
    assert kmsg_lines(kmsg)[KMSG_BURST:] == [
        b"<28>bootbus[4242]: 48 messages suppressed by rate limit\n",
        b"<30>bootbus[4242]: back\n",
    ]
    assert log.kmsg.suppressed == 0


def test_missing_kmsg_is_not_an_error(tmp_path: Path) -> None:
    log = make_log(tmp_path, FakeClock(), kmsg_path=str(tmp_path / "no-kmsg"))
    assert not log.kmsg.enabled
    log.error("nowhere to print")
    assert log.last_seq == 1


# -- the sink -------------------------------------------------------------------


def test_sink_sees_records_after_the_file_and_its_notes_are_logged(tmp_path: Path) -> None:
    sink = FakeSink(reachable=True)
    log = make_log(tmp_path, FakeClock())
    log.info("before the sink")
    log.attach_sink(sink)
    assert sink.attached_at == 1
    sink.notes_on_next_deliver = [Note(LOG_NOTICE, "journald connected", {"REPLAYED": "1"})]
    log.info("after")
    assert [(r.seq, r.message) for r in sink.delivered] == [(2, "after"), (3, "journald connected")]
    assert [r.message for r in read_records(tmp_path)] == [
        "before the sink",
        "after",
        "journald connected",
    ]


# -- reading ----------------------------------------------------------------------


def test_tail_follows_across_rotation_and_waits_for_partial_lines(tmp_path: Path) -> None:
    clock = FakeClock()
    log = make_log(tmp_path, clock, max_bytes=2 * RECORD_MAX_BYTES)
    log.info("history")
    tail = LogTail(tmp_path, RecordFilter(max_priority=LOG_INFO))
    assert [r.message for r in tail.read_new()] == ["history"]
    assert tail.read_new() == []

    log.debug("filtered out")
    log.info("one")
    assert [r.message for r in tail.read_new()] == ["one"]

    rotated = tmp_path / (STEPLOG_FILENAME + ".1")
    n = 0
    while not rotated.exists():
        n += 1
        log.info(f"fill {n}")
    log.info("after rotation")
    got = [r.message for r in tail.read_new()]
    assert got == [f"fill {i}" for i in range(1, n + 1)] + ["after rotation"]
    assert tail.lost == 0

    line = Record(log.last_seq + 1, 1, 1, "start", LOG_INFO, "written in two parts", {}).to_line()
    with open(tmp_path / STEPLOG_FILENAME, "ab") as f:
        f.write(line[:10])
        f.flush()
        assert tail.read_new() == []
        f.write(line[10:])
    assert [r.message for r in tail.read_new()] == ["written in two parts"]
    tail.close()
    log.close()


def test_tail_counts_records_lost_to_double_rotation(tmp_path: Path) -> None:
    log = make_log(tmp_path, FakeClock(), max_bytes=2 * RECORD_MAX_BYTES)
    tail = LogTail(tmp_path)
    log.info("first")
    assert len(tail.read_new()) == 1
    for i in range(200):
        log.info(f"{i:04d}" + "y" * 400)
    got = tail.read_new()
    seqs = [r.seq for r in got]
    assert seqs == sorted(seqs) and seqs[-1] == log.last_seq
    assert tail.lost == log.last_seq - 1 - len(got)
    assert tail.lost > 0
    tail.close()
    log.close()


def test_read_records_of_an_empty_dir(tmp_path: Path) -> None:
    assert list(read_records(tmp_path)) == []
    tail = LogTail(tmp_path)
    assert tail.read_new() == []
    tail.close()


@settings(max_examples=200, deadline=None, database=None)
@given(
    garbage=st.lists(st.binary(max_size=200) | st.sampled_from([b'{"seq":', b"\n", b'{"seq":3,']))
)
def test_garbage_files_yield_only_valid_records(
    tmp_path_factory: pytest.TempPathFactory, garbage: list[bytes]
) -> None:
    d = tmp_path_factory.mktemp("garbage")
    good = Record(10, 1, 2, "p", LOG_DEBUG, "ok", {}).to_line()
    (d / STEPLOG_FILENAME).write_bytes(b"".join(garbage) + b"\n" + good)
    (d / (STEPLOG_FILENAME + ".1")).write_bytes(b"".join(reversed(garbage)))
    got = list(read_records(d))
    assert all(isinstance(r, Record) for r in got)
    seqs = [r.seq for r in got]
    assert seqs == sorted(set(seqs))
    log = StepLog(d, clock=FakeClock(), kmsg_path=None)
    assert log.last_seq >= 10
    log.close()
