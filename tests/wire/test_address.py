"""D-Bus address syntax, from the specification's "Server Addresses" section."""

import pytest

from bootbus.wire.address import Address, escape, parse_addresses, unescape
from bootbus.wire.errors import AddressError


def test_several_addresses_with_percent_escapes() -> None:
    got = parse_addresses("unix:path=/run/a%20b,guid=00ff;unix:abstract=x;;tcp:host=localhost")
    assert got == [
        Address("unix", (("path", "/run/a b"), ("guid", "00ff"))),
        Address("unix", (("abstract", "x"),)),
        Address("tcp", (("host", "localhost"),)),
    ]
    assert got[0].get("path") == "/run/a b" and got[0].get("nope") is None


def test_transport_without_parameters() -> None:
    assert parse_addresses("autolaunch:") == [Address("autolaunch", ())]


def test_optionally_escaped_bytes_stand_as_they_are() -> None:
    assert escape("/run/bootbus/bus-1_x.y\\*") == "/run/bootbus/bus-1_x.y\\*"
    assert escape("a b,c;d=e\u00e9") == "a%20b%2cc%3bd%3de%c3%a9"


@pytest.mark.parametrize("value", ["", "/tmp/x y", "semi;colon,comma=eq", "\u00e9\u20ac", "%"])
def test_escape_round_trips(value: str) -> None:
    assert unescape(escape(value)).decode() == value
    (address,) = parse_addresses(str(Address("unix", (("path", value),))))
    assert address.get("path") == value


@pytest.mark.parametrize("text", [
    "", ";", "nocolon", ":path=/x", "unix:path", "unix:=x", "unix:path=/a,path=/b",
    "unix:path=%", "unix:path=%4", "unix:path=%zz", "unix:path=%ff",
])
def test_malformed_addresses(text: str) -> None:
    with pytest.raises(AddressError):
        parse_addresses(text)
