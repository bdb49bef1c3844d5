"""D-Bus server address syntax: ``transport:key=value,key=value;...``.

Owns: parsing and formatting addresses with the specification's %-escaping.
Never opens a socket; the io layer turns parsed addresses into listeners.
"""

from ..plain import FrozenFields
from .errors import AddressError

_OPTIONALLY_ESCAPED = "-_/.\\*"  # characters the spec lets appear unescaped (plus alnum)


class Address(FrozenFields):
    __slots__ = _fields = ("transport", "params")

    transport: str
    params: tuple[tuple[str, str], ...]

    def __init__(self, transport: str, params: tuple[tuple[str, str], ...]) -> None:
        object.__setattr__(self, "transport", transport)
        object.__setattr__(self, "params", params)

    def get(self, key: str) -> str | None:
        for k, v in self.params:
            if k == key:
                return v
        return None

    def __str__(self) -> str:
        return self.transport + ":" + ",".join(f"{k}={escape(v)}" for k, v in self.params)


def escape(value: str) -> str:
    """%-escape every byte the specification does not let stand as it is."""
    out = []
    for byte in value.encode("utf-8"):
        char = chr(byte)
        if char.isascii() and (char.isalnum() or char in _OPTIONALLY_ESCAPED):
            out.append(char)
        else:
            out.append(f"%{byte:02x}")
    return "".join(out)


def unescape(value: str) -> bytes:
    """Undo %-escaping; a stray '%' is an error (urllib would keep it)."""
    out = bytearray()
    pos = 0
    while pos < len(value):
        char = value[pos]
        if char == "%":
            try:
                out.append(int(value[pos + 1:pos + 3], 16))
            except ValueError:
                raise AddressError(f"bad %-escape in {value!r}") from None
            if len(value[pos + 1:pos + 3]) != 2:
                raise AddressError(f"bad %-escape in {value!r}")
            pos += 3
        else:
            out += char.encode("utf-8")
            pos += 1
    return bytes(out)


def parse_addresses(text: str) -> list[Address]:
    """Parse a ``;``-separated list of addresses."""
    result = []
    for part in text.split(";"):
        if not part:
            continue
        transport, colon, rest = part.partition(":")
        if not colon or not transport:
            raise AddressError(f"address {part!r} has no transport")
        params = []
        seen = set()
        for item in rest.split(",") if rest else ():
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise AddressError(f"address {part!r}: {item!r} is not key=value")
            if key in seen:
                raise AddressError(f"address {part!r} repeats key {key!r}")
            seen.add(key)
            try:
                decoded = unescape(value).decode("utf-8")
            except UnicodeDecodeError:
                raise AddressError(f"address {part!r}: value of {key!r} is not UTF-8") from None
            params.append((key, decoded))
        result.append(Address(transport, tuple(params)))
    if not result:
        raise AddressError("empty address")
    return result
