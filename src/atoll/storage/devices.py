"""The devices of a storage node: the I/O shell of one device directory each (layout in
docs/formats/storage.md §1-§3). Does file I/O.

A `Device` owns its directory, its capacity accounting (`capacity.CapacityLedger`), its
failure state, a bound on concurrent I/O calls, and a lock per shard name so that a
put's commit and a delete of the same shard do not race in the accounting. Its
methods named `*_sync` block (they read, write, fsync or list files): the service
runs them in its thread pool, never on the event loop.

- At start-up `scan_sync` records the directory's identity (device and inode), takes
  the capacity (configured, or the file system's size), removes the temporary files a
  crash left in PG directories, and sums the sizes of the shard files found.
- Listings read a shard file's header only when the file is new to them: each
  device remembers the header of files it wrote or listed, under the file's inode,
  size and mtime (a bounded `HeaderMemo`); a file replaced, truncated or rewritten
  in place no longer matches and is read again.
- Before every write, and whenever a shard file is missing, `check_root_sync` makes
  sure the device directory is still the one found at start-up: a directory removed,
  replaced by a file, or an unmounted disk revealing its empty mount point is a
  device failure (`ENODEV`/`ENOTDIR`), never a silent write to the wrong disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import stat
import threading
from collections.abc import AsyncIterator, Iterator, Sequence

import crc32c

from atoll.erasure.errors import ShardCorrupt as ShardFileCorrupt
from atoll.erasure.shard_file import ShardReader, ShardWriter, fsync_directory, is_temp_name
from atoll.erasure.shard_format import ShardHeader
from atoll.storage.capacity import CapacityLedger
from atoll.storage.errors import InvalidArgument, ShardCorrupt, ShardNotFound
from atoll.storage.layout import (
    PGS_DIR,
    ShardId,
    parse_pg_dir_name,
    parse_shard_file_name,
    pg_dir_name,
    shard_file_name,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DeviceConfig:
    """One device of this node: its directory and its capacity in bytes (0: the size
    of the file system holding the directory)."""

    path: str
    capacity_bytes: int = 0

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("a device needs a directory")
        if self.capacity_bytes < 0:
            raise ValueError(f"device {self.path}: capacity {self.capacity_bytes} is negative")


@dataclasses.dataclass(frozen=True)
class ScanResult:
    capacity_bytes: int
    file_sizes: tuple[int, ...]
    temp_files_removed: int
    unknown_entries: int


@dataclasses.dataclass(frozen=True)
class StoredShard:
    """A shard file as found: its name, its header, and its size."""

    file_name: str
    header: ShardHeader
    file_bytes: int
    mtime_ns: int = 0
    """When its bytes were last written (a put's rename keeps the time of its last
    block), by the file system's clock; garbage collection ages files by it."""


@dataclasses.dataclass(frozen=True)
class Piece:
    """Verified shard bytes `[offset, offset + len(data))` and their CRC-32C."""

    offset: int
    data: memoryview
    crc32c: int


FileKey = tuple[int, int, int]
"""What identifies one version of a file for `HeaderMemo`: (inode, size, mtime_ns)."""


def file_key(st: os.stat_result) -> FileKey:
    return st.st_ino, st.st_size, st.st_mtime_ns


class HeaderMemo:
    """The headers of shard files already read or written, by path, each with the
    `FileKey` of the file it came from; at most `entries_max`, the oldest forgotten
    first. No I/O (the caller stats the file); thread-safe (the service's pool
    threads share one per device)."""

    def __init__(self, entries_max: int) -> None:
        if entries_max < 0:
            raise ValueError(f"entries_max must be >= 0, got {entries_max}")
        self.entries_max = entries_max
        self._entries: dict[str, tuple[FileKey, ShardHeader]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, path: str, key: FileKey) -> ShardHeader | None:
        found = self._entries.get(path)
        return found[1] if found is not None and found[0] == key else None

    def put(self, path: str, key: FileKey, header: ShardHeader) -> None:
        if self.entries_max == 0:
            return
        with self._lock:
            self._entries.pop(path, None)
            while len(self._entries) >= self.entries_max:
                del self._entries[next(iter(self._entries))]
            self._entries[path] = (key, header)

    def forget(self, path: str) -> None:
        with self._lock:
            self._entries.pop(path, None)


class Device:
    """One device directory. Construction does no I/O; `scan_sync` (in a thread) must
    run before anything else, and `ledger` exists from then on."""

    def __init__(
        self,
        device_id: int,
        config: DeviceConfig,
        *,
        io_max: int,
        writers_max: int,
        headers_max: int = 0,
    ) -> None:
        if io_max < 1 or writers_max < 1:
            raise ValueError(f"io_max and writers_max must be >= 1, got {io_max}, {writers_max}")
        self.headers = HeaderMemo(headers_max)
        self.id = device_id
        self.path = os.path.abspath(config.path)
        self.config = config
        self.io_slots = asyncio.Semaphore(io_max)  # blocking calls running at once
        self.writer_slots = asyncio.Semaphore(writers_max)  # shard files open for writing
        self.failure: str | None = None
        self._ledger: CapacityLedger | None = None
        self._root_identity: tuple[int, int] | None = None
        self._name_locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __repr__(self) -> str:
        return f"Device({self.id}, {self.path!r})"

    @property
    def ledger(self) -> CapacityLedger:
        if self._ledger is None:
            raise RuntimeError(f"device {self.id} ({self.path}) was not scanned")
        return self._ledger

    @property
    def started(self) -> bool:
        return self._ledger is not None

    def mark_failed(self, err: BaseException) -> bool:
        """Record the failure; True the first time only (the node is told once)."""
        if self.failure is not None:
            return False
        self.failure = f"{type(err).__name__}: {err}"
        return True

    def start(self, scan: ScanResult) -> None:
        ledger = CapacityLedger(self.id, scan.capacity_bytes)
        for size in scan.file_sizes:
            ledger.add_existing(size)
        self._ledger = ledger

    @contextlib.asynccontextmanager
    async def name_lock(self, name: str) -> AsyncIterator[None]:
        """Serialises commits and deletes of one shard file name on this device."""
        lock, users = self._name_locks.get(name, (asyncio.Lock(), 0))
        self._name_locks[name] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._name_locks[name]
            if users == 1:
                del self._name_locks[name]
            else:
                self._name_locks[name] = (lock, users - 1)

    # -- paths ---------------------------------------------------------------------------

    def pg_dir(self, pool_id: int, pg: int) -> str:
        return os.path.join(self.path, PGS_DIR, pg_dir_name(pool_id, pg))

    def shard_path(self, shard: ShardId) -> str:
        return os.path.join(self.pg_dir(shard.pool_id, shard.pg), shard_file_name(shard))

    # -- blocking calls: run in a thread ---------------------------------------------------

    def check_root_sync(self) -> None:
        """`OSError` (ENODEV or ENOTDIR, both device faults) unless the device directory
        is still the directory found by `scan_sync`."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError as err:
            raise OSError(errno.ENODEV, f"device directory {self.path} is gone") from err
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, f"device path {self.path} is not a directory")
        if self._root_identity is not None and (st.st_dev, st.st_ino) != self._root_identity:
            raise OSError(
                errno.ENODEV,
                f"device directory {self.path} is not the one found at start-up "
                "(unmounted or replaced)",
            )

    def scan_sync(self) -> ScanResult:
        """Start-up: identity, capacity, leftover temporary files removed, shard files
        counted. Nothing else may run on the device yet."""
        self._root_identity = None
        self.check_root_sync()
        st = os.stat(self.path)
        self._root_identity = (st.st_dev, st.st_ino)
        capacity = self.config.capacity_bytes
        if capacity == 0:
            fs = os.statvfs(self.path)
            capacity = fs.f_blocks * fs.f_frsize
        sizes: list[int] = []
        removed = unknown = 0
        try:
            pg_entries = list(os.scandir(os.path.join(self.path, PGS_DIR)))
        except FileNotFoundError:
            pg_entries = []
        for pg_entry in pg_entries:
            if parse_pg_dir_name(pg_entry.name) is None or not pg_entry.is_dir(
                follow_symlinks=False
            ):
                unknown += 1
                continue
            with os.scandir(pg_entry.path) as entries:
                for entry in entries:
                    if is_temp_name(entry.name):
                        os.unlink(entry.path)  # a crashed write: never acknowledged
                        removed += 1
                    elif parse_shard_file_name(entry.name) is not None and entry.is_file(
                        follow_symlinks=False
                    ):
                        sizes.append(entry.stat(follow_symlinks=False).st_size)
                    else:
                        unknown += 1
        if unknown:
            log.warning(
                "device %d (%s): %d unknown entries left alone", self.id, self.path, unknown
            )
        return ScanResult(capacity, tuple(sizes), removed, unknown)

    def _mkdir(self, path: str) -> None:
        """Create `path` (whose parent exists) and make its entry durable."""
        try:
            os.mkdir(path)
        except FileExistsError:
            return
        fsync_directory(os.path.dirname(path))

    def open_writer_sync(self, shard: ShardId, header: ShardHeader) -> ShardWriter:
        """A `ShardWriter` on a temporary file in the shard's PG directory."""
        self.check_root_sync()
        self._mkdir(os.path.join(self.path, PGS_DIR))
        pg_dir = self.pg_dir(shard.pool_id, shard.pg)
        self._mkdir(pg_dir)
        return ShardWriter(pg_dir, shard_file_name(shard), header)

    @staticmethod
    def write_block_sync(writer: ShardWriter, payload: memoryview | bytes, crc: int | None) -> None:
        """Check the block against the CRC-32C sent with it, then append it (with the
        CRC-32C just computed: one pass over its bytes)."""
        actual = crc32c.crc32c(payload)
        if crc is not None and actual != crc:
            raise InvalidArgument(
                f"{writer.path}: block {writer.blocks_written} arrived with CRC-32C "
                f"{actual:#010x}, the sender computed {crc:#010x}"
            )
        writer.write_block(payload, actual)

    @staticmethod
    def write_blocks_sync(
        writer: ShardWriter, blocks: list[tuple[memoryview | bytes, int | None]]
    ) -> None:
        for payload, crc in blocks:
            Device.write_block_sync(writer, payload, crc)

    def commit_writer_sync(self, writer: ShardWriter, data_length: int) -> tuple[int, int | None]:
        """Make the file durable under its name: (its size, the size of the file it
        replaced or None)."""
        try:
            replaced: int | None = os.stat(writer.path).st_size
        except FileNotFoundError:
            replaced = None
        path = writer.finish(data_length)
        self.headers.put(path, file_key(os.stat(path)), writer.header)
        return writer.bytes_written, replaced

    def open_reader_sync(self, shard: ShardId, uncached: bool = False) -> ShardReader:
        """A reader of the shard's file, its header checked against `shard`
        (`uncached`: see `ShardReader`)."""
        path = self.shard_path(shard)
        try:
            reader = ShardReader(path, uncached=uncached)
        except FileNotFoundError as err:
            self.check_root_sync()
            raise ShardNotFound(f"no shard file for {shard} ({path})", device_id=self.id) from err
        if reader.header.identity != shard.identity:
            reader.close()
            raise ShardCorrupt(
                f"the header names {reader.header.identity}, not {shard.identity}",
                file=path,
                device_id=self.id,
            )
        return reader

    @staticmethod
    def read_pieces_sync(
        reader: ShardReader, first: int, end: int, start: int, stop: int
    ) -> list[Piece]:
        """Blocks `[first, end)` read and verified, cut to the shard bytes `[start,
        stop)`. A whole block keeps its stored CRC-32C; a piece of one gets its own.
        The pieces share one new buffer (it is not reused: the transport may still
        hold views of earlier pieces)."""
        crcs: list[int] = []
        payloads = reader.read_blocks(first, end, crcs=crcs)
        full = reader.layout.full_shard_bytes
        pieces = []
        for block, payload, crc in zip(range(first, end), payloads, crcs, strict=True):
            length = len(payload)
            block_start = block * full
            lo = max(start, block_start) - block_start
            hi = min(stop, block_start + length) - block_start
            if lo == 0 and hi == length:
                pieces.append(Piece(block_start, payload, crc))  # the stored CRC: verified
            else:
                piece = payload[lo:hi]
                pieces.append(Piece(block_start + lo, piece, crc32c.crc32c(piece)))
        return pieces

    def delete_sync(self, shard: ShardId) -> int | None:
        """Remove the shard's file and make that durable; its size, or None if there
        was none. A file whose readable header names another shard is left alone."""
        path = self.shard_path(shard)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            self.check_root_sync()
            return None
        with self._header_of(path) as header:
            if header is not None and header.identity != shard.identity:
                raise ShardCorrupt(
                    f"the header names {header.identity}, not {shard.identity}: not deleted",
                    file=path,
                    device_id=self.id,
                )
        self.headers.forget(path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return None
        fsync_directory(os.path.dirname(path))
        return size

    @contextlib.contextmanager
    def _header_of(self, path: str) -> Iterator[ShardHeader | None]:
        """The header of `path` if it reads as a shard file; None if it does not (a
        corrupt file may still be deleted)."""
        try:
            reader = ShardReader(path)
        except (ShardFileCorrupt, FileNotFoundError):
            yield None
            return
        try:
            yield reader.header
        finally:
            reader.close()

    def list_pgs_sync(self) -> list[tuple[int, int]]:
        """(pool id, pg) of every PG directory on the device, in order."""
        self.check_root_sync()
        try:
            with os.scandir(os.path.join(self.path, PGS_DIR)) as entries:
                found = [
                    parse_pg_dir_name(e.name) for e in entries if e.is_dir(follow_symlinks=False)
                ]
        except FileNotFoundError:
            return []
        return sorted(pg for pg in found if pg is not None)

    def list_pgs_page_sync(
        self, pgs: Sequence[tuple[int, int]], start_index: int, start_after: str, limit: int
    ) -> tuple[list[tuple[int, list[tuple[str, StoredShard | None, str]]]], int, str]:
        """A page of `list_pg_sync` over the PGs `pgs[start_index:]` in turn, the
        first after `start_after`: (index, its entries) for each PG with entries in the
        page, and where the next page starts (index, start_after); the index is
        `len(pgs)` at the end. At most `limit` entries."""
        out: list[tuple[int, list[tuple[str, StoredShard | None, str]]]] = []
        room = limit
        index = start_index
        while index < len(pgs) and room > 0:
            pool_id, pg = pgs[index]
            entries, more = self.list_pg_sync(pool_id, pg, start_after, room)
            if entries:
                out.append((index, entries))
                room -= len(entries)
            if more:
                return out, index, more
            index, start_after = index + 1, ""
        return out, index, start_after

    def list_pg_sync(
        self, pool_id: int, pg: int, start_after: str, limit: int
    ) -> tuple[list[tuple[str, StoredShard | None, str]], str]:
        """A page of the PG's shard files after `start_after`, in name order:
        (name, what it holds or None, why it could not be read) each, and the name
        to continue after ("" at the end). Temporary files are never listed."""
        self.check_root_sync()
        directory = self.pg_dir(pool_id, pg)
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return [], ""
        names = sorted(n for n in names if n > start_after and parse_shard_file_name(n))
        page, more = names[:limit], len(names) > limit
        entries: list[tuple[str, StoredShard | None, str]] = []
        for name in page:
            path = os.path.join(directory, name)
            try:
                st = os.stat(path)
                key = file_key(st)
                header = self.headers.get(path, key)
                if header is None:
                    with ShardReader(path) as reader:  # checks the header and the size
                        header, st = reader.header, reader.stat
                    key = file_key(st)
                    self.headers.put(path, key, header)
                entries.append((name, StoredShard(name, header, st.st_size, st.st_mtime_ns), ""))
            except FileNotFoundError:
                self.headers.forget(path)
                continue  # deleted since the listing
            except ShardFileCorrupt as err:
                self.headers.forget(path)
                entries.append((name, None, str(err)))
        return entries, page[-1] if more and page else ""
