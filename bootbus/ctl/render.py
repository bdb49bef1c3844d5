"""bootbusctl's output: times, durations, tables, JSON, and the mode line.

Owns: how answers look once they are plain values: local and ISO 8601
times, durations, column-aligned tables ("-" for nothing), JSON of D-Bus
values (variants as {"type", "data"}, byte strings as lists, dataclass rows
as objects), and the "bootbus (MODE)" line on stderr that says where the
answers came from.

Never: talks to the bus, reads files, or decides what to show; it only
formats what a command hands it. stdout carries the answer, stderr the mode.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Iterable
from typing import Any, Protocol

import click

from ..plain import Fields, as_dict
from ..wire.errors import SignatureError
from ..wire.signature import split_signature


class Described(Protocol):
    """A source of answers that can say what it is (sources.Live, sources.Offline)."""

    def describe(self) -> str: ...


def format_time(usec: int) -> str:
    if not usec:
        return "an unknown time"
    dt = datetime.datetime.fromtimestamp(usec / 1e6).astimezone()
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{usec % 1_000_000:06d}" + dt.strftime(" %Z")


def iso_time(usec: int) -> str | None:
    if not usec:
        return None
    dt = datetime.datetime.fromtimestamp(usec / 1e6, datetime.UTC).astimezone()
    return dt.isoformat(timespec="microseconds")


def format_duration(seconds: float) -> str:
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min")]
    text = " ".join(f"{n}{unit}" for n, unit in parts if n)
    return f"{text} {secs}s".strip() if text else f"{seconds:.1f}s"


def mode_line(source: Described | str) -> None:
    text = source if isinstance(source, str) else source.describe()
    click.echo(f"bootbus ({text})", err=True)


def cell_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


def print_table(headers: list[str], rows: Iterable[list[Any]]) -> None:
    cells = [[cell_text(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    for row in [headers, *cells]:
        line = "  ".join(v.ljust(w) for v, w in zip(row, widths))
        click.echo(line.rstrip())


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(plain(obj), ensure_ascii=False, sort_keys=False))


def plain(value: Any) -> Any:
    """D-Bus values (variants, structs, byte strings) as JSON-able values."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else json.dumps(plain(k)): plain(v)
                for k, v in value.items()}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) \
            and _is_variant(value):
        return {"type": value[0], "data": plain(value[1])}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return list(bytes(value))
    if isinstance(value, Fields):  # bootbus's record classes (no dataclasses: import cost)
        return plain(as_dict(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    return value


def _is_variant(value: tuple[Any, ...]) -> bool:
    """Unmarshalled variants are (signature, value); structs are tuples too, so check."""
    try:
        return len(split_signature(value[0])) == 1 and value[0] != ""
    except SignatureError:
        return False
