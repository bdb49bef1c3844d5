"""The argument syntax of `call` and `emit`: D-Bus values from shell words.

Owns: one word per basic value, a count before the elements of an array
or a dict of basic types, a basic type before a variant's value (ARGS_HELP
says it for the help texts), and checking interface, member and object path
names; the values are then checked by marshalling them as the wire would.

Never: talks to the bus, or accepts a type it cannot take whole from the
command line (nested containers, fds): those are usage errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click

from ..wire import names as wire_names
from ..wire.errors import MarshalError, SignatureError
from ..wire.marshal import marshal
from ..wire.signature import split_signature

ARGS_HELP = """\b
Arguments follow SIGNATURE, one word per basic value: s o g (text),
b (true/false, yes/no, 1/0), y n q i u x t (integers, 0x.. too), d (number).
Arrays of a basic type take a count, then the elements:  as 2 one two
Dicts of basic types take a count, then key value pairs: a{ss} 1 KEY value
A variant takes a basic type, then the value:            v s hello
"""
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_INTEGER_TYPES = "ynqiuxt"


def parse_value(code: str, word: str) -> Any:
    """One basic value from one word, validated for its D-Bus type."""
    if code in _INTEGER_TYPES:
        try:
            return int(word, 0)
        except ValueError:
            raise click.BadParameter(f"{word!r} is not an integer (type {code})") from None
    if code == "b":
        lowered = word.lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        raise click.BadParameter(f"{word!r} is not a boolean (true/false)")
    if code == "d":
        try:
            return float(word)
        except ValueError:
            raise click.BadParameter(f"{word!r} is not a number (type d)") from None
    if code == "o" and not wire_names.is_object_path(word):
        raise click.BadParameter(f"{word!r} is not an object path")
    if code == "g":
        try:
            split_signature(word)
        except SignatureError as exc:
            raise click.BadParameter(f"{word!r} is not a signature: {exc}") from None
    if code in "sog":
        return word
    raise click.BadParameter(f"type {code!r} cannot be given on the command line")


def parse_args(signature: str, words: list[str]) -> list[Any]:
    """Values for `signature` from `words` (see ARGS_HELP); every word must be used."""
    try:
        types = split_signature(signature)
    except SignatureError as exc:
        raise click.BadParameter(f"invalid signature {signature!r}: {exc}") from None
    pending = iter(words)
    values = [_parse_one(t, pending) for t in types]
    extra = list(pending)
    if extra:
        raise click.BadParameter(f"more arguments than signature {signature!r} takes: "
                                 f"{' '.join(extra)}")
    try:
        marshal(signature, values)  # ranges, NULs in strings, sizes: the wire's own checks
    except MarshalError as exc:
        raise click.BadParameter(str(exc)) from None
    return values


def _next_word(words: Iterator[str], what: str) -> str:
    try:
        return next(words)
    except StopIteration:
        raise click.BadParameter(f"missing argument: {what}") from None


def _parse_one(t: str, words: Iterator[str]) -> Any:
    if len(t) == 1 and t not in "vh":
        return parse_value(t, _next_word(words, f"a value of type {t}"))
    if t == "v":
        inner = _next_word(words, "the type of a variant")
        if len(inner) != 1 or inner in "vh":
            raise click.BadParameter(f"a variant's type must be a basic type, not {inner!r}")
        return (inner, parse_value(inner, _next_word(words, f"a value of type {inner}")))
    if len(t) == 2 and t[0] == "a" and t[1] not in "vh":
        return [parse_value(t[1], _next_word(words, f"element {i + 1} of {t}"))
                for i in range(_count(t, words))]
    if len(t) == 5 and t[:2] == "a{" and t[2] not in "vh" and t[3] not in "vh":
        entries = {}
        for i in range(_count(t, words)):
            key = parse_value(t[2], _next_word(words, f"key {i + 1} of {t}"))
            entries[key] = parse_value(t[3], _next_word(words, f"value {i + 1} of {t}"))
        return entries
    raise click.BadParameter(f"type {t!r} cannot be given on the command line")


def _count(t: str, words: Iterator[str]) -> int:
    count = _next_word(words, f"the element count of {t}")
    if not count.isdigit():
        raise click.BadParameter(f"{t} needs an element count first, not {count!r}")
    return int(count)


def split_member(text: str) -> tuple[str | None, str]:
    interface, _, member = text.rpartition(".")
    if interface and not wire_names.is_interface_name(interface):
        raise click.BadParameter(f"{interface!r} is not an interface name")
    if not wire_names.is_member_name(member):
        raise click.BadParameter(f"{member!r} is not a member name")
    return interface or None, member


def check_path(path: str) -> str:
    if not wire_names.is_object_path(path):
        raise click.BadParameter(f"{path!r} is not an object path")
    return path
