"""The root device that root= names, as an org.bootbus.Devices1 property filter.

Owns: turning dracut's block forms of root= (``/dev/NAME``, ``block:PATH``,
``LABEL=``, ``PARTLABEL=``, ``UUID=``, ``PARTUUID=``, a udev symlink such as
``/dev/mapper/vg-root``) into the udev properties the bus's device monitor
matches. The path is the one dracut waits for (dracut-lib.sh's
label_uuid_to_dev, same escaping); a kernel name directly under /dev is a
DEVNAME, anything deeper is one of the DEVLINKS udev creates.

Never: reads the command line or touches the system (the caller passes what
dracut's getarg found and asks the bus), guesses at forms that are not a
local block device (nfs:, zfs:, live:, an empty root= and the like give None).
"""

from __future__ import annotations

# root=<prefix>VALUE -> the /dev/disk directory udev links that identity in
_BY_IDENTITY = (("LABEL=", "/dev/disk/by-label/", True),
                ("PARTLABEL=", "/dev/disk/by-partlabel/", True),
                ("UUID=", "/dev/disk/by-uuid/", False),
                ("PARTUUID=", "/dev/disk/by-partuuid/", False))
# /dev paths root= may hold that no block device ever has
_NOT_BLOCK = frozenset({"/dev/nfs"})


def _escape(label: str) -> str:
    """dracut's escaping of a label in a by-label path (sed 's,/,\\x2f,g;s, ,\\x20,g')."""
    return label.replace("/", "\\x2f").replace(" ", "\\x20")


def root_path(spec: str) -> str:
    """The /dev path dracut waits for when root=SPEC (SPEC itself if it has no identity)."""
    spec = spec.removeprefix("block:")
    for prefix, directory, escaped in _BY_IDENTITY:
        if spec.startswith(prefix):
            value = spec[len(prefix):]
            return directory + (_escape(value) if escaped else value)
    return spec


def root_filter(spec: str) -> dict[str, str] | None:
    """The Devices1 filter for the block device root=SPEC names, or None if it names none."""
    path = root_path(spec)
    name = path.removeprefix("/dev/")
    if name == path or not name or path in _NOT_BLOCK:
        return None
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    key = "DEVNAME" if len(parts) == 1 else "DEVLINKS"
    return {"SUBSYSTEM": "block", key: path}


__all__ = ["root_filter", "root_path"]
