"""glibc malloc settings for processes that move large buffers (node and KV gateway
processes). Does process-level configuration through ctypes; nothing else.

The data path allocates a buffer of about a block (1 MiB) for every large frame it
receives, every block it reads and every stripe it encodes, and frees it moments
later. glibc's defaults hand such sizes to mmap and give freed heap tops back to the
kernel past 128 KiB, adjusting both as it goes; how they settle depends on the order of
allocations, and on uvloop they did not settle: every buffer came from fresh pages,
each page faulted in and zeroed by the kernel. A server stream of 1 MiB chunks between
two uvloop processes moved about 700 MB/s that way, and about 2,400 MB/s with the
settings below (on the standard asyncio loop 1,200-2,400 before, 2,750-3,050 after).

Fixed settings turn glibc's adjusting off: sizes under `MMAP_THRESHOLD_BYTES` come from
the heap, and a heap keeps up to `TRIM_THRESHOLD_BYTES` of free memory at its top
before returning any (so a process holds at most that much more than it uses, per
malloc arena). `ATOLL_MALLOC_TUNING=off` leaves glibc's defaults (to compare).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os

TUNING_ENV = "ATOLL_MALLOC_TUNING"
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # the largest glibc accepts on 64-bit
TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024

# mallopt(3) parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_malloc() -> bool:
    """Apply the settings; False where there is no glibc mallopt (another libc), which
    only costs speed, or where `ATOLL_MALLOC_TUNING=off` asks for glibc's defaults."""
    if os.environ.get(TUNING_ENV, "") == "off":
        return False
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
        mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        mallopt.restype = ctypes.c_int
        mmap_set: int = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        trim_set: int = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
        return mmap_set == 1 and trim_set == 1
    return False
