"""Named bounds taken from the D-Bus specification.

Every bound the wire layer checks lives here, so that a reader can compare
them with the specification in one place.
"""

MAX_MESSAGE_SIZE = 128 * 1024 * 1024  # "The maximum length of a message ... is 128 MiB"
MAX_ARRAY_SIZE = 64 * 1024 * 1024  # "Arrays have a maximum length of 2**26 (64 MiB)"
MAX_SIGNATURE_LENGTH = 255  # signatures are at most 255 bytes
MAX_STRUCT_DEPTH = 32  # "maximum depth of container nesting: 32 arrays and 32 structs"
MAX_ARRAY_DEPTH = 32
MAX_TOTAL_DEPTH = 64  # arrays + structs (+ variants) together
MAX_NAME_LENGTH = 255  # bus names, interfaces, members, error names
MAX_UNIX_FDS_PER_MESSAGE = 253  # the kernel's SCM_MAX_FD; dbus-broker uses the same
PROTOCOL_VERSION = 1
FIXED_HEADER_SIZE = 16  # endian, type, flags, version, body length, serial, fields length
