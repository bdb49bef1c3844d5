"""Giving memory back to the system after a large queue is dropped.

Owns: one call to glibc's malloc_trim(3). A peer that stopped reading can
make the bus queue up to its byte cap (128 MiB) in many small buffers; when
that peer is disconnected the buffers are freed, but glibc keeps the pages in
its heap unless asked, so the bus's RSS would stay high. ctypes is already
loaded by the device monitor (pyudev), so this costs nothing at start-up.
"""

import ctypes
import ctypes.util

TRIM_AFTER_BYTES = 1024 * 1024  # dropped queues smaller than this are not worth a trim

_libc: ctypes.CDLL | None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    _trim = _libc.malloc_trim
except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
    _libc = None


def release_free_memory() -> bool:
    """Return freed heap pages to the kernel; False where the libc cannot."""
    if _libc is None:
        return False
    return bool(_trim(0))
