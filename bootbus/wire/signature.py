"""Type signatures: validation and splitting into complete types.

Owns: the signature grammar of the specification (basic types, arrays, structs,
dict entries, variants, unix fds) and its bounds (255 bytes, 32 nested arrays,
32 nested structs). Signatures are immutable strings, so parses are cached.
"""

import functools

from .errors import SignatureError
from .limits import MAX_ARRAY_DEPTH, MAX_SIGNATURE_LENGTH, MAX_STRUCT_DEPTH

BASIC_TYPES = frozenset("ybnqiuxtdsogh")
FIXED_TYPES = frozenset("ybnqiuxtdh")
STRING_TYPES = frozenset("sog")
ALL_CODES = BASIC_TYPES | frozenset("va(){}")

ALIGNMENT = {
    "y": 1, "b": 4, "n": 2, "q": 2, "i": 4, "u": 4, "x": 8, "t": 8, "d": 8,
    "s": 4, "o": 4, "g": 1, "h": 4, "v": 1, "a": 4, "(": 8, "{": 8,
}


def _complete_type(sig: str, pos: int, arrays: int, structs: int) -> int:
    """Return the index just past the complete type starting at ``pos``."""
    if pos >= len(sig):
        raise SignatureError(f"signature {sig!r} ends inside a type")
    code = sig[pos]
    if code in BASIC_TYPES or code == "v":
        return pos + 1
    if code == "a":
        if arrays + 1 > MAX_ARRAY_DEPTH:
            raise SignatureError(f"signature {sig!r} nests more than {MAX_ARRAY_DEPTH} arrays")
        if pos + 1 < len(sig) and sig[pos + 1] == "{":
            return _dict_entry(sig, pos + 1, arrays + 1, structs)
        return _complete_type(sig, pos + 1, arrays + 1, structs)
    if code == "(":
        if structs + 1 > MAX_STRUCT_DEPTH:
            raise SignatureError(f"signature {sig!r} nests more than {MAX_STRUCT_DEPTH} structs")
        pos += 1
        if pos < len(sig) and sig[pos] == ")":
            raise SignatureError(f"signature {sig!r} has an empty struct")
        while pos < len(sig) and sig[pos] != ")":
            pos = _complete_type(sig, pos, arrays, structs + 1)
        if pos >= len(sig):
            raise SignatureError(f"signature {sig!r} has an unclosed struct")
        return pos + 1
    if code == "{":
        raise SignatureError(f"signature {sig!r} has a dict entry outside an array")
    raise SignatureError(f"signature {sig!r} has an invalid type code {code!r}")


def _dict_entry(sig: str, pos: int, arrays: int, structs: int) -> int:
    if structs + 1 > MAX_STRUCT_DEPTH:
        raise SignatureError(f"signature {sig!r} nests more than {MAX_STRUCT_DEPTH} structs")
    pos += 1
    if pos >= len(sig) or sig[pos] not in BASIC_TYPES:
        raise SignatureError(f"signature {sig!r} has a dict entry with a non-basic key")
    pos = _complete_type(sig, pos + 1, arrays, structs + 1)
    if pos >= len(sig) or sig[pos] != "}":
        raise SignatureError(f"signature {sig!r} has a dict entry without exactly two types")
    return pos + 1


@functools.lru_cache(maxsize=2048)
def split_signature(sig: str) -> tuple[str, ...]:
    """Validate ``sig`` and return its complete types, in order."""
    if len(sig.encode()) > MAX_SIGNATURE_LENGTH:
        raise SignatureError(f"signature is longer than {MAX_SIGNATURE_LENGTH} bytes")
    types = []
    pos = 0
    while pos < len(sig):
        end = _complete_type(sig, pos, 0, 0)
        types.append(sig[pos:end])
        pos = end
    return tuple(types)


def is_valid_signature(sig: str) -> bool:
    try:
        split_signature(sig)
    except SignatureError:
        return False
    return True


def is_single_complete_type(sig: str) -> bool:
    try:
        return len(split_signature(sig)) == 1
    except SignatureError:
        return False


@functools.lru_cache(maxsize=2048)
def struct_members(sig: str) -> tuple[str, ...]:
    """The member types of a struct ``(...)`` or dict entry ``{..}`` type."""
    return split_signature(sig[1:-1])
