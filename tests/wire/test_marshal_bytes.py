"""Marshalling of every D-Bus type, in both byte orders, against hand-written bytes.

Each expected byte string is written from the specification's "Marshaling (Wire
Format)" rules: alignment of each type, padding with zeros, the length prefixes
of strings, signatures and arrays (the array length excludes the padding after
it, which is present even for an empty array), structs and dict entries aligned
to 8, a variant as its signature followed by the aligned value.
"""

import math

import pytest

from bootbus.wire import marshal as mm
from bootbus.wire.errors import MarshalError, WireError
from bootbus.wire.limits import MAX_ARRAY_SIZE

from .hexbytes import hx

L, B = mm.LITTLE, mm.BIG

# (signature, values, little-endian bytes, big-endian bytes)
CASES = [
    # BYTE: 1 byte, no alignment
    ("y", [0x12], "12", "12"),
    ("y", [0xFF], "ff", "ff"),
    # BOOLEAN: a UINT32 that is 0 or 1
    ("b", [True], "01000000", "00000001"),
    ("b", [False], "00000000", "00000000"),
    # INT16 / UINT16
    ("n", [-2], "feff", "fffe"),
    ("n", [-0x8000], "0080", "8000"),
    ("q", [0x1234], "3412", "1234"),
    # INT32 / UINT32
    ("i", [-1], "ffffffff", "ffffffff"),
    ("i", [0x01020304], "04030201", "01020304"),
    ("u", [0xDEADBEEF], "efbeadde", "deadbeef"),
    # INT64 / UINT64
    ("x", [-2], "feffffffffffffff", "fffffffffffffffe"),
    ("t", [0x0102030405060708], "0807060504030201", "0102030405060708"),
    ("t", [(1 << 64) - 1], "ffffffffffffffff", "ffffffffffffffff"),
    # DOUBLE: IEEE 754
    ("d", [1.0], "000000000000f03f", "3ff0000000000000"),
    ("d", [-2.5], "00000000000004c0", "c004000000000000"),
    # UNIX_FD: a UINT32 index into the message's fd list
    ("h", [3], "03000000", "00000003"),
    # STRING: UINT32 length, UTF-8 bytes, NUL
    ("s", ["foo"], "03000000 666f6f 00", "00000003 666f6f 00"),
    ("s", [""], "00000000 00", "00000000 00"),
    ("s", ["\u00e9"], "02000000 c3a9 00", "00000002 c3a9 00"),
    # OBJECT_PATH: like STRING
    ("o", ["/a/b"], "04000000 2f612f62 00", "00000004 2f612f62 00"),
    ("o", ["/"], "01000000 2f 00", "00000001 2f 00"),
    # SIGNATURE: BYTE length, ASCII, NUL
    ("g", ["a{sv}"], "05 617b73767d 00", "05 617b73767d 00"),
    ("g", [""], "00 00", "00 00"),
    # VARIANT: signature, then the value aligned for its own type
    ("v", [("u", 5)], "01 75 00 00 05000000", "01 75 00 00 00000005"),
    ("v", [("y", 7)], "01 79 00 07", "01 79 00 07"),
    # the specification's example: a variant holding an INT64 5, big-endian
    ("v", [("x", 5)], "01 78 00 0000000000 0500000000000000",
     "01 78 00 0000000000 0000000000000005"),
    ("v", [("v", ("s", "hi"))], "01 76 00 01 73 00 0000 02000000 6869 00",
     "01 76 00 01 73 00 0000 00000002 6869 00"),
    # ARRAY: UINT32 byte length (without the padding after it), elements
    ("ai", [[1, 2]], "08000000 01000000 02000000", "00000008 00000001 00000002"),
    ("ai", [[]], "00000000", "00000000"),
    # the specification's example: an INT64 array [5], with padding after the length
    ("ax", [[5]], "08000000 00000000 0500000000000000",
     "00000008 00000000 0000000000000005"),
    # an empty array of 8-aligned elements still pads to 8 after its length
    ("ax", [[]], "00000000 00000000", "00000000 00000000"),
    ("a(y)", [[]], "00000000 00000000", "00000000 00000000"),
    ("ay", [b"\x01\x02"], "02000000 0102", "00000002 0102"),
    ("ay", [b""], "00000000", "00000000"),
    ("as", [["a", "bc"]], "0f000000 01000000 61 00 0000 02000000 6263 00",
     "0000000f 00000001 61 00 0000 00000002 6263 00"),
    ("aay", [[b"\x01", b""]], "0c000000 01000000 01 000000 00000000",
     "0000000c 00000001 01 000000 00000000"),
    ("ag", [["i", "ai"]], "07000000 01 69 00 02 6169 00", "00000007 01 69 00 02 6169 00"),
    # STRUCT: aligned to 8, members aligned for their own types
    ("(yu)", [(1, 2)], "01 000000 02000000", "01 000000 00000002"),
    ("y(y)", [1, (2,)], "01 00000000000000 02", "01 00000000000000 02"),
    ("(i(ns))", [(-1, (3, "x"))],
     "ffffffff 00000000 0300 0000 01000000 78 00",
     "ffffffff 00000000 0003 0000 00000001 78 00"),
    ("a(yy)", [[(1, 2), (3, 4)]], "0a000000 00000000 0102 000000000000 0304",
     "0000000a 00000000 0102 000000000000 0304"),
    # DICT_ENTRY: like a struct, only inside arrays
    ("a{sv}", [{"a": ("y", 7)}], "0a000000 00000000 01000000 61 00 01 79 00 07",
     "0000000a 00000000 00000001 61 00 01 79 00 07"),
    ("a{yi}", [{1: 2, 3: 4}], "10000000 00000000 01 000000 02000000 03 000000 04000000",
     "00000010 00000000 01 000000 00000002 03 000000 00000004"),
    # several complete types in one body
    ("yi", [1, 2], "01 000000 02000000", "01 000000 00000002"),
    ("ybnqiuxtdsogh", [1, True, -1, 2, -3, 4, -5, 6, 0.5, "s", "/o", "g", 7],
     ("01 000000 01000000 ffff 0200 fdffffff 04000000 00000000 fbffffffffffffff"
      " 0600000000000000 000000000000e03f 01000000 73 00 0000 02000000 2f6f 00 01 67 00"
      " 0000 07000000"),
     ("01 000000 00000001 ffff 0002 fffffffd 00000004 00000000 fffffffffffffffb"
      " 0000000000000006 3fe0000000000000 00000001 73 00 0000 00000002 2f6f 00 01 67 00"
      " 0000 00000007")),
]


@pytest.mark.parametrize("endian", [L, B])
@pytest.mark.parametrize(("sig", "values", "little", "big"), CASES)
def test_marshal_matches_spec_bytes(sig: str, values: list, little: str, big: str,
                                    endian: str) -> None:
    expected = hx(little if endian == L else big)
    assert mm.marshal(sig, values, endian) == expected


@pytest.mark.parametrize("endian", [L, B])
@pytest.mark.parametrize(("sig", "values", "little", "big"), CASES)
def test_unmarshal_spec_bytes(sig: str, values: list, little: str, big: str,
                              endian: str) -> None:
    data = hx(little if endian == L else big)
    assert mm.unmarshal(sig, data, endian) == values


def test_unmarshal_gives_the_documented_python_types() -> None:
    assert mm.unmarshal("bu", hx("01000000 02000000"), L) == [True, 2]
    assert type(mm.unmarshal("b", hx("01000000"), L)[0]) is bool
    assert type(mm.unmarshal("ay", hx("01000000 ff"), L)[0]) is bytes
    assert mm.unmarshal("a{sv}", hx("00000000 00000000"), L) == [{}]
    assert type(mm.unmarshal("(y)", hx("05"), L)[0]) is tuple
    assert type(mm.unmarshal("ai", hx("00000000"), L)[0]) is list


def test_double_special_values_keep_their_bits() -> None:
    for value in (math.inf, -math.inf, -0.0, 5e-324):
        data = mm.marshal("d", [value], L)
        (back,) = mm.unmarshal("d", data, L)
        assert mm.marshal("d", [back], L) == data
    (nan,) = mm.unmarshal("d", hx("000000000000f87f"), L)
    assert math.isnan(nan)


def test_offsets_are_relative_to_the_start_of_the_body() -> None:
    # Reader(pos=...) reads a body that starts at an 8-aligned offset of a frame.
    frame = bytes(16) + hx("01 000000 02000000")
    assert mm.unmarshal("yu", frame, L, pos=16) == [1, 2]


# -- what the reader must refuse ------------------------------------------------

# (signature, little-endian bytes, big-endian bytes, what is wrong)
BAD_BODIES = [
    ("b", "02000000", "00000002", "boolean other than 0 or 1"),
    ("yu", "01 000100 02000000", "01 000100 00000002", "non-zero padding before a UINT32"),
    ("ax", "08000000 01000000 0500000000000000", "00000008 00000001 0000000000000005",
     "non-zero padding after an array length"),
    ("y(y)", "01 00000000000001 02", "01 00000000000001 02", "non-zero padding before a struct"),
    ("s", "03000000 666f6f 78", "00000003 666f6f 78", "string without its NUL"),
    ("s", "03000000 66006f 00", "00000003 66006f 00", "string containing NUL"),
    ("s", "02000000 c328 00", "00000002 c328 00", "invalid UTF-8"),
    ("s", "02000000 c080 00", "00000002 c080 00", "overlong UTF-8 encoding of NUL"),
    ("s", "03000000 eda080 00", "00000003 eda080 00", "UTF-8 encoded surrogate"),
    ("s", "04000000 f4908080 00", "00000004 f4908080 00", "code point above U+10FFFF"),
    ("s", "05000000 666f6f", "00000005 666f6f", "string running past the end"),
    ("o", "02000000 2f2f 00", "00000002 2f2f 00", "object path with an empty element"),
    ("o", "03000000 2f612f 00", "00000003 2f612f 00", "object path with a trailing slash"),
    ("o", "01000000 61 00", "00000001 61 00", "object path without a leading slash"),
    ("o", "02000000 2f2d 00", "00000002 2f2d 00", "object path character outside [A-Za-z0-9_]"),
    ("g", "01 61 00", "01 61 00", "signature: array without element type"),
    ("g", "02 2869 00", "02 2869 00", "signature: unclosed struct"),
    ("g", "02 7b7d 00", "02 7b7d 00", "signature: dict entry outside an array"),
    ("g", "01 61", "01 61", "signature without its NUL"),
    ("v", "02 6969 00 00 01000000 02000000", "02 6969 00 00 00000001 00000002",
     "variant signature of two complete types"),
    ("v", "00 00", "00 00", "variant with an empty signature"),
    ("v", "01 7a 00 00", "01 7a 00 00", "variant with an invalid type code"),
    ("ai", "04000004 00000000", "04000004 00000000", "array longer than 64 MiB"),
    ("ai", "08000000 01000000", "00000008 00000001", "array running past the end"),
    ("ai", "06000000 01000000 02000000", "00000006 00000001 00000002",
     "elements that do not fill the array length"),
    ("ay", "", "", "missing array length"),
    ("u", "010000", "000001", "truncated UINT32"),
    ("y", "01 00", "01 00", "trailing bytes after the body"),
    ("a{sv}", "06000000 00000000 01000000 61 00", "00000006 00000000 00000001 61 00",
     "dict entry truncated"),
]


@pytest.mark.parametrize(("sig", "little", "big", "why"), BAD_BODIES,
                         ids=[c[3] for c in BAD_BODIES])
@pytest.mark.parametrize("endian", [L, B])
def test_unmarshal_rejects(sig: str, little: str, big: str, why: str, endian: str) -> None:
    with pytest.raises(MarshalError):
        mm.unmarshal(sig, hx(little if endian == L else big), endian)


def test_array_at_exactly_the_64_mib_bound_is_accepted() -> None:
    data = mm.marshal("ay", [bytes(MAX_ARRAY_SIZE)], L)
    assert data[:4] == hx("00000004")
    (back,) = mm.unmarshal("ay", data, L)
    assert len(back) == MAX_ARRAY_SIZE


def test_marshal_refuses_an_array_over_64_mib() -> None:
    with pytest.raises(MarshalError):
        mm.marshal("ay", [bytes(MAX_ARRAY_SIZE + 1)], L)


def _nested_variant(depth: int) -> bytes:
    """``depth`` variants, each holding the next; the innermost holds BYTE 1."""
    return b"\x01v\x00" * (depth - 1) + b"\x01y\x00\x01"


def test_variant_nesting_up_to_the_total_depth_of_64_is_accepted() -> None:
    data = _nested_variant(64)
    value = mm.unmarshal("v", data, L)[0]
    for _ in range(63):
        assert value[0] == "v"
        value = value[1]
    assert value == ("y", 1)
    assert mm.marshal("v", mm.unmarshal("v", data, L), L) == data


def test_variant_nesting_beyond_the_total_depth_of_64_is_refused() -> None:
    with pytest.raises(MarshalError):
        mm.unmarshal("v", _nested_variant(65), L)
    deep: object = ("y", 1)
    for _ in range(64):  # 65 variants in all
        deep = ("v", deep)
    with pytest.raises(MarshalError):
        mm.marshal("v", [deep], L)


def test_32_arrays_and_32_structs_nest_to_depth_64() -> None:
    sig = "a" * 32 + "(" * 32 + "y" + ")" * 32
    value: object = 7
    for _ in range(32):
        value = (value,)
    for _ in range(32):
        value = [value]
    data = mm.marshal(sig, [value], B)
    assert mm.unmarshal(sig, data, B) == [value]


# -- what the writer must refuse -------------------------------------------------

BAD_VALUES = [
    ("y", 256), ("y", -1), ("y", True), ("n", 0x8000), ("q", -1), ("i", 1 << 31),
    ("u", -1), ("u", 1 << 32), ("x", 1 << 63), ("t", -1), ("t", 1 << 64), ("h", -1),
    ("i", 1.0), ("i", "1"), ("b", 2), ("b", "true"), ("b", None),
    ("s", b"bytes"), ("s", "nul\0inside"), ("s", "\ud800"), ("o", "//"), ("o", "a"),
    ("o", "/a/"), ("g", "a"), ("g", "(i"), ("g", "{sv}"), ("g", 5),
    ("v", "not a tuple"), ("v", ("ii", (1, 2))), ("v", ("", 1)), ("v", (1, 2)),
    ("ai", "12"), ("ai", {1: 2}), ("a{sv}", [("a", ("y", 1))]), ("ay", "text"),
    ("(ii)", (1,)), ("(ii)", 1), ("a{sv}", {1: ("y", 1)}),
    # DOUBLE takes numbers only: a string is not a double, and an integer too large
    # for a double must be refused as a marshalling error, not escape as OverflowError
    ("d", "1.5"), ("d", 10 ** 400), ("d", None),
]


@pytest.mark.parametrize(("sig", "value"), BAD_VALUES, ids=lambda v: repr(v)[:24])
def test_marshal_rejects_values_with_a_wire_error(sig: str, value: object) -> None:
    with pytest.raises(WireError):
        mm.marshal(sig, [value], L)


def test_marshal_needs_one_value_per_complete_type() -> None:
    with pytest.raises(MarshalError):
        mm.marshal("ii", [1], L)
    with pytest.raises(MarshalError):
        mm.marshal("i", [1, 2], L)


def test_unknown_byte_order_is_refused() -> None:
    with pytest.raises(MarshalError):
        mm.marshal("y", [1], "x")
    with pytest.raises(MarshalError):
        mm.unmarshal("y", b"\x01", "x")
