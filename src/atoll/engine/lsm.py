"""The LSM-tree engine: composition of WAL, memtables, SSTables, manifest and the
background flusher and compactor (shared/DESIGN.md §7; formats in docs/formats.md).

Does I/O. Threading model:

- One mutex (`_lock`, with condition `_cond`) guards sequence numbers, the WAL writer,
  the *super version* (memtable, immutable memtables, version of live tables), the
  snapshot registry and version installation. Writers hold it to log and apply a
  batch; fsyncs for `sync=True` happen after it is released (group commit,
  `LogWriter.sync_to`).
- Point reads take no lock: they read the super version reference once (it is
  replaced, never mutated, except for the active memtable's dict, whose single
  operations are atomic under the GIL).
- A flusher thread and a compactor thread hand jobs to a runner (worker processes
  by default, see `worker_pool`) and install results with one manifest edit each.
- Iterators and snapshots register their sequence number so that flushes and
  compactions keep the versions they can see; iterators also pin their version so
  the files they read are deleted only after they finish.

Writes become visible to readers when applied to the memtable, which for `sync=True`
is just before their fsync completes (as in RocksDB); a crash can lose a write that
was seen but never acknowledged.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import os
import re
import threading
import weakref
from bisect import bisect_left
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Self

from atoll.base.errors import CorruptionError
from atoll.engine import compaction_picker as picker
from atoll.engine.api import (
    OP_DELETE,
    OP_DELETE_RANGE,
    OP_PUT,
    EngineBase,
    WriteBatch,
    check_batch,
    check_bytes,
    check_scan_args,
)
from atoll.engine.batch_codec import decode_batch, encode_batch
from atoll.engine.block_cache import BlockCache
from atoll.engine.compaction_job import JobResult, JobSpec, table_path, wal_path
from atoll.engine.errors import BackgroundError, EngineClosedError, EngineError, EngineLockedError
from atoll.engine.log_format import FILE_KIND_WAL, MAX_RECORD_BYTES, WAL_MAGIC, parse_log
from atoll.engine.log_writer import LogWriter, fsync_dir
from atoll.engine.lsm_options import LsmOptions
from atoll.engine.manifest import (
    ManifestState,
    ManifestWriter,
    load_manifest,
    manifest_name,
    read_current,
)
from atoll.engine.memtable import Memtable
from atoll.engine.sstable_reader import Entry, TableReader
from atoll.engine.version import NUM_LEVELS, Table, Version, VersionEdit
from atoll.engine.worker_pool import JobRunner, shared_runner

MAX_SEQ = (1 << 64) - 1
LOCK_FILE = "LOCK"
_FILE_RE = re.compile(r"^(\d{6,})\.(log|sst)$|^MANIFEST-(\d{6,})$")


# --------------------------------------------------------------------------- helpers


class _SuperVersion:
    __slots__ = ("imms", "mem", "version")

    def __init__(self, mem: Memtable, imms: tuple[Memtable, ...], version: Version) -> None:
        self.mem = mem
        self.imms = imms  # newest first
        self.version = version


@dataclass
class _Counters:
    user_bytes: int = 0
    wal_bytes: int = 0
    flush_bytes: int = 0
    compaction_bytes_written: int = 0
    compaction_bytes_read: int = 0
    flushes: int = 0
    compactions: int = 0
    trivial_moves: int = 0
    stalls: int = 0
    slowdowns: int = 0
    phases: dict[str, int] = field(default_factory=dict)


class _Iterator:
    """An engine iterator: releases its snapshot and version pin when exhausted,
    closed, or garbage-collected."""

    def __init__(
        self, gen: Generator[tuple[bytes, bytes], None, None], release: _IteratorRelease
    ) -> None:
        self._gen = gen
        self._engine = release.engine
        self._finalizer = weakref.finalize(self, release)

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> tuple[bytes, bytes]:
        engine = self._engine()
        if engine is None or engine._closed:
            raise EngineClosedError("the engine of this iterator is closed")
        try:
            return next(self._gen)
        except StopIteration:
            self._finalizer()
            raise

    def close(self) -> None:
        self._gen.close()
        self._finalizer()


def _visible(
    merged: Iterator[Entry], seq_limit: int, reverse: bool
) -> Generator[tuple[bytes, bytes], None, None]:
    """From merged entries, the live value of each key as of `seq_limit`: its newest
    version not newer than the limit, unless that is a tombstone.

    Going forward every source yields a key's versions newest first, so the first
    visible one wins. Going backward a table yields them in stored order reversed
    (oldest first), so each key's group is scanned for its newest visible version."""
    if reverse:
        yield from _visible_reverse(merged, seq_limit)
        return
    last: bytes | None = None
    for key, s, value in merged:
        if key == last or -s > seq_limit:
            continue
        last = key
        if value is not None:
            yield key, value


def _visible_reverse(merged: Iterator[Entry], seq_limit: int) -> Iterator[tuple[bytes, bytes]]:
    current: bytes | None = None
    best_seq = -1
    best: bytes | None = None
    for key, seq, value in merged:
        if key != current:
            if best is not None:
                yield current, best  # type: ignore[misc]
            current, best_seq, best = key, -1, None
        if best_seq < seq <= seq_limit:
            best_seq, best = seq, value
    if best is not None:
        yield current, best  # type: ignore[misc]


def _level_entries(
    tables: tuple[Table, ...], start: bytes, end: bytes | None, reverse: bool
) -> Iterator[Entry]:
    chosen = [t for t in tables if t.largest >= start and (end is None or t.smallest < end)]
    if reverse:
        chosen.reverse()
    for t in chosen:
        yield from t.reader.iterate(start, end, reverse)


# --------------------------------------------------------------------------- engine


class LsmSnapshot:
    """A point-in-time view of an `LsmEngine` (a registered sequence number)."""

    def __init__(self, engine: LsmEngine, seq: int) -> None:
        self._engine = engine
        self.seq = seq
        self._finalizer = weakref.finalize(self, engine._release_snapshot, seq)

    def get(self, key: bytes) -> bytes | None:
        self._check()
        return self._engine._get_at(key, self.seq)

    def scan(
        self, start: bytes = b"", end: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        self._check()
        return self._engine._scan_at(start, end, reverse, self.seq)

    def _check(self) -> None:
        if not self._finalizer.alive:
            raise EngineClosedError("snapshot is closed")
        self._engine._check_open()

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LsmEngine(EngineBase):
    # ------------------------------------------------------------------ open/recover

    @classmethod
    def open(cls, path: str, runner: JobRunner | None = None, **options: Any) -> LsmEngine:
        opts = LsmOptions.from_kwargs(**options)
        os.makedirs(path, exist_ok=True)
        lock_fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            os.close(lock_fd)
            raise EngineLockedError(f"engine directory {path} is in use") from err
        try:
            return cls(path, opts, runner or shared_runner(opts.background), lock_fd)
        except BaseException:
            os.close(lock_fd)
            raise

    def __init__(self, path: str, opts: LsmOptions, runner: JobRunner, lock_fd: int) -> None:
        self.path = path
        self.options = opts
        self._runner = runner
        self._lock_fd = lock_fd
        # Re-entrant: an iterator's finalizer may run (and take the lock) wherever the
        # last reference to it is dropped, including inside a locked section.
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._cache = BlockCache(opts.block_cache_bytes)
        self._counters = _Counters()
        self._snapshots: dict[int, int] = {}
        self._pins: dict[int, list[Any]] = {}  # id(version) -> [version, count]
        self._obsolete: list[Table] = []
        self._pointers: dict[int, bytes] = {}
        self._bg_error: BaseException | None = None
        self._closed = False
        self._closing = False
        self._flushing = False
        self._compacting = False
        self._recover()
        self._threads = [
            threading.Thread(target=self._flush_loop, name="atoll-flusher", daemon=True),
            threading.Thread(target=self._compact_loop, name="atoll-compactor", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _recover(self) -> None:
        path = self.path
        numbers: dict[str, list[int]] = {"log": [], "sst": [], "manifest": []}
        for name in os.listdir(path):
            m = _FILE_RE.match(name)
            if m:
                if m.group(3):
                    numbers["manifest"].append(int(m.group(3)))
                else:
                    numbers[m.group(2)].append(int(m.group(1)))
        current = read_current(path)
        if current is None:
            if numbers["sst"] or numbers["manifest"]:
                raise CorruptionError("engine files present but CURRENT is missing", file=path)
            state = ManifestState(Version.empty(), 0, 2, 0, 0)
        else:
            state = load_manifest(path, current)
        everything = numbers["log"] + numbers["sst"] + numbers["manifest"] + [state.next_file - 1]
        self._next_file = max(everything) + 1
        # Open every live table (a missing or damaged one is corruption, not a blank).
        for table in state.version.tables():
            tpath = table_path(path, table.number)
            if not os.path.exists(tpath):
                raise CorruptionError("live SSTable is missing", file=tpath)
            table.reader = TableReader(tpath, table.number, self._cache)
        # Replay WAL segments not yet flushed into a memtable.
        self._last_seq = state.last_seq
        replayed = sorted(n for n in numbers["log"] if n >= state.log_number)
        recovered = Memtable(replayed)
        for number in replayed:
            # Only the newest segment can end torn: older ones were fsynced when sealed.
            newest = number == replayed[-1]
            self._replay_wal(wal_path(path, number), recovered, newest)
        self._last_seq = max(self._last_seq, recovered.last_seq)
        # Start a fresh MANIFEST and WAL segment.
        manifest_number = self._alloc(1)
        wal_number = self._alloc(1)
        log_number = replayed[0] if len(recovered) else wal_number
        state = ManifestState(
            state.version, log_number, self._next_file, self._last_seq, manifest_number
        )
        self._manifest = ManifestWriter(path, manifest_number, state)
        self._wal = LogWriter(wal_path(path, wal_number), WAL_MAGIC, FILE_KIND_WAL)
        self._log_number = log_number
        imms = (recovered,) if len(recovered) else ()
        self._sv = _SuperVersion(Memtable([wal_number]), imms, state.version)
        # Remove what no live state refers to: orphans of interrupted jobs, old logs.
        live_tables = {t.number for t in state.version.tables()}
        for n in numbers["sst"]:
            if n not in live_tables:
                _remove(table_path(path, n))
        for n in numbers["log"]:
            if n < log_number:
                _remove(wal_path(path, n))
        for n in numbers["manifest"]:
            if n != manifest_number:
                _remove(os.path.join(path, manifest_name(n)))
        _remove(os.path.join(path, "CURRENT.tmp"))
        fsync_dir(path)

    def _replay_wal(self, path: str, mem: Memtable, newest: bool) -> None:
        with open(path, "rb") as f:
            data = f.read()
        contents = parse_log(data, WAL_MAGIC, FILE_KIND_WAL, path, tail_may_tear=newest)
        for payload in contents.records:
            first_seq, ops, keys, values = decode_batch(payload, path)
            mem.apply(first_seq, ops, keys, values, None)
        if contents.torn_tail:
            # Cut the torn tail off so that the flush job reads exactly what we applied.
            os.truncate(path, contents.valid_end)

    def _alloc(self, count: int) -> int:
        first = self._next_file
        self._next_file += count
        return first

    # ------------------------------------------------------------------ writes

    def write(self, batch: WriteBatch, sync: bool = False) -> None:
        check_batch(batch)
        self._check_open()
        if not batch.keys:
            return
        with self._lock:
            self._make_room()
            if batch.range_deletes:
                opcodes, key_list, value_list = self._expand_ranges(batch.ops)
                if not key_list:
                    return
            else:
                opcodes, key_list, value_list = bytes(batch.codes), batch.keys, batch.values
                if opcodes.count(OP_PUT) + opcodes.count(OP_DELETE) != len(opcodes):
                    raise ValueError("write batch holds an unknown operation code")
            first = self._last_seq + 1
            payload = encode_batch(first, opcodes, key_list, value_list)
            if len(payload) > MAX_RECORD_BYTES:
                raise ValueError(
                    f"write batch of {len(payload)} bytes exceeds the {MAX_RECORD_BYTES}-byte limit"
                )
            try:
                end = self._wal.append(payload)
            except OSError as err:
                self._bg_error = err
                raise
            keep = max(self._snapshots) if self._snapshots else None
            user_bytes = self._sv.mem.apply(first, opcodes, key_list, value_list, keep)
            self._last_seq = first + len(key_list) - 1
            self._counters.user_bytes += user_bytes
            self._counters.wal_bytes += len(payload) + 8
            wal = self._wal
        if sync:
            wal.sync_to(end)

    def _expand_ranges(
        self, ops: list[tuple[int, bytes, bytes]]
    ) -> tuple[bytes, list[bytes], list[bytes]]:
        """Replace each range delete by point deletes of the keys it covers: those live
        now, and those put earlier in the same batch. Returns the batch's columns.
        Called with the lock held."""
        out: list[tuple[int, bytes, bytes]] = []
        for op, key, value in ops:
            if op != OP_DELETE_RANGE:
                out.append((op, key, value))
                continue
            start, end = key, value
            if start >= end:
                continue
            live = self._visible_keys(start, end)
            earlier = [k for o, k, _ in out if o == OP_PUT and start <= k < end]
            out.extend((OP_DELETE, k, b"") for k in dict.fromkeys(live + earlier))
        return bytes(o for o, _, _ in out), [k for _, k, _ in out], [v for _, _, v in out]

    def _visible_keys(self, start: bytes, end: bytes) -> list[bytes]:
        sv = self._sv
        merged = self._merged(sv, start, end, False, self._last_seq)
        return [k for k, _ in _visible(merged, self._last_seq, False)]

    def _make_room(self) -> None:
        """Rotate a full memtable; stall while flushes or level 0 are too far behind.
        Called with the lock held."""
        opts = self.options
        waited = 0.0
        while True:
            self._check_writable()
            sv = self._sv
            full = sv.mem.size_bytes >= opts.memtable_size_bytes
            if len(sv.version.levels[0]) >= opts.level0_stop_trigger or (
                full and len(sv.imms) >= opts.max_immutable_memtables
            ):
                self._counters.stalls += 1
                if waited >= opts.stall_timeout_s:
                    raise EngineError(f"writes to {self.path} stalled for {waited:.0f}s")
                self._cond.wait(1.0)
                waited += 1.0
                continue
            if full:
                self._rotate()
            if len(sv.version.levels[0]) >= opts.level0_slowdown_trigger:
                self._counters.slowdowns += 1
                self._cond.wait(0.001)
            return

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosedError(f"engine {self.path} is closed")

    def _check_writable(self) -> None:
        if self._closed or self._closing:
            raise EngineClosedError(f"engine {self.path} is closed")
        if self._bg_error is not None:
            raise BackgroundError(f"engine {self.path} failed: {self._bg_error!r}") from (
                self._bg_error
            )

    def _rotate(self) -> None:
        """Freeze the memtable and start a new WAL segment. Lock held."""
        sv = self._sv
        if not len(sv.mem):
            return
        number = self._alloc(1)
        # The sealed segment is fsynced first: a later synced write must never survive
        # a crash that loses an earlier write, and only the newest segment may be torn.
        self._wal.close(sync=True)
        self._wal = LogWriter(wal_path(self.path, number), WAL_MAGIC, FILE_KIND_WAL)
        fsync_dir(self.path)  # the new segment's name must survive before it holds acks
        self._sv = _SuperVersion(Memtable([number]), (sv.mem, *sv.imms), sv.version)
        self._cond.notify_all()

    # ------------------------------------------------------------------ reads

    def get(self, key: bytes) -> bytes | None:
        if type(key) is not bytes:
            check_bytes("key", key)
        if self._closed:  # inline rather than _check_open(): every point read passes here
            raise EngineClosedError(f"engine {self.path} is closed")
        sv = self._sv
        entry = sv.mem.data.get(key)
        if entry is not None:
            return entry[1]
        for imm in sv.imms:
            entry = imm.data.get(key)
            if entry is not None:
                return entry[1]
        return self._get_from_tables(sv.version, key, MAX_SEQ)

    def _get_at(self, key: bytes, seq: int) -> bytes | None:
        check_bytes("key", key)
        self._check_open()
        sv = self._sv
        for mem in (sv.mem, *sv.imms):
            entry = mem.get(key, seq)
            if entry is not None:
                return entry[1]
        return self._get_from_tables(sv.version, key, seq)

    @staticmethod
    def _get_from_tables(version: Version, key: bytes, seq: int) -> bytes | None:
        value: bytes | None
        for t in version.levels[0]:
            if t.smallest <= key <= t.largest:
                found, value = t.reader.get(key, seq)
                if found:
                    return value
        for tables, largest in version.deep_levels:  # type: ignore[attr-defined]
            i = bisect_left(largest, key)
            if i < len(tables):
                t = tables[i]
                if t.smallest <= key:
                    found, value = t.reader.get(key, seq)
                    if found:
                        return value
        return None

    def scan(
        self, start: bytes = b"", end: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        check_scan_args(start, end)
        self._check_open()
        with self._lock:
            seq = self._last_seq
            return self._iterate_locked(start, end, reverse, seq)

    def _scan_at(
        self, start: bytes, end: bytes | None, reverse: bool, seq: int
    ) -> Iterator[tuple[bytes, bytes]]:
        check_scan_args(start, end)
        self._check_open()
        with self._lock:
            return self._iterate_locked(start, end, reverse, seq)

    def _iterate_locked(
        self, start: bytes, end: bytes | None, reverse: bool, seq: int
    ) -> Iterator[tuple[bytes, bytes]]:
        sv = self._sv
        self._snapshots[seq] = self._snapshots.get(seq, 0) + 1
        version = sv.version
        self._pin(version)
        gen = _visible(self._merged(sv, start, end, reverse, seq), seq, reverse)
        return _Iterator(gen, _IteratorRelease(self, seq, version))

    def _merged(
        self, sv: _SuperVersion, start: bytes, end: bytes | None, reverse: bool, seq: int
    ) -> Iterator[Entry]:
        version = sv.version
        sources: list[Iterator[Entry]] = [
            *(m.iterate(start, end, reverse, seq) for m in (sv.mem, *sv.imms)),
            *(
                t.reader.iterate(start, end, reverse)
                for t in version.levels[0]
                if t.largest >= start and (end is None or t.smallest < end)
            ),
            *(
                _level_entries(version.levels[level], start, end, reverse)
                for level in range(1, NUM_LEVELS)
                if version.levels[level]
            ),
        ]
        if len(sources) == 1:
            return sources[0]
        return heapq.merge(*sources, reverse=reverse)

    def snapshot(self) -> LsmSnapshot:
        self._check_open()
        with self._lock:
            seq = self._last_seq
            self._snapshots[seq] = self._snapshots.get(seq, 0) + 1
        return LsmSnapshot(self, seq)

    def _release_snapshot(self, seq: int) -> None:
        with self._lock:
            count = self._snapshots.get(seq, 0) - 1
            if count > 0:
                self._snapshots[seq] = count
            else:
                self._snapshots.pop(seq, None)

    def _release_iterator(self, seq: int, version: Version) -> None:
        self._release_snapshot(seq)
        self._unpin(version)

    def _pin(self, version: Version) -> None:
        """Keep `version`'s tables on disk until `_unpin` (lock held)."""
        pin = self._pins.setdefault(id(version), [version, 0])
        pin[1] += 1

    def _unpin(self, version: Version) -> None:
        with self._lock:
            pin = self._pins.get(id(version))
            if pin is not None:
                pin[1] -= 1
                if pin[1] <= 0:
                    del self._pins[id(version)]
            self._delete_obsolete()

    # ------------------------------------------------------------------ background

    def _flush_loop(self) -> None:
        while True:
            with self._cond:
                while not self._closing and not (self._sv.imms and self._bg_error is None):
                    self._cond.wait()
                if self._closing:
                    return
                imm = self._sv.imms[-1]
                number = self._alloc(1)
                spec = self._spec(number, 1, bottom=False, target=0)
                self._flushing = True
            try:
                paths = [wal_path(self.path, n) for n in imm.wal_numbers]
                result = self._runner.run("flush", spec, paths)
                tables = self._open_outputs(result)
                with self._cond:
                    self._install_flush(imm, result, tables)
            except BaseException as err:  # task boundary: fail the engine, loudly
                self._fail(err)
                return
            finally:
                with self._cond:
                    self._flushing = False
                    self._cond.notify_all()

    def _compact_loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closing:
                        return
                    chosen = None
                    if not self._compacting and self._bg_error is None:
                        chosen = picker.pick(self._sv.version, self._shape(), self._pointers)
                    if chosen is not None:
                        break
                    self._cond.wait()
                self._compacting = True
            try:
                self._run_compaction(chosen)
            except BaseException as err:  # task boundary
                self._fail(err)
                return
            finally:
                with self._cond:
                    self._compacting = False
                    self._cond.notify_all()

    def _fail(self, err: BaseException) -> None:
        with self._cond:
            if self._bg_error is None and not self._closing:
                self._bg_error = err
            self._cond.notify_all()

    def _shape(self) -> picker.LevelShape:
        o = self.options
        return picker.LevelShape(
            o.level0_compaction_trigger, o.level_base_bytes, o.level_multiplier
        )

    def _spec(self, first_number: int, max_outputs: int, bottom: bool, target: int) -> JobSpec:
        return JobSpec(
            dirpath=self.path,
            first_number=first_number,
            max_outputs=max_outputs,
            snapshots=tuple(sorted(self._snapshots)),
            bottom=bottom,
            block_size=self.options.block_size_bytes,
            bloom_bits_per_key=self.options.bloom_bits_per_key,
            target_table_bytes=target,
        )

    def _open_outputs(self, result: JobResult) -> list[Table]:
        tables = []
        for info in result.tables:
            table = Table(
                info.number,
                info.size,
                info.smallest,
                info.largest,
                info.entries,
                info.smallest_seq,
                info.largest_seq,
            )
            table.reader = TableReader(table_path(self.path, info.number), info.number, self._cache)
            tables.append(table)
        if tables:
            fsync_dir(self.path)
        return tables

    def _install_flush(self, imm: Memtable, result: JobResult, tables: list[Table]) -> None:
        sv = self._sv
        remaining = tuple(m for m in sv.imms if m is not imm)
        log_number = min(n for m in (sv.mem, *remaining) for n in m.wal_numbers)
        edit = VersionEdit(
            log_number=log_number,
            next_file=self._next_file,
            last_seq=self._last_seq,
            added=[(0, t) for t in tables],
        )
        self._log_edit(edit)
        self._sv = _SuperVersion(sv.mem, remaining, sv.version.apply(edit))
        for n in imm.wal_numbers:
            if n < log_number:
                _remove(wal_path(self.path, n))
        self._log_number = log_number
        self._counters.flushes += 1
        self._counters.flush_bytes += result.bytes_written
        self._cond.notify_all()

    def _run_compaction(self, c: picker.Compaction) -> None:
        if c.trivial_move:
            with self._cond:
                (table,) = c.inputs
                edit = VersionEdit(
                    next_file=self._next_file,
                    last_seq=self._last_seq,
                    deleted=[(c.level, table.number)],
                    added=[(c.output_level, table)],
                )
                self._install_compaction(c, edit)
                self._counters.trivial_moves += 1
            return
        older_first = list(c.next_inputs) + sorted(c.inputs, key=lambda t: t.largest_seq)
        target = self.options.table_target_bytes
        with self._cond:
            max_outputs = c.input_bytes() // target + 3
            first = self._alloc(max_outputs)
            spec = self._spec(first, max_outputs, bottom=c.bottom, target=target)
        inputs = [(table_path(self.path, t.number), t.number) for t in older_first]
        result = self._runner.run("compact", spec, [list(i) for i in inputs])
        tables = self._open_outputs(result)
        with self._cond:
            edit = VersionEdit(
                next_file=self._next_file,
                last_seq=self._last_seq,
                deleted=[(level, t.number) for level, t in c.all_inputs()],
                added=[(c.output_level, t) for t in tables],
            )
            self._install_compaction(c, edit)
            self._obsolete.extend(t for _, t in c.all_inputs())
            self._delete_obsolete()
            self._counters.compactions += 1
            self._counters.compaction_bytes_written += result.bytes_written
            self._counters.compaction_bytes_read += result.bytes_read

    def _install_compaction(self, c: picker.Compaction, edit: VersionEdit) -> None:
        """Log and apply a compaction's edit. Lock held."""
        self._log_edit(edit)
        sv = self._sv
        self._sv = _SuperVersion(sv.mem, sv.imms, sv.version.apply(edit))
        if c.level > 0:
            self._pointers[c.level] = max(t.largest for t in c.inputs)
        self._cond.notify_all()

    def _log_edit(self, edit: VersionEdit) -> None:
        """Make an edit durable in the MANIFEST, starting a new MANIFEST when the live
        one has grown past its limit. Lock held."""
        self._manifest.append(edit)
        if self._manifest.size > self.options.manifest_max_bytes:
            old = self._manifest
            number = self._alloc(1)
            log_number = edit.log_number if edit.log_number is not None else self._log_number
            state = ManifestState(
                self._sv.version.apply(edit), log_number, self._next_file, self._last_seq, number
            )
            self._manifest = ManifestWriter(self.path, number, state)
            old.close()
            _remove(os.path.join(self.path, manifest_name(old.number)))

    def _delete_obsolete(self) -> None:
        """Delete replaced tables no version in use refers to. Lock held."""
        if not self._obsolete:
            return
        live = {t.number for t in self._sv.version.tables()}
        for version, _ in self._pins.values():
            live.update(t.number for t in version.tables())
        keep = []
        for t in self._obsolete:
            if t.number in live:
                keep.append(t)
            else:
                _remove(table_path(self.path, t.number))
                self._cache.evict_table(t.number)
        self._obsolete = keep

    # ------------------------------------------------------------------ maintenance

    def flush(self) -> None:
        """Flush the memtable and every immutable memtable to level 0, and wait."""
        with self._cond:
            self._check_writable()
            self._rotate()
            pending = set(map(id, self._sv.imms))
            while pending & set(map(id, self._sv.imms)):
                self._check_writable()
                self._cond.wait(1.0)

    def compact_range(self, start: bytes | None = None, end: bytes | None = None) -> None:
        """Push every table overlapping [start, end] down to the deepest level holding
        data (as RocksDB's CompactRange), after flushing the memtable."""
        if start is not None:
            check_bytes("start", start)
        if end is not None:
            check_bytes("end", end)
        self.flush()
        with self._cond:
            while self._compacting:
                self._check_writable()
                self._cond.wait(1.0)
            self._compacting = True
        try:
            deepest = max([1] + [lvl for lvl in range(NUM_LEVELS) if self._sv.version.levels[lvl]])
            for level in range(deepest):
                while True:
                    with self._cond:
                        self._check_writable()
                        version = self._sv.version
                        candidates = picker.manual(version, level, start, end)
                        if not candidates:
                            break
                        inputs = candidates if level == 0 else candidates[:1]
                        c = picker.build(version, level, inputs)
                    self._run_compaction(c)
        finally:
            with self._cond:
                self._compacting = False
                self._cond.notify_all()

    def checkpoint(self, path: str) -> None:
        """A consistent copy of the engine in a new directory, by hard links.

        The memtable is flushed first; the copy holds every write acknowledged before
        the call (and possibly some made during it, always whole batches)."""
        if os.path.exists(path) and os.listdir(path):
            raise FileExistsError(f"checkpoint directory {path} is not empty")
        self.flush()
        with self._lock:
            version = self._sv.version
            self._pin(version)
            state = ManifestState(version, 0, self._next_file, self._last_seq, 1)
        try:
            os.makedirs(path, exist_ok=True)
            for t in version.tables():
                os.link(table_path(self.path, t.number), table_path(path, t.number))
            state.manifest_number = self._next_file
            state.next_file = self._next_file + 1
            ManifestWriter(path, state.manifest_number, state).close()
        finally:
            self._unpin(version)

    def approximate_size(self, start: bytes, end: bytes) -> int:
        """Bytes on disk (and in memtables) for keys in [start, end), estimated from
        block offsets; cheap, never reads data blocks."""
        check_bytes("start", start)
        check_bytes("end", end)
        self._check_open()
        if end <= start:
            return 0
        sv = self._sv
        total = 0
        for t in sv.version.tables():
            if t.largest >= start and t.smallest < end:
                r = t.reader
                total += max(0, r.approximate_offset(end) - r.approximate_offset(start)) or min(
                    t.size, self.options.block_size_bytes
                )
        for mem in (sv.mem, *sv.imms):
            keys = mem.sorted_keys()
            if keys:
                inside = bisect_left(keys, end) - bisect_left(keys, start)
                total += mem.size_bytes * inside // len(keys)
        return total

    def phase(self) -> str:
        """What the background is doing now: idle, flush, compaction or both."""
        parts = [
            name for name, on in (("flush", self._flushing), ("compaction", self._compacting)) if on
        ]
        return "+".join(parts) or "idle"

    def stats(self) -> dict[str, Any]:
        self._check_open()
        with self._lock:
            live_snapshots = sum(self._snapshots.values())
        sv = self._sv
        version = sv.version
        c = self._counters
        written = c.wal_bytes + c.flush_bytes + c.compaction_bytes_written
        levels = [
            {"level": i, "files": len(version.levels[i]), "bytes": version.level_bytes(i)}
            for i in range(NUM_LEVELS)
        ]
        return {
            "kind": "lsm",
            "levels": levels,
            "files": sum(x["files"] for x in levels),
            "bytes": sum(x["bytes"] for x in levels),
            "memtable_bytes": sv.mem.size_bytes,
            "immutable_memtables": len(sv.imms),
            "write_amplification": written / c.user_bytes if c.user_bytes else 0.0,
            "user_bytes_written": c.user_bytes,
            "wal_bytes_written": c.wal_bytes,
            "flush_bytes_written": c.flush_bytes,
            "compaction_bytes_written": c.compaction_bytes_written,
            "compaction_bytes_read": c.compaction_bytes_read,
            "flushes": c.flushes,
            "compactions": c.compactions,
            "trivial_moves": c.trivial_moves,
            "write_stalls": c.stalls,
            "write_slowdowns": c.slowdowns,
            "cache_hit_ratio": self._cache.hit_ratio(),
            "cache_bytes": self._cache.size_bytes,
            "last_sequence": self._last_seq,
            "live_snapshots": live_snapshots,
        }

    def close(self) -> None:
        if self._closed:
            return
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for t in self._threads:
            t.join()
        with self._cond:
            self._closed = True
            self._wal.close(sync=True)
            self._manifest.close()
        os.close(self._lock_fd)


class _IteratorRelease:
    """The finalizer of an iterator; holds the engine weakly so that a forgotten
    iterator does not keep a closed engine alive."""

    def __init__(self, engine: LsmEngine, seq: int, version: Version) -> None:
        self.engine = weakref.ref(engine)
        self._seq = seq
        self._version = version

    def __call__(self) -> None:
        engine = self.engine()
        if engine is not None:
            engine._release_iterator(self._seq, self._version)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
