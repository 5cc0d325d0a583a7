"""glibc malloc settings and the cyclic garbage collector's thresholds for long-lived
processes (node and KV gateway processes), and buffers that are not zero-filled
first. Does process-level configuration (through ctypes and `gc`); nothing else.

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
import gc
import os

TUNING_ENV = "ATOLL_MALLOC_TUNING"
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # the largest glibc accepts on 64-bit
TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024

GC_TUNING_ENV = "ATOLL_GC_TUNING"
GC_THRESHOLDS = (50_000, 20, 100)
"""`gc.set_threshold` of a service process (CPython's defaults: 700, 10, 10)."""

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


def tune_gc() -> bool:
    """Make the cyclic garbage collector run less often in a service process: what is
    alive now (modules, classes, configuration) moves to the permanent generation
    (`gc.freeze`: no collection walks it again), and a young collection waits for
    `GC_THRESHOLDS[0]` allocations instead of 700. Almost everything a request
    allocates is freed by reference counting alone before a collection would look at
    it; with the defaults, collections took about 4% of the CPU of a cluster serving
    small PUTs (perf, 2026-11-27). False where `ATOLL_GC_TUNING=off` asks for the
    defaults (to compare)."""
    if os.environ.get(GC_TUNING_ENV, "") == "off":
        return False
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return True


_new_bytearray = None
with contextlib.suppress(AttributeError):
    # CPython's C API: with a NULL source the new bytearray's bytes are left as malloc
    # gave them (the same as `PyBytes_FromStringAndSize`, documented so).
    _new_bytearray = ctypes.pythonapi.PyByteArray_FromStringAndSize
    _new_bytearray.argtypes = (ctypes.c_char_p, ctypes.c_ssize_t)
    _new_bytearray.restype = ctypes.py_object


def unfilled_bytearray(size: int) -> bytearray:
    """A bytearray of `size` bytes whose contents are whatever the allocator left
    there, for a buffer that is about to be overwritten whole (a frame body received
    into, a block read into). `bytearray(size)` writes `size` zero bytes first: for a
    1 MiB frame that is a memset the receive overwrites at once (memset took 1.9% of
    the machine's CPU during a repair, perf 2026-11-27). Never hand such a buffer on
    before every byte of it is written."""
    if size < 0:
        raise ValueError(f"negative size {size}")
    if _new_bytearray is None:  # not CPython
        return bytearray(size)
    buffer: bytearray = _new_bytearray(None, size)
    return buffer
