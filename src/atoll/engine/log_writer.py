"""Appends records to a log file with group commit (docs/formats.md §1). Does I/O.

Writers append under the engine's write lock (cheap: into a user-space buffer);
`sync_to(offset)` makes everything up to `offset` durable. Concurrent callers of
`sync_to` share one fsync: whoever takes the sync lock writes out the whole buffer
and fsyncs, and those who arrive meanwhile find their offset already durable.
"""

from __future__ import annotations

import os
import threading

from atoll.engine.log_format import file_header, frame

# Write the buffer out once it holds this much, even without a sync request, so that
# a crash of the process (not the machine) loses little.
BUFFER_LIMIT_BYTES = 256 * 1024


class LogWriter:
    def __init__(self, path: str, magic: bytes, kind: int, *, create: bool = True) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if create else os.O_APPEND)
        self._fd = os.open(path, flags, 0o644)
        self._buf = bytearray()
        self._buf_lock = threading.Lock()  # guards _buf and _written
        self._sync_lock = threading.Lock()
        self._written = 0  # bytes handed to the OS
        self._synced = 0  # bytes known durable
        self.end = 0  # logical end: bytes appended so far (buffered or not)
        if create:
            self.append_raw(file_header(magic, kind))
        else:
            self.end = self._written = self._synced = os.fstat(self._fd).st_size
        self.closed = False

    def append_raw(self, data: bytes) -> int:
        with self._buf_lock:
            self._buf += data
            self.end += len(data)
            if len(self._buf) >= BUFFER_LIMIT_BYTES:
                self._write_out_locked()
            return self.end

    def append(self, payload: bytes) -> int:
        """Append one record; returns the logical offset just past it."""
        return self.append_raw(frame(payload))

    def _write_out_locked(self) -> None:
        if self._buf:
            view = memoryview(self._buf)
            done = 0
            while done < len(view):
                done += os.write(self._fd, view[done:])
            view.release()
            self._written += len(self._buf)
            self._buf.clear()

    def write_out(self) -> None:
        """Hand buffered bytes to the OS (no fsync)."""
        with self._buf_lock:
            self._write_out_locked()

    def sync_to(self, offset: int) -> None:
        """Return once every byte before `offset` is durable (group commit)."""
        if self._synced >= offset:
            return
        with self._sync_lock:
            if self._synced >= offset:
                return  # someone else's fsync covered us
            with self._buf_lock:
                self._write_out_locked()
                target = self._written
            os.fsync(self._fd)
            self._synced = target

    def sync(self) -> None:
        self.sync_to(self.end)

    def close(self, sync: bool = True) -> None:
        if self.closed:
            return
        if sync:
            self.sync()
        else:
            self.write_out()
        os.close(self._fd)
        self.closed = True


def fsync_dir(path: str) -> None:
    """fsync a directory so that created, renamed or removed entries are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
