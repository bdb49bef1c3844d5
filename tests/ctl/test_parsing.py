"""bootbusctl's pure parts: the call/emit argument syntax, --since, --priority,
D-Bus values as JSON, the monitor's line and the pcap framing (byte literals)."""

from __future__ import annotations

import datetime
import io
import struct

import click
import pytest

from bootbus.ctl import (
    PcapWriter,
    format_message,
    message_dict,
    parse_args,
    parse_priority,
    parse_since,
    plain,
)
from bootbus.wire import message as m
from bootbus.wire.marshal import marshal

NOW_USEC = 1_700_000_000_000_000


@pytest.mark.parametrize(("signature", "words", "values"), [
    ("", [], []),
    ("s", ["hello world"], ["hello world"]),
    ("ybnqiuxt", ["255", "no", "-32768", "65535", "-5", "0x10", "-9", "18446744073709551615"],
     [255, False, -32768, 65535, -5, 16, -9, (1 << 64) - 1]),
    ("d", ["-2.5e3"], [-2500.0]),
    ("og", ["/org/example", "a{sv}"], ["/org/example", "a{sv}"]),
    ("as", ["0"], [[]]),
    ("asu", ["2", "-x", "y", "7"], [["-x", "y"], 7]),
    ("a{ss}", ["2", "K1", "v1", "K2", "v 2"], [{"K1": "v1", "K2": "v 2"}]),
    ("a{su}v", ["1", "n", "3", "b", "true"], [{"n": 3}, ("b", True)]),
])
def test_parse_args(signature: str, words: list[str], values: list[object]) -> None:
    parsed = parse_args(signature, words)
    assert parsed == values
    marshal(signature, parsed)  # what was parsed is what the signature can carry


@pytest.mark.parametrize(("signature", "words", "complaint"), [
    ("y", ["256"], "does not fit"),
    ("q", ["-1"], "does not fit"),
    ("s", ["nul\0inside"], "NUL"),
    ("i", ["1.5"], "not an integer"),
    ("b", ["maybe"], "not a boolean"),
    ("d", ["fast"], "not a number"),
    ("o", ["relative"], "not an object path"),
    ("g", ["a{"], "not a signature"),
    ("s", [], "missing argument"),
    ("s", ["a", "b"], "more arguments"),
    ("as", ["two", "a", "b"], "element count"),
    ("as", ["3", "a"], "element 2"),
    ("(ss)", ["a", "b"], "cannot be given"),
    ("ah", ["1", "0"], "cannot be given"),
    ("vv", ["v", "s", "x"], "basic type"),
    ("a{", [], "invalid signature"),
])
def test_parse_args_refuses(signature: str, words: list[str], complaint: str) -> None:
    with pytest.raises(click.BadParameter, match=complaint):
        parse_args(signature, words)


@pytest.mark.parametrize(("text", "seconds_ago"), [
    ("-90", 90), ("-90s", 90), ("-10m", 600), ("-2h", 7200), ("-1d", 86400), ("-0.5m", 30),
])
def test_since_relative(text: str, seconds_ago: int) -> None:
    assert parse_since(text, NOW_USEC) == NOW_USEC - seconds_ago * 1_000_000


def test_since_iso() -> None:
    assert parse_since("2023-11-14T22:13:20+00:00", 0) == NOW_USEC
    local = datetime.datetime(2023, 11, 14, 22, 13, 20).astimezone()  # naive: local time
    assert parse_since("2023-11-14 22:13:20", 0) == int(local.timestamp()) * 1_000_000
    for bad in ("yesterday", "10m", "-10y", ""):
        with pytest.raises(click.BadParameter):
            parse_since(bad, NOW_USEC)


def test_priority_by_name_or_number() -> None:
    assert [parse_priority(p) for p in ("emerg", "ERR", "error", "warn", "warning", "7", "0")] \
        == [0, 3, 3, 4, 4, 7, 0]
    for bad in ("8", "-1", "loud", ""):
        with pytest.raises(click.BadParameter):
            parse_priority(bad)


def test_plain_turns_dbus_values_into_json() -> None:
    assert plain([("s", "x"), ("ai", [1]), b"\x00\xff", (1, "two"), {1: ("b", True)}]) == [
        {"type": "s", "data": "x"}, {"type": "ai", "data": [1]}, [0, 255], [1, "two"],
        {"1": {"type": "b", "data": True}}]
    assert plain(("not a signature(", 1)) == ["not a signature(", 1]  # a struct, not a variant


def test_message_line_and_pcap_record() -> None:
    raw = m.build(m.SIGNAL, 7, path="/p", interface="org.example.I", member="Changed",
                  sender=":1.4", signature="sas", args=("v", ["a"]))
    msg = m.parse(raw)
    when_ns = 1_700_000_000_123_456_000
    info = message_dict(msg, when_ns)
    assert info["args"] == ["v", ["a"]] and info["serial"] == 7 and info["reply_serial"] is None
    line = format_message(info)
    assert line.split()[1:] == ["signal", "sender=:1.4", "path=/p", "iface=org.example.I",
                                "member=Changed", "serial=7", "sig=sas", 'args=["v",', '["a"]]']

    out = io.BytesIO()
    PcapWriter(out).write(raw, when_ns)
    data = out.getvalue()
    assert data[:24] == struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 1 << 27, 231)
    assert data[24:40] == struct.pack("=IIII", 1_700_000_000, 123_456, len(raw), len(raw))
    assert data[40:] == raw


def test_message_with_undecodable_body_still_prints() -> None:
    raw = m.build(m.SIGNAL, 1, path="/p", interface="org.example.I", member="Bad",
                  signature="s", body=b"\x05\x00\x00\x00abc")  # length runs past the body
    info = message_dict(m.parse(raw), 0)
    assert info["args"] is None and info["args_error"]
    assert "args=<" in format_message(info)
