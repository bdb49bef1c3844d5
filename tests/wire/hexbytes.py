"""Readable byte literals: hex pairs with spaces, newlines and ``#`` comments."""


def hx(text: str) -> bytes:
    """``hx("6c 01 # l, method call")`` -> b"l\\x01"; comments run to the end of the line."""
    digits = "".join(line.split("#", 1)[0] for line in text.splitlines())
    return bytes.fromhex(digits)
