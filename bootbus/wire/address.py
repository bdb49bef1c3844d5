"""D-Bus server address syntax: ``transport:key=value,key=value;...``.

Owns: parsing and formatting addresses with the specification's %-escaping.
Never opens a socket; the io layer turns parsed addresses into listeners.
"""

from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

from .errors import AddressError

_OPTIONALLY_ESCAPED = "-_/.\\*"  # characters the spec lets appear unescaped (plus alnum)


@dataclass(frozen=True)
class Address:
    transport: str
    params: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str | None:
        for k, v in self.params:
            if k == key:
                return v
        return None

    def __str__(self) -> str:
        return self.transport + ":" + ",".join(f"{k}={escape(v)}" for k, v in self.params)


def escape(value: str) -> str:
    return quote(value, safe=_OPTIONALLY_ESCAPED)


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
                decoded = unquote_to_bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise AddressError(f"address {part!r}: value of {key!r} is not UTF-8") from None
            params.append((key, decoded))
        result.append(Address(transport, tuple(params)))
    if not result:
        raise AddressError("empty address")
    return result
