"""bootbusctl's exit codes and the expected failures that carry them.

Owns: the exit codes (0 success, 1 bus, 2 usage, 3 offline data
unavailable: the group's help epilog; 4 no such device in time, 5 root=
names no block device: the help of the device commands) and one
click.ClickException per failure, so an expected failure prints one line
and exits with its code.

Never: imports the rest of bootbusctl, talks to the bus or reads files; no
command exits with a number that is not named here (2 is click's own).
"""

from __future__ import annotations

import click

EXIT_OK = 0
EXIT_BUS = 1  # cannot talk to the bus, or a call failed
EXIT_USAGE = 2  # click's own code for usage errors
EXIT_OFFLINE_UNAVAILABLE = 3  # no live bus and no usable files in the runtime directory
EXIT_NOT_FOUND = 4  # wait-device: no matching device appeared in time
EXIT_NOT_BLOCK = 5  # wait-root: root= names no local block device (nfs:, zfs:, ...)


class BusFailure(click.ClickException):
    """The bus could not be reached, or it refused a call."""

    exit_code = EXIT_BUS


class OfflineUnavailable(click.ClickException):
    """Neither a live bus nor usable files in the runtime directory."""

    exit_code = EXIT_OFFLINE_UNAVAILABLE


class DeviceNotFound(click.ClickException):
    """wait-device: the timeout passed without a matching device."""

    exit_code = EXIT_NOT_FOUND


class NotABlockRoot(click.ClickException):
    """wait-root: nothing to wait for through the bus."""

    exit_code = EXIT_NOT_BLOCK
