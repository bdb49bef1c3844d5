"""The standard places: dbus-daemon's service directories, libselinux's policy root.

Owns: <standard_system_servicedirs/> and <standard_session_servicedirs/>
(what dbus-daemon 1.14 puts in them, in its order, without repeats), and where
<include selinux_root_relative="yes"> looks. Never lists or watches a
directory (bootbus.io.services does), never parses XML.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .model import ServiceDir

# _dbus_get_standard_system_servicedirs(): /usr/local/share, /usr/share, DBUS_DATADIR
# (/usr/share on Debian) and /lib, each + /dbus-1/system-services, without repeats.
STANDARD_SYSTEM_SERVICEDIRS = (
    "/usr/local/share/dbus-1/system-services",
    "/usr/share/dbus-1/system-services",
    "/lib/dbus-1/system-services",
)
_DBUS_DATADIR = "/usr/share"


def standard_session_servicedirs(environ: Mapping[str, str]) -> list[ServiceDir]:
    """_dbus_get_standard_session_servicedirs(), in its order, without repeats."""
    dirs: list[ServiceDir] = []
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime:
        dirs.append(ServiceDir(f"{runtime}/dbus-1/services", watch=False, strict_naming=True))
    data_home = environ.get("XDG_DATA_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".local/share")
    data_dirs = environ.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share"
    for base in [data_home, *data_dirs.split(":"), _DBUS_DATADIR]:
        path = f"{base}/dbus-1/services"
        if base and all(d.path != path for d in dirs):
            dirs.append(ServiceDir(path))
    return dirs


def selinux_policy_root(config: str = "/etc/selinux/config") -> str | None:
    """libselinux's selinux_policy_root(): /etc/selinux/$SELINUXTYPE, or None."""
    try:
        with open(config, encoding="utf-8") as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                if key == "SELINUXTYPE" and value:
                    return os.path.join(os.path.dirname(config), value.strip())
    except OSError:
        return None
    return None
