"""The grammar of signatures and names, from the specification's "Valid ..." sections."""

import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootbus.wire import names
from bootbus.wire.errors import NameError_, SignatureError
from bootbus.wire.signature import (
    is_single_complete_type,
    is_valid_signature,
    split_signature,
    struct_members,
)

VALID_SIGNATURES = {
    "": (),
    "y": ("y",),
    "ybnqiuxtdsogh": tuple("ybnqiuxtdsogh"),
    "v": ("v",),
    "ai": ("ai",),
    "aai": ("aai",),
    "a(ii)": ("a(ii)",),
    "(i(ii))": ("(i(ii))",),
    "a{sv}": ("a{sv}",),
    "a{oa{sa{sv}}}": ("a{oa{sa{sv}}}",),  # GetManagedObjects
    "sa{sv}as": ("s", "a{sv}", "as"),  # PropertiesChanged
    "a{yv}": ("a{yv}",),  # the header fields, as a{yv}
    "a(yv)": ("a(yv)",),
    "a{hv}": ("a{hv}",),
    "a{gv}": ("a{gv}",),
}


@pytest.mark.parametrize(("sig", "types"), VALID_SIGNATURES.items())
def test_valid_signatures_split_into_complete_types(sig: str, types: tuple[str, ...]) -> None:
    assert split_signature(sig) == types
    assert is_valid_signature(sig)


INVALID_SIGNATURES = [
    ("a", "array without element type"),
    ("aa", "array of array without element type"),
    ("(", "unclosed struct"),
    ("(i", "unclosed struct"),
    (")", "close without open"),
    ("()", "empty struct"),
    ("(i))", "extra close"),
    ("{sv}", "dict entry outside an array"),
    ("a{}", "empty dict entry"),
    ("a{s}", "dict entry with one type"),
    ("a{svs}", "dict entry with three types"),
    ("a{vs}", "dict entry with a variant key"),
    ("a{(i)s}", "dict entry with a struct key"),
    ("a{ais}", "dict entry with an array key"),
    ("a{sv", "unclosed dict entry"),
    ("r", "STRUCT type code r is not allowed in signatures"),
    ("e", "DICT_ENTRY type code e is not allowed in signatures"),
    ("m", "maybe (GVariant) is not D-Bus"),
    ("z", "unknown type code"),
    (" ", "space"),
    ("i\0", "NUL"),
    ("\u00e9", "non-ASCII"),
    ("a" * 33 + "i", "33 nested arrays"),
    ("(" * 33 + "i" + ")" * 33, "33 nested structs"),
    ("a{s" * 33 + "i" + "}" * 33, "33 nested dict entries are 33 arrays"),
    ("y" * 256, "longer than 255"),
]


@pytest.mark.parametrize(("sig", "why"), INVALID_SIGNATURES, ids=[w for _, w in INVALID_SIGNATURES])
def test_invalid_signatures_are_refused(sig: str, why: str) -> None:
    assert not is_valid_signature(sig)
    with pytest.raises(SignatureError):
        split_signature(sig)


def test_bounds_are_inclusive() -> None:
    assert is_valid_signature("a" * 32 + "i")
    assert is_valid_signature("(" * 32 + "i" + ")" * 32)
    assert is_valid_signature("a" * 32 + "(" * 32 + "i" + ")" * 32)
    assert is_valid_signature("y" * 255)


def test_dict_entries_count_as_structs_for_the_nesting_bound() -> None:
    # 16 nested a{s...} use 16 arrays and 16 struct-like dict entries: inside the
    # bounds; 16 more structs inside make 32 structs, one more is too many.
    sig = "a{s" * 16 + "(" * 16 + "i" + ")" * 16 + "}" * 16
    assert is_valid_signature(sig)
    assert not is_valid_signature("a{s" * 16 + "(" * 17 + "i" + ")" * 17 + "}" * 16)


def test_single_complete_type() -> None:
    assert is_single_complete_type("a{sv}")
    assert is_single_complete_type("(ii)")
    assert not is_single_complete_type("ii")
    assert not is_single_complete_type("")
    assert not is_single_complete_type("a")


def test_struct_members() -> None:
    assert struct_members("(ia{sv}(yy))") == ("i", "a{sv}", "(yy)")
    assert struct_members("{sv}") == ("s", "v")


# -- names --------------------------------------------------------------------------

OBJECT_PATHS = {
    "/": True, "/a": True, "/a/b_c/D9": True, "/org/freedesktop/DBus": True,
    "": False, "a": False, "//": False, "/a/": False, "/a//b": False, "/a-b": False,
    "/a.b": False, "/\u00e9": False, "/a\n": False, "/a/b/": False,
}


@pytest.mark.parametrize(("path", "ok"), OBJECT_PATHS.items())
def test_object_paths(path: str, ok: bool) -> None:
    assert names.is_object_path(path) is ok
    if not ok:
        with pytest.raises(NameError_):
            names.check_object_path(path)


INTERFACES = {
    "org.freedesktop.DBus": True, "a.b": True, "_a._b": True, "a1.b2": True, "A.B_C": True,
    "a": False, "": False, "a.": False, ".a": False, "a..b": False, "1a.b": False,
    "a.1b": False, "a-b.c": False, "a.b\n": False, "a.b" + "c" * 253: False,
    "a." + "b" * 253: True,  # exactly 255
    ":1.2": False,
}


@pytest.mark.parametrize(("name", "ok"), INTERFACES.items(), ids=lambda v: repr(v)[:20])
def test_interface_and_error_names(name: str, ok: bool) -> None:
    assert names.is_interface_name(name) is ok
    assert names.is_error_name(name) is ok


MEMBERS = {
    "Hello": True, "_x": True, "a9": True, "a" * 255: True,
    "": False, "9a": False, "a.b": False, "a-b": False, "a" * 256: False, "\u00e9": False,
}


@pytest.mark.parametrize(("name", "ok"), MEMBERS.items(), ids=lambda v: repr(v)[:20])
def test_member_names(name: str, ok: bool) -> None:
    assert names.is_member_name(name) is ok


BUS_NAMES = {
    # well-known: elements may contain '-', must not start with a digit
    "org.freedesktop.DBus": True, "com.example-x.a_b": True, "-a.b": True, "a.b": True,
    "a": False, "a.": False, ".a": False, "a..b": False, "a.1b": False, "1a.b": False,
    "a.b c": False, "": False,
    # unique: ':' then at least two elements, which may start with a digit
    ":1.2": True, ":1.2.3": True, ":a-b.0": True,
    ":1": False, ":": False, ":.1": False, ":1.": False, "::1.2": False,
    "a." + "b" * 253: True, "a." + "b" * 254: False,
}


@pytest.mark.parametrize(("name", "ok"), BUS_NAMES.items(), ids=lambda v: repr(v)[:20])
def test_bus_names(name: str, ok: bool) -> None:
    assert names.is_bus_name(name) is ok
    assert names.is_unique_name(name) is (ok and name.startswith(":"))


@pytest.mark.parametrize(("check", "good", "bad"), [
    (names.check_object_path, "/a/b", "/a/"),
    (names.check_interface_name, "a.b", "a"),
    (names.check_error_name, "a.Error", "a..Error"),
    (names.check_member_name, "Frob", "Fr.ob"),
    (names.check_bus_name, ":1.5", ":1"),
])
def test_checks_return_the_name_or_raise(check: Callable[[str], str], good: str,
                                         bad: str) -> None:
    assert check(good) == good
    with pytest.raises(NameError_):
        check(bad)


# The grammar as the specification's regular expressions, which bootbus.wire.names
# spells out by hand (re costs its cold start): both must agree on every string.
_E = r"[A-Za-z_][A-Za-z0-9_]*"
REFERENCE: list[tuple[Callable[[str], bool], re.Pattern[str]]] = [
    (names.is_object_path, re.compile(r"/\Z|(/[A-Za-z0-9_]+)+\Z")),
    (names.is_interface_name, re.compile(rf"{_E}(\.{_E})+\Z")),
    (names.is_member_name, re.compile(rf"{_E}\Z")),
    (names.is_bus_name, re.compile(r"([A-Za-z_-][A-Za-z0-9_-]*(\.[A-Za-z_-][A-Za-z0-9_-]*)+"
                                   r"|:[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+)\Z")),
]
NAME_CHARS = st.text(alphabet="aZ_9-.:/\u00e9\u0669\n ", max_size=12)


@settings(max_examples=3000)
@given(NAME_CHARS)
def test_names_agree_with_the_specification_patterns(value: str) -> None:
    for check, pattern in REFERENCE:
        assert check(value) is (pattern.match(value) is not None), (check.__name__, value)
