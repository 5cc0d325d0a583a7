"""What of a file is in the page cache (`mincore(2)` on a mapping of it), and a scratch
directory whose files' pages the kernel can drop: tmpfs and ramfs pages are the
files themselves, so a test of uncached reads must not put its files there."""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MEMORY_FILE_SYSTEMS = ("tmpfs", "ramfs")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
_libc.mincore.restype = ctypes.c_int


def resident_pages(path: str | Path) -> tuple[int, int]:
    """(pages of the file in the page cache, pages of the file). Mapping the file
    does not read it: no page is faulted in by the check itself."""
    size = os.path.getsize(path)
    if size == 0:
        return 0, 0
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    with (
        open(path, "rb") as file,
        mmap.mmap(file.fileno(), size, access=mmap.ACCESS_COPY) as mapped,
    ):
        anchor = ctypes.c_char.from_buffer(mapped)
        try:
            vector = (ctypes.c_ubyte * pages)()
            if _libc.mincore(ctypes.addressof(anchor), size, vector) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"mincore of {path}: {os.strerror(err)}")
            return sum(byte & 1 for byte in vector), pages
        finally:
            del anchor  # the mapping cannot close while a ctypes object points into it


def _file_system(path: Path) -> str:
    best, kind = "", "unknown"
    with open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            mount, fstype = fields[1], fields[2]
            inside = str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best):
                best, kind = mount, fstype
    return kind


@contextlib.contextmanager
def droppable_dir(tmp_path: Path) -> Iterator[Path]:
    """`tmp_path` if it is on a disk's file system; else a scratch directory in the
    repository (on whatever holds the checkout), removed afterwards."""
    if _file_system(tmp_path.resolve()) not in MEMORY_FILE_SYSTEMS:
        yield tmp_path
        return
    scratch = tempfile.mkdtemp(prefix=".page-cache-test-", dir=REPO)
    try:
        yield Path(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
