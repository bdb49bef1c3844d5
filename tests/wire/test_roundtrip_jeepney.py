"""Ring 2: random signatures and values against jeepney, in both directions and byte orders.

jeepney (python3-jeepney, used only by tests) is an independent pure-Python
D-Bus implementation. For every drawn body: bootbus and jeepney must write the
same bytes, each must read the other's bytes back to the same values, and a
whole message built by either must parse the same in the other.
"""

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from jeepney import low_level as jl

from bootbus.wire import marshal as mm
from bootbus.wire import message as m
from bootbus.wire.signature import split_signature

from .strategies import (
    ENDIANNESS,
    TREES_NO_FD,
    Tree,
    bodies,
    jeepney_marshal,
    jeepney_unmarshal,
    message_fields,
    signature,
    type_trees,
)

ENDIANS = st.sampled_from(["l", "B"])
FAST = settings(max_examples=250, deadline=None, database=None)


def sig_of(types: list[Tree]) -> str:
    return "".join(signature(t) for t in types)


@FAST
@given(bodies(), ENDIANS)
def test_bodies_agree_with_jeepney_both_ways(body: tuple[list[Tree], list[Any]],
                                             endian: str) -> None:
    types, values = body
    sig = sig_of(types)
    theirs = jeepney_marshal(types, values, endian)
    ours = mm.marshal(sig, values, endian)
    assert ours == theirs, "bootbus writes what jeepney writes"
    assert mm.unmarshal(sig, theirs, endian) == values, "bootbus reads jeepney's bytes"
    assert jeepney_unmarshal(types, ours, endian) == values, "jeepney reads bootbus's bytes"
    # the values bootbus reads back marshal to the same bytes (-0.0, bools, dict order)
    assert mm.marshal(sig, mm.unmarshal(sig, ours, endian), endian) == ours


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(type_trees(max_leaves=10), max_size=6))
def test_signatures_split_into_the_drawn_types(types: list[Tree]) -> None:
    sig = sig_of(types)
    if len(sig) <= 255:
        assert split_signature(sig) == tuple(signature(t) for t in types)


def _jeepney_message(fields: dict[str, Any], sig: str, body: list[Any]) -> bytes:
    keys = {"path": jl.HeaderFields.path, "interface": jl.HeaderFields.interface,
            "member": jl.HeaderFields.member, "error_name": jl.HeaderFields.error_name,
            "reply_serial": jl.HeaderFields.reply_serial,
            "destination": jl.HeaderFields.destination, "sender": jl.HeaderFields.sender}
    header_fields = {keys[k]: v for k, v in fields.items() if k in keys}
    if sig:
        header_fields[jl.HeaderFields.signature] = sig
    header = jl.Header(ENDIANNESS[fields["endian"]], fields["mtype"], fields["flags"], 1, 0,
                       fields["serial"], header_fields)
    return jl.Message(header, tuple(body)).serialise()


_MESSAGE_SETTINGS = settings(max_examples=200, deadline=None, database=None)
# a few senders whose cached forwarding heads outlive one example, as a peer's do
_SENDERS: dict[tuple[int, str], m.SenderField] = {}


@_MESSAGE_SETTINGS
@given(message_fields(), bodies(TREES_NO_FD, max_size=3), st.integers(1, 999))
def test_messages_agree_with_jeepney(fields: dict[str, Any], body: tuple[list[Tree], list[Any]],
                                     unique: int) -> None:
    types, values = body
    sig = sig_of(types)
    # jeepney writes the header fields sorted by code, as bootbus's build() does
    raw = _jeepney_message(fields, sig, values)
    assert m.build(**fields, signature=sig, args=values) == raw

    assert m.frame_size(raw[:16]) == len(raw)
    msg = m.parse(raw)
    assert (msg.type, msg.serial, msg.flags, msg.endian) == (
        fields["mtype"], fields["serial"], fields["flags"], fields["endian"])
    for key in ("path", "interface", "member", "error_name", "destination", "sender"):
        assert getattr(msg, key) == fields.get(key), key
    assert msg.reply_serial == fields.get("reply_serial", 0)
    assert msg.signature == sig
    assert msg.args() == values

    # the bus sets the sender; jeepney reads the forwarded frame
    header, rest = m.with_sender(msg, m.sender_field(f":1.{unique}", msg.endian))
    forwarded = header + bytes(rest)
    sender = _SENDERS.setdefault((unique % 3, msg.endian), m.SenderField(f":1.{unique % 3}",
                                                                         msg.endian))
    bufs, size = sender.forward(msg)  # the router's way: the same frame, from its cache
    expected = m.with_sender(msg, m.sender_field(f":1.{unique % 3}", msg.endian))
    assert b"".join(bytes(buf) for buf in bufs) == expected[0] + bytes(expected[1])
    assert size == sum(len(buf) for buf in bufs)
    jmsg = jl.Message.from_buffer(forwarded)
    assert jmsg.header.fields[jl.HeaderFields.sender] == f":1.{unique}"
    assert jmsg.header.serial == fields["serial"]
    assert jmsg.header.fields.get(jl.HeaderFields.member) == fields.get("member")
    assert list(jmsg.body) == values
    assert m.parse(forwarded).args() == values
