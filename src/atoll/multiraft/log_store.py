"""Durable Raft logs of every group a multi-raft host runs, in one shared engine.

Owns, per Raft group, what its core needs again after a restart: the hard state, the
log base (metadata of the last snapshot or compaction: the log starts after it), and
the entries after the base. Snapshot data is not kept here: the state machines live
in the same engine, and a snapshot is made from it when one is sent (the host). Does its I/O through an
`atoll.engine.Engine` of any kind (lsm, lmdb, memory) and nothing else: no threads of
its own, no asyncio, no clock. Keys and values are the format of
docs/formats/raft_log.md, encoded by `atoll.multiraft.log_format`.

The host's ready cycle, carried out from one thread (`atoll.raft.types.Ready` gives
the order of the persist step):

1. `stage(batch, group_id, ready)` for every group with a Ready, into one WriteBatch;
2. `write(batch, sync=<any ready's must_sync>)`: one write and one fsync for all
   groups (group commit);
3. only then send the groups' messages.

A Ready's snapshot replaces the group's whole stored log, as the core's
`RaftLog.restore` replaced its log in memory (it only takes a snapshot whose last
entry it lacks, so any stored entries after it are divergent); `compact`, for the
host's own log compaction, keeps the entries after the new base.

To delete a stale suffix without reading the engine, the store keeps each group's
log bounds (base index, last index) in memory, loaded on first use. `stage`,
`compact` and `destroy` update a pending copy that belongs to the
batch staged into; `write` makes it current once the engine took the batch, and a
failed write forgets every cached bound (they are read again). One batch may be in
flight at a time: staging into a second batch before the first is written or
`discard`ed is a bug. Readers (`load`, `entries`, `groups`) see
only what was written, read from one engine snapshot, and may run on other threads.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace

from atoll.base.errors import invariant
from atoll.engine.api import Engine, ReadView, WriteBatch
from atoll.multiraft.errors import LogCompacted, LogCorruption
from atoll.multiraft.log_format import (
    PREFIX,
    PREFIX_END,
    U64_MAX,
    RecordKind,
    decode_entry,
    decode_hard_state,
    decode_log_base,
    encode_entry,
    encode_hard_state,
    encode_log_base,
    entries_end,
    entries_start,
    entry_key,
    entry_range_end,
    group_end,
    group_of,
    group_prefix,
    index_of,
    record_key,
)
from atoll.raft.types import ConfState, Entry, HardState, PersistedState, Ready, SnapshotMeta

ENTRIES_READ_MAX_BYTES = 64 * 1024 * 1024
"""Default bound on one `entries` call, counted with `Entry.size_bytes`."""


@dataclass(slots=True)
class _Bounds:
    """A group's stored log: entries `base_index + 1 .. last_index` (none when equal)."""

    base_index: int = 0
    last_index: int = 0


class LogStore:
    """The Raft logs of many groups over one engine. See the module docstring."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()  # guards the three fields below
        self._written: dict[int, _Bounds] = {}
        self._pending: dict[int, _Bounds] = {}
        self._pending_batch: WriteBatch | None = None

    # ------------------------------------------------------------------ writes

    def stage(self, batch: WriteBatch, group_id: int, ready: Ready) -> None:
        """Add the persist step of `ready` for `group_id` to `batch`: the snapshot's
        metadata as the new log base, replacing the whole stored log (the host has
        restored the snapshot's data into its state machine already); then the entries, replacing
        every stored entry from the first one's index on; then the hard state."""
        with self._lock:
            bounds = self._staging(batch, group_id)
            if ready.snapshot is not None:
                # The core received it because its log did not match at the snapshot's
                # index, and replaced its whole log (`RaftLog.restore`, as etcd/raft):
                # so does the store, or a restart would bring the divergent suffix back.
                meta = ready.snapshot.meta
                invariant(
                    meta.index >= bounds.base_index,
                    f"raft log of group {group_id}: snapshot at {meta.index} is older "
                    f"than the log base {bounds.base_index}",
                )
                LogStore._move_base(batch, group_id, meta, bounds, keep_suffix=False)
            if ready.entries:
                self._stage_entries(batch, group_id, ready.entries, bounds)
            if ready.hard_state is not None:
                batch.put(*encode_hard_state(group_id, ready.hard_state))

    def compact(self, batch: WriteBatch, group_id: int, meta: SnapshotMeta) -> None:
        """Drop entries at index <= `meta.index` and record `meta` as the log's base
        (the host's state machine holds everything up to it). Compacting to or below the current base
        does nothing; past the last stored entry is a bug."""
        with self._lock:
            bounds = self._staging(batch, group_id)
            if meta.index <= bounds.base_index:
                return
            invariant(
                meta.index <= bounds.last_index,
                f"raft log of group {group_id}: compaction to {meta.index} passes the "
                f"last stored entry {bounds.last_index}",
            )
            self._move_base(batch, group_id, meta, bounds)

    def initialize(self, group_ids: Iterable[int], conf: ConfState) -> None:
        """Record `conf` as the first configuration (a log base at index 0) of each of
        `group_ids` that has nothing stored yet, in one synced write: a crash leaves
        all of them recorded or none. Groups with anything stored are left alone."""
        invariant(bool(conf.voters), "raft log store: a first configuration needs voters")
        with self._lock:
            invariant(self._pending_batch is None, "raft log store: initialize while staging")
            batch = WriteBatch()
            for group_id in group_ids:
                state = self.load(group_id)
                if state.snapshot.index or state.snapshot.conf.voters or state.entries:
                    continue
                batch.put(*encode_log_base(group_id, SnapshotMeta(0, 0, conf)))
            if len(batch):
                self._engine.write(batch, sync=True)

    def destroy(self, batch: WriteBatch, group_id: int) -> None:
        """Remove every record of `group_id`."""
        with self._lock:
            bounds = self._staging(batch, group_id)
            batch.delete_range(group_prefix(group_id), group_end(group_id))
            bounds.base_index = bounds.last_index = 0

    def write(self, batch: WriteBatch, sync: bool) -> None:
        """Write `batch` (which may also hold other users' operations) to the engine in
        one atomic write, fsynced if `sync`."""
        with self._lock:
            invariant(
                self._pending_batch is None or self._pending_batch is batch,
                "raft log store: writing a batch other than the one staged into",
            )
        try:
            self._engine.write(batch, sync=sync)
        except BaseException:
            # The engine may or may not hold the batch now: read the bounds again.
            with self._lock:
                self._forget_all()
            raise
        with self._lock:
            self._written.update(self._pending)
            self._pending.clear()
            self._pending_batch = None

    def discard(self, batch: WriteBatch) -> None:
        """Forget what was staged into `batch`, which will not be written."""
        with self._lock:
            if self._pending_batch is batch:
                self._pending.clear()
                self._pending_batch = None

    # ------------------------------------------------------------------- reads

    def load(self, group_id: int) -> PersistedState:
        """Everything stored for `group_id`, read at one point in time; the empty state
        for a group with nothing stored. Raises `LogCorruption` if a record fails its
        checks or the entries do not run contiguously from just after the base."""
        with self._engine.snapshot() as view:
            key = record_key(group_id, RecordKind.HARD_STATE)
            raw = view.get(key)
            hard_state = decode_hard_state(key, raw) if raw is not None else HardState()
            base = _read_base(view, group_id)
            entries = _read_entries(
                view, group_id, entries_start(group_id), entries_end(group_id), base.index + 1
            )
        return PersistedState(hard_state=hard_state, snapshot=base, entries=tuple(entries))

    def entries(
        self,
        group_id: int,
        lo: int,
        hi: int,
        max_size_bytes: int = ENTRIES_READ_MAX_BYTES,
    ) -> list[Entry]:
        """The stored entries with `lo <= index < hi`, in order, stopping at the last
        stored one and once `max_size_bytes` would be passed (at least one entry is
        returned if any is stored). Raises `LogCompacted` if `lo` is at or below the
        log base."""
        if hi <= lo:
            return []
        with self._engine.snapshot() as view:
            base_index = _read_base(view, group_id).index
            if lo <= base_index:
                raise LogCompacted(group_id, lo, base_index)
            start, end = entry_key(group_id, lo), entry_range_end(group_id, hi - 1)
            return _read_entries(view, group_id, start, end, lo, max_size_bytes)

    def groups(self) -> list[int]:
        """The ids of the groups with anything stored, ascending (one seek per group)."""
        found: list[int] = []
        start = PREFIX
        while True:
            first = next(iter(self._engine.scan(start, PREFIX_END)), None)
            if first is None:
                return found
            group_id = group_of(first[0])
            if group_id < 0:
                raise LogCorruption(
                    f"malformed key ({len(first[0])} bytes)", group_id=-1, key=first[0]
                )
            found.append(group_id)
            if group_id == U64_MAX:
                return found
            start = group_prefix(group_id + 1)

    # ----------------------------------------------------------------- helpers

    def _staging(self, batch: WriteBatch, group_id: int) -> _Bounds:
        """The pending bounds of `group_id` in `batch`. Called with the lock held."""
        if self._pending_batch is not batch:
            invariant(
                self._pending_batch is None,
                "raft log store: staging into a second batch before the first was "
                "written or discarded",
            )
            self._pending_batch = batch
        bounds = self._pending.get(group_id)
        if bounds is None:
            written = self._written.get(group_id)
            if written is None:
                written = self._written[group_id] = self._read_bounds(group_id)
            bounds = self._pending[group_id] = replace(written)
        return bounds

    def _read_bounds(self, group_id: int) -> _Bounds:
        with self._engine.snapshot() as view:
            base_index = _read_base(view, group_id).index
            last = next(
                iter(view.scan(entries_start(group_id), entries_end(group_id), reverse=True)),
                None,
            )
        if last is None:
            return _Bounds(base_index, base_index)
        last_index = index_of(last[0])
        if last_index <= base_index:
            raise LogCorruption(
                f"entry {last_index} is at or below the log base {base_index}",
                group_id=group_id,
                key=last[0],
            )
        return _Bounds(base_index, last_index)

    def _forget_all(self) -> None:
        self._written.clear()
        self._pending.clear()
        self._pending_batch = None

    @staticmethod
    def _move_base(
        batch: WriteBatch,
        group_id: int,
        meta: SnapshotMeta,
        bounds: _Bounds,
        keep_suffix: bool = True,
    ) -> None:
        """Record `meta` as the log base and drop the entries at or below it (with
        `keep_suffix`) or all of them, and any snapshot record an earlier version
        stored (docs/formats/raft_log.md §2.4)."""
        batch.put(*encode_log_base(group_id, meta))
        batch.delete(record_key(group_id, RecordKind.SNAPSHOT))
        if keep_suffix:
            end = entry_range_end(group_id, meta.index)
            bounds.last_index = max(bounds.last_index, meta.index)
        else:
            end = entries_end(group_id)
            bounds.last_index = meta.index
        batch.delete_range(entries_start(group_id), end)
        bounds.base_index = meta.index

    @staticmethod
    def _stage_entries(
        batch: WriteBatch, group_id: int, entries: list[Entry], bounds: _Bounds
    ) -> None:
        first, new_last = entries[0].index, entries[-1].index
        for prev, entry in itertools.pairwise(entries):
            invariant(
                entry.index == prev.index + 1,
                f"raft log of group {group_id}: ready entries jump from {prev.index} "
                f"to {entry.index}",
            )
        invariant(
            bounds.base_index < first <= bounds.last_index + 1,
            f"raft log of group {group_id}: entries from {first} do not fit a log of "
            f"{bounds.base_index + 1}..{bounds.last_index}",
        )
        if bounds.last_index > new_last:
            # Entries first..new_last are overwritten below; the rest of the old
            # suffix goes (Raft thesis §3.5: a conflicting entry and all that follow).
            batch.delete_range(entry_key(group_id, new_last + 1), entries_end(group_id))
        for entry in entries:
            batch.put(*encode_entry(group_id, entry))
        bounds.last_index = new_last


def _read_base(view: ReadView, group_id: int) -> SnapshotMeta:
    key = record_key(group_id, RecordKind.LOG_BASE)
    raw = view.get(key)
    return decode_log_base(key, raw) if raw is not None else SnapshotMeta()


def _read_entries(
    view: ReadView,
    group_id: int,
    start: bytes,
    end: bytes,
    expect_index: int,
    max_size_bytes: int | None = None,
) -> list[Entry]:
    """The entries stored in `[start, end)`, which must run contiguously from
    `expect_index`; stops before passing `max_size_bytes` (after at least one)."""
    out: list[Entry] = []
    size_bytes = 0
    for key, value in view.scan(start, end):
        entry = decode_entry(key, value)
        if entry.index != expect_index:
            raise LogCorruption(
                f"stored entry {entry.index} where entry {expect_index} was expected "
                "(the log must run contiguously from just after its base)",
                group_id=group_id,
                key=key,
            )
        size_bytes += entry.size_bytes()
        if max_size_bytes is not None and out and size_bytes > max_size_bytes:
            break
        out.append(entry)
        expect_index += 1
    return out
