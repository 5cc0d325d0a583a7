"""Shard files on disk: a streaming writer and a verifying reader. The I/O shell of
`shard_format` (docs/formats/shard_file.md §5).

- `ShardWriter` writes into a temporary file in the target directory (a dot name
  ending in `.tmp`, which listings skip: `is_temp_name`). `finish()` writes the final
  header (the data length may be known only then), fsyncs the file, renames it into
  place and fsyncs the directory; nothing is visible under the final name before. An
  `abort()` (or leaving the `with` block by an exception) removes the temporary file.
- `ShardReader` reads and checks the header and the file size once, at open, then
  reads block ranges with one `preadv` each and verifies every block's CRC-32C before
  returning any of it. A short file is `ShardTruncated`, a bad block `ShardCorrupt`
  naming the block. An `uncached` reader reads from the device, not from the page
  cache: it drops the file's cached pages at open and again on `drop_cache()`, for
  a read that must check the disk (a rebuilt shard's read-back, scrub) and should
  leave nothing behind.

Blocking calls throughout: an asyncio caller runs them in a thread
(shared/STYLE.md §6). Neither class is thread-safe; a reader may be shared by
threads only if each passes its own `into` buffer.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from types import TracebackType

from atoll.erasure.errors import InvalidRange, ShardTruncated, ShardWriteError
from atoll.erasure.shard_format import (
    CRC_BYTES,
    DATA_LENGTH_UNFINISHED,
    HEADER_BYTES_MAX,
    ShardHeader,
    block_crc,
    block_range,
    check_size,
    decode_header,
    encode_header,
    verify_blocks,
)
from atoll.erasure.stripe import ReadableBuffer

TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"

READ_BYTES_MAX = 64 * 1024 * 1024
"""Most bytes one `read_blocks` call reads (blocks and CRCs)."""

READ_BATCH_BYTES_DEFAULT = 4 * 1024 * 1024
"""What `iter_blocks` reads per call by default (at least one block)."""


def is_temp_name(name: str) -> bool:
    """Whether a directory entry is a `ShardWriter`'s unfinished temporary file (left
    behind by a crash; safe to delete once no writer runs)."""
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def _write_all(fd: int, buffers: list[ReadableBuffer]) -> int:
    """Write every byte of `buffers` at the file position; returns the byte count."""
    views = [memoryview(b).cast("B") for b in buffers]
    total = sum(len(v) for v in views)
    left = total
    while left:
        written = os.writev(fd, views)
        left -= written
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]
    return total


def fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ShardWriter:
    """Streams one shard file: `write_block` once per stripe, then `finish`.

    `header.data_length` is the part's length if known up front, or
    `DATA_LENGTH_UNFINISHED` when it is known only at the end (then `finish` takes
    it). Either way every block is checked against the layout: all but the last are
    `full_shard_bytes`, and `finish` checks the count and the last block's size.
    """

    def __init__(
        self, directory: str, name: str, header: ShardHeader, *, sync: bool = True
    ) -> None:
        if not name or "/" in name or is_temp_name(name):
            raise ShardWriteError(f"bad shard file name {name!r}")
        self.directory = directory
        self.path = os.path.join(directory, name)
        self.header = header
        self._sync = sync
        self._layout = header.layout
        self._known_length = (
            None if header.data_length == DATA_LENGTH_UNFINISHED else header.data_length
        )
        first = encode_header(header)
        self._header_bytes = len(first)
        fd, self.temp_path = tempfile.mkstemp(
            dir=directory, prefix=f"{TEMP_PREFIX}{name}.", suffix=TEMP_SUFFIX
        )
        self._fd: int | None = fd
        self.blocks_written = 0
        self._last_block_bytes = self._layout.full_shard_bytes
        try:
            self.bytes_written = _write_all(fd, [first])
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            self.abort()

    def _open_fd(self) -> int:
        if self._fd is None:
            raise ShardWriteError(f"shard writer for {self.path} is already finished or aborted")
        return self._fd

    def write_block(self, payload: ReadableBuffer, crc: int | None = None) -> None:
        """Append block `blocks_written` (shard `header.shard_index` of that stripe)
        and its CRC-32C (`crc`, if the caller computed it from these bytes: it is not
        computed again)."""
        fd = self._open_fd()
        size = memoryview(payload).nbytes
        full = self._layout.full_shard_bytes
        block = self.blocks_written
        if self._last_block_bytes != full:
            raise ShardWriteError(
                f"{self.path}: block {block - 1} was short ({self._last_block_bytes} of {full} "
                "bytes), so it must be the last"
            )
        if self._known_length is not None:
            count = self._layout.stripe_count(self._known_length)
            if block >= count:
                raise ShardWriteError(f"{self.path}: block {block} past the part's {count} blocks")
            expected = self._layout.block_bytes(self._known_length, block)
            if size != expected:
                raise ShardWriteError(
                    f"{self.path}: block {block} has {size} bytes, expected {expected}"
                )
        elif not 0 < size <= full:
            raise ShardWriteError(f"{self.path}: block {block} has {size} bytes, outside 1..{full}")
        self.bytes_written += _write_all(fd, [payload, block_crc(payload, crc)])
        self.blocks_written += 1
        self._last_block_bytes = size

    def finish(self, data_length: int | None = None) -> str:
        """Make the file durable and visible under its name; returns the path.

        `data_length` is required if the header did not carry it, and must equal it if
        it did. A file of the same name is replaced."""
        fd = self._open_fd()
        length = self._final_length(data_length)
        try:
            if self._known_length is None:
                final = encode_header(self.header.finished(length))
                if len(final) != self._header_bytes:  # the length field is fixed-width
                    raise ShardWriteError(f"{self.path}: final header changed size")
                os.pwrite(fd, final, 0)
            if self._sync:
                os.fsync(fd)
            os.close(fd)
            self._fd = None
            os.replace(self.temp_path, self.path)
            if self._sync:
                fsync_directory(self.directory)
        except BaseException:
            self.abort()
            raise
        self.header = self.header.finished(length)
        return self.path

    def _final_length(self, data_length: int | None) -> int:
        if data_length is None:
            if self._known_length is None:
                raise ShardWriteError(f"{self.path}: finish needs the data length")
            data_length = self._known_length
        elif self._known_length is not None and data_length != self._known_length:
            raise ShardWriteError(
                f"{self.path}: finish with data length {data_length}, header says {self._known_length}"
            )
        try:
            count = self._layout.stripe_count(data_length)
        except ValueError as err:
            raise ShardWriteError(f"{self.path}: {err}") from err
        if count != self.blocks_written:
            raise ShardWriteError(
                f"{self.path}: {self.blocks_written} blocks written, a {data_length}-byte part has {count}"
            )
        last = self._layout.last_block_bytes(data_length)
        if count and self._last_block_bytes != last:
            raise ShardWriteError(
                f"{self.path}: last block has {self._last_block_bytes} bytes, a "
                f"{data_length}-byte part needs {last}"
            )
        return data_length

    def abort(self) -> None:
        """Close and remove the temporary file. Idempotent; a no-op after `finish`."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp_path)


class ShardReader:
    """Reads one shard file, verifying everything it returns.

    The header and the file size are checked at open (`FormatError`,
    `ShardTruncated`); `stat` is the open file's `fstat` of that check. `bytes_read`
    counts every byte read from the file.

    `uncached`: drop the file's pages from the page cache before reading anything,
    so every byte comes from the device. Only clean pages can be dropped; a shard
    file is fsynced before it gets its name, so all of a finished one's are.
    """

    def __init__(self, path: str, *, uncached: bool = False) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_RDONLY)
        try:
            if uncached:
                self.drop_cache()
            self.bytes_read = 0
            prefix = self._pread(HEADER_BYTES_MAX, 0)
            self.header, self.header_length = decode_header(prefix, path)
            self.stat = os.fstat(self._fd)
            check_size(self.header, self.header_length, self.stat.st_size, path)
        except BaseException:
            self.close()
            raise
        self.layout = self.header.layout
        self.block_count = self.layout.stripe_count(self.header.data_length)

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def closed(self) -> bool:
        return self._fd is None

    def _open_fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"shard reader for {self.path} is closed")
        return self._fd

    def drop_cache(self) -> None:
        """Drop the file's clean pages from the page cache (a hint to the kernel:
        `POSIX_FADV_DONTNEED` over the whole file)."""
        os.posix_fadvise(self._open_fd(), 0, 0, os.POSIX_FADV_DONTNEED)

    def _pread(self, size: int, offset: int) -> bytes:
        data = os.pread(self._open_fd(), size, offset)
        self.bytes_read += len(data)
        return data

    def _read_into(self, view: memoryview, offset: int) -> int:
        """Fill `view` from `offset`; returns how many bytes there were (short at EOF)."""
        fd = self._open_fd()
        done = 0
        while done < len(view):
            got = os.preadv(fd, [view[done:]], offset + done)
            if got == 0:
                break
            done += got
        self.bytes_read += done
        return done

    def read_blocks(
        self,
        first: int,
        end: int,
        into: bytearray | None = None,
        crcs: list[int] | None = None,
    ) -> list[memoryview]:
        """The payloads of blocks `[first, end)`, every CRC-32C checked (and appended
        to `crcs` if given), in one read.

        The views point into `into` (at least `block_range(...)[1]` bytes) or, without
        it, into a new buffer (read into as allocated: never zero-filled first). At
        most `READ_BYTES_MAX` bytes per call."""
        start, size = block_range(self.header, first, end)
        if size > READ_BYTES_MAX:
            raise InvalidRange(
                f"{self.path}: blocks [{first}, {end}) are {size} bytes, over {READ_BYTES_MAX}"
            )
        offset = self.header_length + start
        if into is None:
            view = memoryview(self._pread(size, offset))
            got = len(view)
            if got < size:  # short (the file's end, normally): try for the rest
                buffer = bytearray(size)
                buffer[:got] = view
                got += self._read_into(memoryview(buffer)[got:], offset + got)
                view = memoryview(buffer)
        else:
            if len(into) < size:
                raise InvalidRange(
                    f"{self.path}: blocks [{first}, {end}) need {size} bytes, buffer has"
                    f" {len(into)}"
                )
            view = memoryview(into)[:size]
            got = self._read_into(view, offset)
        if got < size:  # the file shrank after open
            raise ShardTruncated(
                f"read {got} of {size} bytes at offset {offset}",
                file=self.path,
                block=first + got // (self.layout.full_shard_bytes + CRC_BYTES),
                offset=offset + got,
            )
        return verify_blocks(self.header, view, first, end, self.path, offset, crcs)

    def iter_blocks(
        self,
        first: int = 0,
        end: int | None = None,
        batch_bytes: int = READ_BATCH_BYTES_DEFAULT,
        into: bytearray | None = None,
    ) -> Iterator[memoryview]:
        """Blocks `[first, end)` in order, read about `batch_bytes` (at least one block)
        at a time into one buffer (`into`, or one allocated here and reused for every
        batch): a view is valid only until the next one is asked for."""
        end = self.block_count if end is None else end
        stride = self.layout.full_shard_bytes + CRC_BYTES
        per_batch = max(1, min(batch_bytes, READ_BYTES_MAX) // stride)
        _, largest = block_range(self.header, first, min(end, first + per_batch))
        buffer = into if into is not None and len(into) >= largest else bytearray(largest)
        for batch_start in range(first, end, per_batch):
            yield from self.read_blocks(batch_start, min(end, batch_start + per_batch), buffer)

    def read_range(self, offset: int, length: int) -> list[memoryview]:
        """Bytes `[offset, offset + length)` of this shard (its blocks' payloads end to
        end), as pieces; reads and verifies only the blocks they lie in."""
        total = self.layout.shard_data_bytes(self.header.data_length)
        if offset < 0 or length < 0 or offset + length > total:
            raise InvalidRange(
                f"{self.path}: range [{offset}, {offset + length}) outside 0..{total}"
            )
        if length == 0:
            return []
        full = self.layout.full_shard_bytes
        first, last = offset // full, (offset + length - 1) // full
        blocks = self.read_blocks(first, last + 1)
        pieces = []
        for block, payload in zip(range(first, last + 1), blocks, strict=True):
            block_start = block * full
            lo = max(offset, block_start) - block_start
            hi = min(offset + length, block_start + len(payload)) - block_start
            pieces.append(payload[lo:hi])
        return pieces
