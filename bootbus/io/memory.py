"""Giving memory back to the system after a large queue is dropped.

Owns: one call to glibc's malloc_trim(3). A peer that stopped reading can
make the bus queue up to its byte cap (128 MiB) in many small buffers; when
that peer is disconnected the buffers are freed, but glibc keeps the pages in
its heap unless asked, so the bus's RSS would stay high. Also owns glibc's
malloc tuning (mallopt(3)), set by `tune_malloc` before any thread starts.

ctypes costs ~1.5 ms to import and libc's handle more to open, which a cold
start need not spend before its first Hello: the daemon calls `tune_malloc`
once it serves, before the device monitor's thread starts (and before a
restore). A `release_free_memory` before then tunes first.
"""

from __future__ import annotations

import gc

TYPE_CHECKING = False  # typing's, without importing typing (see bootbus.plain)
if TYPE_CHECKING:
    from typing import Any

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

_tuned = False
_trim: Any = None  # glibc's malloc_trim, once tune_malloc found it


def tune_malloc() -> bool:
    """Set glibc's mmap threshold and arena count (once); False where the libc cannot."""
    global _tuned, _trim
    if not _tuned:
        _tuned = True
        try:
            import ctypes
            # the soname, not ctypes.util.find_library: that runs ldconfig in a subprocess
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            trim = libc.malloc_trim
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            libc.mallopt(M_ARENA_MAX, ARENA_MAX)
        except (ImportError, OSError, AttributeError):  # not glibc (musl: no malloc_trim)
            return False
        _trim = trim
    return _trim is not None


def release_free_memory() -> bool:
    """Collect cyclic garbage, then return freed heap pages to the kernel; False where
    the libc cannot. Called only after a big queue or a connection flood went away."""
    gc.collect()
    if not tune_malloc():
        return False
    return bool(_trim(0))
