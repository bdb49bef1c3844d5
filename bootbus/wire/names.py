"""Validation of the names the specification defines.

Owns: the grammar of object paths, interface names, member names, error names
and bus names (unique and well-known). Results are cached: the same few names
cross a bus millions of times. Never allocates per call beyond the cache.
"""

import functools
import re

from .errors import NameError_
from .limits import MAX_NAME_LENGTH

_PATH = re.compile(r"/\Z|(/[A-Za-z0-9_]+)+\Z")
_ELEMENT = r"[A-Za-z_][A-Za-z0-9_]*"
_INTERFACE = re.compile(rf"{_ELEMENT}(\.{_ELEMENT})+\Z")
_MEMBER = re.compile(rf"{_ELEMENT}\Z")
_WELL_KNOWN = re.compile(r"[A-Za-z_-][A-Za-z0-9_-]*(\.[A-Za-z_-][A-Za-z0-9_-]*)+\Z")
_UNIQUE = re.compile(r":[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+\Z")
_CACHE = 4096


@functools.lru_cache(maxsize=_CACHE)
def is_object_path(value: str) -> bool:
    return _PATH.match(value) is not None


@functools.lru_cache(maxsize=_CACHE)
def is_interface_name(value: str) -> bool:
    return len(value) <= MAX_NAME_LENGTH and _INTERFACE.match(value) is not None


is_error_name = is_interface_name


@functools.lru_cache(maxsize=_CACHE)
def is_member_name(value: str) -> bool:
    return len(value) <= MAX_NAME_LENGTH and _MEMBER.match(value) is not None


@functools.lru_cache(maxsize=_CACHE)
def is_bus_name(value: str) -> bool:
    if len(value) > MAX_NAME_LENGTH:
        return False
    pattern = _UNIQUE if value.startswith(":") else _WELL_KNOWN
    return pattern.match(value) is not None


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
