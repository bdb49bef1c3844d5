"""Hypothesis strategies for D-Bus types, values, names and messages.

A type is drawn as a small tree, and its signature, its values and its jeepney
type are all derived from the tree, so that neither bootbus's signature parser
nor jeepney's is used to decide what a value looks like:

    ("basic", "u") | ("array", T) | ("dict", "s", T) | ("struct", (T, ...)) | ("variant",)
"""

from typing import Any

from hypothesis import strategies as st
from jeepney import low_level as jl

Tree = tuple[Any, ...]

BASIC = "ybnqiuxtdsogh"
INT_RANGES = {
    "y": (0, 0xFF), "n": (-0x8000, 0x7FFF), "q": (0, 0xFFFF), "i": (-0x80000000, 0x7FFFFFFF),
    "u": (0, 0xFFFFFFFF), "x": (-(1 << 63), (1 << 63) - 1), "t": (0, (1 << 64) - 1),
    "h": (0, 0xFFFFFFFF),
}
MAX_SIGNATURE = 255


def _leaves(basic: str) -> st.SearchStrategy[Tree]:
    return st.sampled_from(basic).map(lambda c: ("basic", c)) | st.just(("variant",))


def _extend(basic: str):  # type: ignore[no-untyped-def]
    def extend(children: st.SearchStrategy[Tree]) -> st.SearchStrategy[Tree]:
        return st.one_of(
            children.map(lambda t: ("array", t)),
            st.tuples(st.sampled_from(basic), children).map(lambda kv: ("dict", kv[0], kv[1])),
            st.lists(children, min_size=1, max_size=4).map(lambda ts: ("struct", tuple(ts))),
        )
    return extend


def type_trees(basic: str = BASIC, max_leaves: int = 6) -> st.SearchStrategy[Tree]:
    return st.recursive(_leaves(basic), _extend(basic), max_leaves=max_leaves)


TREES = type_trees()
TREES_NO_FD = type_trees(BASIC.replace("h", ""))  # jeepney reads 'h' in variants as fds
BASIC_NO_FD = st.sampled_from(BASIC.replace("h", "")).map(lambda c: ("basic", c))


def signature(tree: Tree) -> str:
    kind = tree[0]
    if kind == "basic":
        return str(tree[1])
    if kind == "variant":
        return "v"
    if kind == "array":
        return "a" + signature(tree[1])
    if kind == "dict":
        return "a{" + tree[1] + signature(tree[2]) + "}"
    return "(" + "".join(signature(t) for t in tree[1]) + ")"


def body_types(trees: st.SearchStrategy[Tree] = TREES,
               max_size: int = 4) -> st.SearchStrategy[list[Tree]]:
    return st.lists(trees, max_size=max_size).filter(
        lambda ts: len("".join(signature(t) for t in ts)) <= MAX_SIGNATURE)


# -- values ---------------------------------------------------------------------------

_ELEMENT = st.from_regex(r"[A-Za-z0-9_]{1,6}", fullmatch=True)
OBJECT_PATHS = st.lists(_ELEMENT, max_size=4).map(lambda parts: "/" + "/".join(parts))
STRINGS = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                  max_size=12)
SIGNATURES = body_types(max_size=3).map(lambda ts: "".join(signature(t) for t in ts))


def basic_values(code: str) -> st.SearchStrategy[Any]:
    if code in INT_RANGES:
        low, high = INT_RANGES[code]
        return st.integers(low, high)
    if code == "b":
        return st.booleans()
    if code == "d":
        return st.floats(allow_nan=False)
    if code == "s":
        return STRINGS
    if code == "o":
        return OBJECT_PATHS
    return SIGNATURES  # "g"


def values(tree: Tree, depth: int = 0) -> st.SearchStrategy[Any]:
    """Python values of a type, in the representation bootbus and jeepney share."""
    kind = tree[0]
    if kind == "basic":
        return basic_values(tree[1])
    if kind == "variant":
        inner = TREES_NO_FD if depth < 2 else BASIC_NO_FD
        return inner.flatmap(lambda t: values(t, depth + 1).map(lambda v: (signature(t), v)))
    if kind == "array":
        elem = tree[1]
        if elem == ("basic", "y"):
            return st.binary(max_size=8)
        return st.lists(values(elem, depth + 1), max_size=3)
    if kind == "dict":
        return st.dictionaries(basic_values(tree[1]), values(tree[2], depth + 1), max_size=3)
    return st.tuples(*(values(t, depth + 1) for t in tree[1]))


@st.composite
def bodies(draw: st.DrawFn, trees: st.SearchStrategy[Tree] = TREES,
           max_size: int = 4) -> tuple[list[Tree], list[Any]]:
    types = draw(body_types(trees, max_size))
    return types, [draw(values(t)) for t in types]


# -- the same types for jeepney ---------------------------------------------------------

def jeepney_type(tree: Tree) -> Any:
    """jeepney's type object, with UNIX_FD read as the UINT32 index it is on the wire."""
    kind = tree[0]
    if kind == "basic":
        return jl.simple_types["u" if tree[1] == "h" else tree[1]]
    if kind == "variant":
        return jl.Variant()
    if kind == "array":
        return jl.Array(jeepney_type(tree[1]))
    if kind == "dict":
        return jl.Array(jl.DictEntry([jeepney_type(("basic", tree[1])), jeepney_type(tree[2])]))
    return jl.Struct([jeepney_type(t) for t in tree[1]])


ENDIANNESS = {"l": jl.Endianness.little, "B": jl.Endianness.big}


def jeepney_marshal(types: list[Tree], body: list[Any], endian: str) -> bytes:
    if not types:
        return b""
    return jl.Struct([jeepney_type(t) for t in types]).serialise(
        tuple(body), 0, ENDIANNESS[endian])


def jeepney_unmarshal(types: list[Tree], data: bytes, endian: str) -> list[Any]:
    if not types:
        assert data == b""
        return []
    value, end = jl.Struct([jeepney_type(t) for t in types]).parse_data(
        data, 0, ENDIANNESS[endian])
    assert end == len(data), "jeepney left bytes unread"
    return list(value)


# -- names and messages -------------------------------------------------------------------

_NAME_ELEMENT = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True)
INTERFACES = st.lists(_NAME_ELEMENT, min_size=2, max_size=4).map(".".join)
MEMBERS = _NAME_ELEMENT
WELL_KNOWN = st.lists(st.from_regex(r"[A-Za-z_-][A-Za-z0-9_-]{0,7}", fullmatch=True),
                      min_size=2, max_size=4).map(".".join)
UNIQUE = st.tuples(st.integers(0, 99), st.integers(0, 10 ** 6)).map(lambda t: f":{t[0]}.{t[1]}")
BUS_NAMES = WELL_KNOWN | UNIQUE
SERIALS = st.integers(1, 0xFFFFFFFF)


@st.composite
def message_fields(draw: st.DrawFn) -> dict[str, Any]:
    """Keyword arguments of bootbus.wire.message.build for a valid message, without body."""
    mtype = draw(st.sampled_from([1, 2, 3, 4]))
    fields: dict[str, Any] = {"mtype": mtype, "serial": draw(SERIALS),
                              "flags": draw(st.integers(0, 7)),
                              "endian": draw(st.sampled_from(["l", "B"]))}
    optional = {"destination": BUS_NAMES, "sender": BUS_NAMES}
    if mtype in (1, 4):
        fields["path"] = draw(OBJECT_PATHS.filter(lambda p: p != "/org/freedesktop/DBus/Local"))
        fields["member"] = draw(MEMBERS)
        interfaces = INTERFACES.filter(lambda i: i != "org.freedesktop.DBus.Local")
        if mtype == 4:
            fields["interface"] = draw(interfaces)
        else:
            optional["interface"] = interfaces
    else:
        fields["reply_serial"] = draw(SERIALS)
        if mtype == 3:
            fields["error_name"] = draw(INTERFACES)
    for key, strategy in optional.items():
        if draw(st.booleans()):
            fields[key] = draw(strategy)
    return fields
