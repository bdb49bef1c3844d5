"""Validation of the names the specification defines.

Owns: the grammar of object paths, interface names, member names, error names
and bus names (unique and well-known). Results are cached: the same few names
cross a bus millions of times. Never allocates per call beyond the cache.

Written out rather than as regular expressions: importing `re` and compiling
the patterns cost a cold start ~2 ms before its first Hello, and the results
are cached anyway. The grammar (tests/wire check it against the patterns):

    object path   "/", or "/" P, "/" P ...      P = [A-Za-z0-9_]+
    interface     E "." E, E "." E "." E, ...   E = [A-Za-z_][A-Za-z0-9_]*
    error name    as an interface name
    member        E
    well-known    W "." W, ...                  W = [A-Za-z_-][A-Za-z0-9_-]*
    unique        ":" U "." U, ...              U = [A-Za-z0-9_-]+
"""

import functools

from .errors import NameError_
from .limits import MAX_NAME_LENGTH

_DIGITS = frozenset("0123456789")
_WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_BUS_WORD = _WORD | {"-"}
_CACHE = 4096


def _elements(parts: list[str], chars: frozenset[str], digit_first: bool) -> bool:
    """Every part non-empty, made of `chars`, and (unless `digit_first`) not led by a digit."""
    for part in parts:
        if not part or not chars.issuperset(part):
            return False
        if not digit_first and part[0] in _DIGITS:
            return False
    return True


@functools.lru_cache(maxsize=_CACHE)
def is_object_path(value: str) -> bool:
    if value == "/":
        return True
    return value.startswith("/") and _elements(value[1:].split("/"), _WORD, True)


@functools.lru_cache(maxsize=_CACHE)
def is_interface_name(value: str) -> bool:
    if len(value) > MAX_NAME_LENGTH:
        return False
    parts = value.split(".")
    return len(parts) >= 2 and _elements(parts, _WORD, False)


is_error_name = is_interface_name


@functools.lru_cache(maxsize=_CACHE)
def is_member_name(value: str) -> bool:
    return len(value) <= MAX_NAME_LENGTH and _elements([value], _WORD, False)


@functools.lru_cache(maxsize=_CACHE)
def is_bus_name(value: str) -> bool:
    if len(value) > MAX_NAME_LENGTH:
        return False
    if value.startswith(":"):
        parts = value[1:].split(".")
        return len(parts) >= 2 and _elements(parts, _BUS_WORD, True)
    parts = value.split(".")
    return len(parts) >= 2 and _elements(parts, _BUS_WORD, False)


def is_unique_name(value: str) -> bool:
    return value.startswith(":") and is_bus_name(value)


def check_object_path(value: str) -> str:
    if not is_object_path(value):
        raise NameError_(f"invalid object path {value!r}")
    return value


def check_interface_name(value: str) -> str:
    if not is_interface_name(value):
        raise NameError_(f"invalid interface name {value!r}")
    return value


def check_error_name(value: str) -> str:
    if not is_error_name(value):
        raise NameError_(f"invalid error name {value!r}")
    return value


def check_member_name(value: str) -> str:
    if not is_member_name(value):
        raise NameError_(f"invalid member name {value!r}")
    return value


def check_bus_name(value: str) -> str:
    if not is_bus_name(value):
        raise NameError_(f"invalid bus name {value!r}")
    return value
