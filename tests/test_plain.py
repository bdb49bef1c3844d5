"""bootbus.plain: the record classes behave as the dataclasses they replaced did,
and a cold start of the daemon imports no dataclasses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bootbus.bus.match import MatchRule, parse_rule
from bootbus.io.steplog import Record
from bootbus.io.summary import ConnectionSummary, Summary
from bootbus.plain import as_dict, replace
from bootbus.wire.address import Address

REPO = Path(__file__).resolve().parent.parent


def test_frozen_records_compare_hash_and_refuse_assignment() -> None:
    rule = parse_rule("type='signal',interface='a.b'")
    same = MatchRule("type='signal',interface='a.b'", type=4, interface="a.b")
    assert rule == same and hash(rule) == hash(same)
    assert rule != replace(rule, member="M")
    assert rule != "type='signal',interface='a.b'"
    with pytest.raises(AttributeError):
        rule.member = "M"
    with pytest.raises(AttributeError):
        del rule.text
    assert {Address("unix", (("path", "/a"),)), Address("unix", (("path", "/a"),))} == {
        Address("unix", (("path", "/a"),))}


def test_mutable_records_compare_by_value_and_are_unhashable() -> None:
    a, b = ConnectionSummary(":1.1", names=["a.b"]), ConnectionSummary(":1.1", names=["a.b"])
    assert a == b
    b.names.append("c.d")
    assert a != b
    assert a.names == ["a.b"], "each instance has its own list"
    with pytest.raises(TypeError):
        hash(a)


def test_repr_names_every_field_in_order() -> None:
    record = Record(3, 10, 20, "root", 6, "hello", {"K": "v"})
    assert repr(record) == ("Record(seq=3, realtime_usec=10, monotonic_usec=20, phase='root', "
                            "priority=6, message='hello', fields={'K': 'v'})")


def test_replace_copies_and_refuses_unknown_fields() -> None:
    record = Record(1, 2, 3, "root", 6, "long message")
    clipped = record.replace(message="long…")
    assert (clipped.message, record.message) == ("long…", "long message")
    assert replace(record, phase="shutdown") == Record(1, 2, 3, "shutdown", 6, "long message")
    with pytest.raises(TypeError, match="no field 'nope'"):
        replace(record, nope=1)


def test_as_dict_recurses_and_copies() -> None:
    summary = Summary(phase="root", connections=[ConnectionSummary(":1.1", names=["a.b"])])
    plain = as_dict(summary)
    assert plain["connections"] == [{"unique_name": ":1.1", "pid": None, "comm": "", "uid": None,
                                     "names": ["a.b"], "match_count": 0, "queued_bytes": 0,
                                     "queued_messages": 0}]
    plain["connections"][0]["names"].append("x.y")
    assert summary.connections[0].names == ["a.b"]
    assert list(plain) == list(Summary._fields)
    assert json.loads(summary.to_json()) == plain | {
        "connections": [plain["connections"][0] | {"names": ["a.b"]}]}


def test_the_daemon_imports_no_dataclasses() -> None:
    """~9 ms of import and ~0.3 ms per class: too much for a 50 ms cold start. Nor
    typing, json, re or shlex (~6 ms together), which the cold start defers or avoids."""
    out = subprocess.run(
        [sys.executable, "-c",
         ("import sys, bootbus.daemon; "
          "print(sorted(m for m in ('dataclasses', 'inspect', 'typing', 'json', 're', 'shlex')"
          " if m in sys.modules))")],
        cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
