"""Giving memory back to the system after a large queue is dropped.

Owns: one call to glibc's malloc_trim(3). A peer that stopped reading can
make the bus queue up to its byte cap (128 MiB) in many small buffers; when
that peer is disconnected the buffers are freed, but glibc keeps the pages in
its heap unless asked, so the bus's RSS would stay high. ctypes is already
loaded by the device monitor (pyudev), so this costs nothing at start-up.
"""

import ctypes
import gc

TRIM_AFTER_BYTES = 1024 * 1024  # dropped queues smaller than this are not worth a trim
# Allocations from this size up go straight to mmap and back to the kernel when freed.
# glibc otherwise raises its threshold after the first big free, and a storm of large
# messages leaves the heap ~10 MiB over baseline for good (the hostile suite, H6).
# Above the read buffer (256 KiB), so the hot path's reads stay on the heap.
MMAP_THRESHOLD = 1024 * 1024
M_MMAP_THRESHOLD = -3  # mallopt's parameter numbers, from <malloc.h>
M_ARENA_MAX = -8
# One malloc arena: the device enumeration thread would otherwise get an arena of its
# own, whose pages stay resident after the thread is gone.
ARENA_MAX = 1

_libc: ctypes.CDLL | None
try:
    # the soname, not ctypes.util.find_library: that runs ldconfig in a subprocess
    _libc = ctypes.CDLL("libc.so.6", use_errno=True)
    _trim = _libc.malloc_trim
    _libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    _libc.mallopt(M_ARENA_MAX, ARENA_MAX)
except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
    _libc = None


def release_free_memory() -> bool:
    """Collect cyclic garbage, then return freed heap pages to the kernel; False where
    the libc cannot. Called only after a big queue or a connection flood went away."""
    gc.collect()
    if _libc is None:
        return False
    return bool(_trim(0))
