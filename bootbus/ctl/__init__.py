"""bootbusctl: inspect and steer bootbus from a shell, live or from what it left behind.

Owns: the command line (click), choosing where the answers come from (the live
bus, or the files in the runtime directory when the daemon is dead or wedged),
turning answers into tables or JSON, the monitor's pcap output, and the
simple argument syntax of `call` and `emit`. The bus protocol is
bootbus.client's; the file formats are bootbus.io.steplog's and
bootbus.io.summary's.

Never: writes to the runtime directory, changes bus state except through
the commands that exist for it (call, emit, reexec, pivot), or prints a
traceback for an expected failure (a dead bus, a missing file, a refused
call): those are ClickExceptions with the exit codes in exits.py.

The modules, imported one way (each only from those before it):

    exits       exit codes and the ClickExceptions that carry them
    render      times, tables, JSON, the mode line on stderr
    sources     the live bus or the runtime directory's files (Target, Live, Offline)
    rows        names, connections and match rules as rows, live or offline
    status      the status dict, live or offline; why the boot stopped
    options     the click plumbing every command shares
    inspection  status, names, connections, matches, dump-state
    log         log (the step log files)
    pcap        the pcap writer (as dbus-monitor --pcap)
    monitor     monitor
    args        the argument syntax of call and emit
    actions     call, emit, reexec, pivot
    devices     devices, wait-device, wait-root
    cli         the group: global flags, epilog, the list of commands

This package's public surface is what it re-exports here: `main` (the
`bootbusctl` entry point) and what the tests drive directly.
"""

from __future__ import annotations

from .args import parse_args
from .cli import main
from .exits import (
                    EXIT_BUS,
                    EXIT_NOT_BLOCK,
                    EXIT_NOT_FOUND,
                    EXIT_OFFLINE_UNAVAILABLE,
                    EXIT_OK,
                    EXIT_USAGE,
)
from .log import parse_priority, parse_since
from .monitor import format_message, message_dict
from .pcap import LINKTYPE_DBUS, PCAP_MAGIC, PCAP_SNAPLEN, PcapWriter
from .render import plain
from .status import boot_stop_reasons

__all__ = [
    "EXIT_BUS", "EXIT_NOT_BLOCK", "EXIT_NOT_FOUND", "EXIT_OFFLINE_UNAVAILABLE", "EXIT_OK",
    "EXIT_USAGE", "LINKTYPE_DBUS", "PCAP_MAGIC", "PCAP_SNAPLEN", "PcapWriter",
    "boot_stop_reasons", "format_message", "main", "message_dict", "parse_args",
    "parse_priority", "parse_since", "plain",
]
