"""Messages to a pcap stream, as dbus-monitor --pcap writes them.

Owns: the file header and one record per D-Bus message (classic libpcap,
host byte order, LINKTYPE_DBUS, snap length the largest message), flushed
after every record so a monitor killed mid-capture leaves a readable file.

Never: reads from the bus or opens the stream (the caller hands it in),
or alters a message's bytes beyond clipping to the snap length.
"""

from __future__ import annotations

import struct
from typing import IO

from ..wire.limits import MAX_MESSAGE_SIZE

# The pcap format dbus-monitor --pcap writes (dbus/tools/dbus-print-message.c and
# dbus-monitor.c): classic libpcap, host byte order, one D-Bus message per record.
PCAP_MAGIC = 0xA1B2C3D4
PCAP_VERSION = (2, 4)
PCAP_SNAPLEN = MAX_MESSAGE_SIZE  # 1 << 27, DBUS_MAXIMUM_MESSAGE_LENGTH
LINKTYPE_DBUS = 231
_PCAP_HEADER = struct.Struct("=IHHiIII")
_PCAP_RECORD = struct.Struct("=IIII")


class PcapWriter:
    """Messages as dbus-monitor --pcap writes them: LINKTYPE_DBUS, one message per record."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        stream.write(_PCAP_HEADER.pack(PCAP_MAGIC, *PCAP_VERSION, 0, 0, PCAP_SNAPLEN,
                                       LINKTYPE_DBUS))
        stream.flush()

    def write(self, raw: bytes, realtime_ns: int) -> None:
        seconds, nanos = divmod(realtime_ns, 1_000_000_000)
        captured = raw[:PCAP_SNAPLEN]
        self.stream.write(_PCAP_RECORD.pack(seconds, nanos // 1000, len(captured), len(raw)))
        self.stream.write(captured)
        self.stream.flush()  # a monitor killed mid-capture still leaves a readable file
