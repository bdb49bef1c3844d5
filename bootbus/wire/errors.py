"""Errors of the wire layer.

Every malformed input raises a subclass of :class:`WireError` and nothing else;
the bus layer maps them to D-Bus error names or to a disconnect.
"""


class WireError(Exception):
    """Base of every error raised by bootbus.wire."""


class SignatureError(WireError):
    """A type signature breaks the specification's grammar or bounds."""


class MarshalError(WireError):
    """A value cannot be marshalled, or bytes do not unmarshal as the signature says."""


class NameError_(WireError):
    """A bus name, interface, member, error name or object path is invalid."""


class FramingError(WireError):
    """The byte stream does not hold a valid message; the connection must be closed."""


class AuthError(WireError):
    """The SASL exchange failed in a way that ends the connection."""


class AddressError(WireError):
    """A D-Bus address string is malformed."""
