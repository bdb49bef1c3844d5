"""The daemon's limit on open files, and the one its children get.

Owns: raising RLIMIT_NOFILE once the bus serves, so that the bus's own bounds
(connections per user, fds in flight), not a soft limit of 1024 inherited from a
shell, a unit or an initramfs, decide how many clients it serves; and the soft
limit activated children start with. As dbus-daemon and systemd do: the soft
limit goes up to the hard one, and as root both go up to at least WANTED_NOFILE;
children get a soft limit of at most SELECT_NOFILE again, since programs that
use select() break on an fd above 1023. Never lowers the daemon's limits.
"""

import os
import resource

WANTED_NOFILE = 65536  # as root, both limits are raised at least to this (dbus-daemon's)
SELECT_NOFILE = 1024  # FD_SETSIZE: children start with at most this soft limit


def raise_nofile() -> tuple[int, int] | None:
    """Raise the soft limit to the hard one (as root, both to at least WANTED_NOFILE);
    return the soft limit before and after, or None when nothing changed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted_hard = hard
    if os.geteuid() == 0 and hard != resource.RLIM_INFINITY and hard < WANTED_NOFILE:
        wanted_hard = WANTED_NOFILE
    for new_hard in (wanted_hard, hard):  # without CAP_SYS_RESOURCE: the hard limit as it is
        if soft == new_hard == hard:
            return None
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_hard, new_hard))
        except (ValueError, OSError):
            continue
        return soft, new_hard
    return None


def child_nofile() -> None:
    """In a child before its exec: a soft limit select() can live with."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if _above_select(soft):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(SELECT_NOFILE, hard), hard))


def children_need_lower() -> bool:
    """Whether a child would start with a soft limit above SELECT_NOFILE."""
    return _above_select(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def _above_select(soft: int) -> bool:
    return soft == resource.RLIM_INFINITY or soft > SELECT_NOFILE
