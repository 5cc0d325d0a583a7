"""The replicated state machine of one KV region: committed commands in, engine writes out.

Owns `KvStateMachine`. It does I/O only through the `Engine` it is given: reads (to
evaluate commands and answer queries) and, for `compact_history` and `restore`, writes.
Applying a command never writes: it stages the effects into the caller's
`WriteBatch`. Key layout and records: docs/formats/kv.md §2-§4; commands: §1;
snapshot chunks: §5. Semantics follow etcd's v3 KV API where they overlap.

Revisions. The revision of a change is the Raft log index of the entry that made it;
a region's revision is the index of the last entry that changed anything. A key's
`KeyMeta` holds the revision that created it, the one that last changed it, and its
version (puts since creation). Every change is also written to the event history,
keyed by (revision, sequence), which `events()` reads for watches until
`compact_history()` drops it.

The host contract (the Raft host calls these; nothing here is thread-safe):

1. At start-up, `applied_index()` says where applying resumes. Entries at or below
   it are answered `Skipped` and stage nothing, so replaying the log after a crash is
   harmless. Every index must be passed in order; an entry that is not a KV command
   (a leader's empty entry, a configuration change) is passed as `b""`, a no-op.
2. `apply(index, data, batch)` for each committed entry, any number of them into one
   batch. Each apply stages its effects *and* the new applied index, so writing the
   batch makes them durable together: a crash loses either both or neither. Applies
   into one batch see the effects of earlier ones (an overlay of pending writes).
3. The host writes the batch (`engine.write(batch)`, with whatever else it stages
   there) and then calls `batch_written()`, which drops the overlay. If the batch is
   *not* written (an error), it calls `batch_discarded()`, which also forgets the
   pending applied index, so the same entries can be applied again.
4. Reads (`get`, `scan`, `events`, the metadata accessors) see only written batches.
   `compact_history`, `snapshot_chunks` and `restore` require that no batch is pending.

A command that fails to decode raises `CommandError` before anything is staged. A
committed command is built from validated records, so this is a damaged log entry or
a command from a newer format version: the host must stop applying to this region
(every replica would raise the same), never skip the entry.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

from atoll.base.errors import InvariantError, invariant
from atoll.engine.api import Engine, ReadView, WriteBatch
from atoll.kv.command import (
    Command,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    DeleteRange,
    Get,
    Noop,
    Put,
    Txn,
    TxnOp,
    decode,
)
from atoll.kv.errors import Compacted, RestorePending, SnapshotError
from atoll.kv.layout import (
    META_APPLIED_INDEX,
    META_COMPACT_REVISION,
    META_RESTORE_PENDING,
    META_REVISION,
    SEQUENCE_MAX,
    Event,
    EventKind,
    KeyMeta,
    KeyValue,
    RegionKeys,
    decode_event_record,
    decode_key_record,
    decode_u64,
    encode_event_record,
    encode_key_record,
    encode_u64,
)
from atoll.kv.results import (
    ApplyResult,
    DeleteRangeResult,
    DeleteResult,
    GetResult,
    NoopResult,
    OpResult,
    PutResult,
    Skipped,
    TxnResult,
)
from atoll.kv.snapshot_format import SnapshotChunk, cut_chunks, decode_chunk, split_chunks

SCAN_KEYS_MAX = 10_000  # per scan() call; page with a later start for more
SNAPSHOT_CHUNK_BYTES = 1024 * 1024  # the chunk size of snapshot_data()
EVENTS_MAX = 10_000  # per events() call; continue from the last event's (revision, sequence + 1)


class KvStateMachine:
    """One region's KV state in `engine`, under the region's keys (docs/formats/kv.md §2)."""

    def __init__(self, engine: Engine, region_id: int) -> None:
        self._engine = engine
        self._keys = RegionKeys(region_id)
        self.region_id = region_id
        # Pending writes of the batch being filled: engine key -> key record, or None
        # for a delete. Only data keys; events and metadata are never read by apply.
        self._pending: dict[bytes, bytes | None] = {}
        self._applied_index = 0  # including the pending batch
        self._revision = 0  # including the pending batch
        # The same two as of the last written batch: what readers see. Kept in memory
        # (the host and every response ask for them), loaded again after a restore.
        self._written_applied_index = 0
        self._written_revision = 0
        self._restore_pending = False
        self._load()

    def _load(self) -> None:
        self._pending.clear()
        self._written_applied_index = self._read_meta(self._engine, META_APPLIED_INDEX)
        self._written_revision = self._read_meta(self._engine, META_REVISION)
        self._applied_index = self._written_applied_index
        self._revision = self._written_revision
        self._restore_pending = self.restore_pending()

    # ------------------------------------------------------------------ metadata

    def applied_index(self) -> int:
        """The index of the last applied entry in written batches (0: none)."""
        return self._written_applied_index

    def revision(self) -> int:
        """The index of the last written entry that changed anything (0: none)."""
        return self._written_revision

    def compact_revision(self) -> int:
        """Events before this revision are gone; 0 if nothing was ever compacted."""
        return self._read_meta(self._engine, META_COMPACT_REVISION)

    def restore_pending(self) -> bool:
        """Whether a snapshot restore started and did not finish (see `restore`)."""
        return self._engine.get(self._keys.meta_key(META_RESTORE_PENDING)) is not None

    def _read_meta(self, view: ReadView, name: bytes) -> int:
        key = self._keys.meta_key(name)
        record = view.get(key)
        if record is None:
            return 0
        value = decode_u64(record)
        if value is None:
            raise self._keys.corrupt(f"malformed {name.decode()} record", key)
        return value

    # --------------------------------------------------------------------- apply

    def apply(self, index: int, data: bytes, batch: WriteBatch) -> ApplyResult:
        """Stage the effects of the committed entry at `index` (command bytes `data`,
        `b""` for a no-op) and the new applied index into `batch`; see the module
        docstring for the contract."""
        if self._restore_pending:
            raise RestorePending(self.region_id)
        if index <= self._applied_index:
            return Skipped(index)
        invariant(
            index == self._applied_index + 1,
            f"kv region {self.region_id}: applied index {self._applied_index}, "
            f"asked to apply {index}",
        )
        command: Command = decode(data) if data else Noop()
        entry = _EntryApply(self._engine, self._keys, self._pending, index, batch)
        result = entry.run(command)
        batch.put(self._keys.meta_key(META_APPLIED_INDEX), encode_u64(index))
        if entry.sequence:
            batch.put(self._keys.meta_key(META_REVISION), encode_u64(index))
            self._revision = index
        self._applied_index = index
        return result

    def batch_written(self) -> None:
        """The host wrote the batch the applies since the last call staged into."""
        self._pending.clear()
        self._written_applied_index = self._applied_index
        self._written_revision = self._revision

    def batch_discarded(self) -> None:
        """The host dropped that batch unwritten: forget what it staged."""
        self._load()

    def _decode_key_record(self, data_key: bytes, record: bytes) -> tuple[bytes, KeyMeta]:
        return _decode_key_record(self._keys, data_key, record)

    # --------------------------------------------------------------------- reads

    def get(self, key: bytes) -> tuple[bytes, KeyMeta] | None:
        """The value and meta of `key`, or None if it is missing (an empty value is
        `b""`, never None)."""
        data_key = self._keys.data_key(key)
        record = self._engine.get(data_key)
        return None if record is None else self._decode_key_record(data_key, record)

    def scan(
        self,
        start: bytes = b"",
        end: bytes | None = None,
        limit: int = SCAN_KEYS_MAX,
        reverse: bool = False,
    ) -> list[KeyValue]:
        """Up to `limit` keys in `[start, end)` (`end=None`: to the end), ascending, or
        descending from the end of the range if `reverse`."""
        _check_limit("limit", limit, SCAN_KEYS_MAX)
        if end is not None and end <= start:
            return []
        lo, hi = self._keys.data_range(start, end)
        found = []
        for data_key, record in itertools.islice(self._engine.scan(lo, hi, reverse), limit):
            value, meta = self._decode_key_record(data_key, record)
            found.append(KeyValue(self._keys.user_key(data_key), value, meta))
        return found

    def events(
        self,
        from_revision: int,
        prefix: bytes = b"",
        limit: int = EVENTS_MAX,
        from_sequence: int = 0,
    ) -> list[Event]:
        """Up to `limit` changes to keys starting with `prefix`, from `(from_revision,
        from_sequence)` on, in the order they were applied. Raises `Compacted` if
        `from_revision` is before the kept history. Cost is proportional to all events
        scanned, matching or not."""
        if type(from_revision) is not int or from_revision < 1:
            raise ValueError(f"from_revision must be an int >= 1, not {from_revision!r}")
        _check_limit("limit", limit, EVENTS_MAX)
        if type(from_sequence) is not int or not 0 <= from_sequence <= SEQUENCE_MAX:
            raise ValueError(f"from_sequence must be an int in [0, 2**32), not {from_sequence!r}")
        compact = self.compact_revision()
        if from_revision < compact:
            raise Compacted(compact_revision=compact, requested_revision=from_revision)
        found: list[Event] = []
        start = self._keys.event_key(from_revision, from_sequence)
        for event_key, record in self._engine.scan(start, self._keys.event_end):
            revision, sequence = self._keys.parse_event_key(event_key)
            event = decode_event_record(revision, sequence, record)
            if event is None:
                raise self._keys.corrupt("malformed event record", event_key)
            if event.key.startswith(prefix):
                found.append(event)
                if len(found) == limit:
                    break
        return found

    # ------------------------------------------------------------ history, snapshots

    def compact_history(self, revision: int) -> None:
        """Drop the events before `revision` (at most the applied index plus one) and
        record it as the compact revision; an older `revision` does nothing. Local to
        this replica: history is kept as long as the Raft log is, and each replica
        compacts its log on its own."""
        invariant(not self._pending, "compact_history with a batch pending")
        limit = self.applied_index() + 1
        if type(revision) is not int or not 1 <= revision <= limit:
            raise ValueError(f"revision must be an int in [1, {limit}], not {revision!r}")
        if revision <= self.compact_revision():
            return
        batch = WriteBatch()
        batch.delete_range(self._keys.event_start, self._keys.event_key(revision, 0))
        batch.put(self._keys.meta_key(META_COMPACT_REVISION), encode_u64(revision))
        self._engine.write(batch)

    def snapshot_chunks(self, engine_snapshot: ReadView, chunk_bytes: int) -> Iterator[bytes]:
        """The region's keys and metadata as of `engine_snapshot` (taken from this
        state machine's engine after its last batch was written), as encoded chunks
        whose bodies hold about `chunk_bytes` each (docs/formats/kv.md §5). The event
        history is not shipped: a restored replica's history starts after the
        snapshot's applied index."""
        invariant(not self._pending, "snapshot_chunks with a batch pending")
        if engine_snapshot.get(self._keys.meta_key(META_RESTORE_PENDING)) is not None:
            raise RestorePending(self.region_id)
        applied = self._read_meta(engine_snapshot, META_APPLIED_INDEX)
        revision = self._read_meta(engine_snapshot, META_REVISION)
        keys = self._keys
        records = (
            (keys.user_key(data_key), record)
            for data_key, record in engine_snapshot.scan(keys.keys_prefix, keys.keys_end)
        )
        return cut_chunks(self.region_id, applied, revision, records, chunk_bytes)

    def snapshot_data(self, engine_snapshot: ReadView) -> bytes:
        """The whole snapshot as one byte string: the concatenated chunks of
        `snapshot_chunks(engine_snapshot, SNAPSHOT_CHUNK_BYTES)`, for a host that keeps
        a snapshot in one piece; `restore` accepts it as it is."""
        return b"".join(self.snapshot_chunks(engine_snapshot, SNAPSHOT_CHUNK_BYTES))

    def restore(self, chunks: Iterable[bytes] | bytes) -> None:
        """Replace the region's keys, metadata and history with the snapshot in `chunks`
        (the chunks, or their concatenation as one `bytes`). Each chunk is written as
        it arrives; the first write also wipes the region and marks it
        restore-pending, the last clears the mark (and is synced); `applied_index()`
        is then the snapshot's. If the stream is bad or cut short, `SnapshotError` is
        raised and the region stays restore-pending (`apply` refuses) until a complete
        restore succeeds. Nothing is wiped if the first chunk is already bad."""
        invariant(not self._pending, "restore with a batch pending")
        if isinstance(chunks, bytes):
            chunks = split_chunks(chunks)
        first: SnapshotChunk | None = None
        last_key: bytes | None = None
        for position, data in enumerate(chunks):
            chunk = decode_chunk(data, position)
            if first is None:
                self._check_chunk(chunk, chunk, position)
                first = chunk
                self._wipe()
            else:
                self._check_chunk(first, chunk, position)
            batch = WriteBatch()
            last_key = self._stage_records(chunk, last_key, batch)
            if chunk.last:
                self._stage_restored_meta(chunk, batch)
            self._engine.write(batch, sync=chunk.last)
            if chunk.last:
                self._load()
                return
        raise SnapshotError("the stream ended before its last chunk")

    def _check_chunk(self, first: SnapshotChunk, chunk: SnapshotChunk, position: int) -> None:
        if chunk.region_id != self.region_id:
            raise SnapshotError(
                f"chunk of region {chunk.region_id}, restoring region {self.region_id}",
                chunk_index=position,
            )
        if chunk.chunk_index != position:
            raise SnapshotError(f"chunk numbered {chunk.chunk_index}", chunk_index=position)
        if (chunk.applied_index, chunk.revision) != (first.applied_index, first.revision):
            raise SnapshotError(
                f"chunk of the snapshot at index {chunk.applied_index}, "
                f"the stream began with index {first.applied_index}",
                chunk_index=position,
            )
        if chunk.revision > chunk.applied_index:
            raise SnapshotError(
                f"revision {chunk.revision} after applied index {chunk.applied_index}",
                chunk_index=position,
            )

    def _wipe(self) -> None:
        batch = WriteBatch()
        batch.delete_range(self._keys.data_start, self._keys.data_end)
        batch.delete_range(self._keys.event_start, self._keys.event_end)
        batch.put(self._keys.meta_key(META_RESTORE_PENDING), b"")
        self._engine.write(batch)
        self._restore_pending = True

    def _stage_records(
        self, chunk: SnapshotChunk, last_key: bytes | None, batch: WriteBatch
    ) -> bytes | None:
        for key, record in chunk.records:
            if last_key is not None and key <= last_key:
                raise SnapshotError("keys out of order", chunk_index=chunk.chunk_index)
            decoded = decode_key_record(record)
            if decoded is None or decoded[1].mod_revision > chunk.revision:
                raise SnapshotError(
                    f"bad key record for key {key.hex()}", chunk_index=chunk.chunk_index
                )
            batch.put(self._keys.data_key(key), record)
            last_key = key
        return last_key

    def _stage_restored_meta(self, chunk: SnapshotChunk, batch: WriteBatch) -> None:
        meta = self._keys.meta_key
        batch.put(meta(META_APPLIED_INDEX), encode_u64(chunk.applied_index))
        batch.put(meta(META_REVISION), encode_u64(chunk.revision))
        batch.put(meta(META_COMPACT_REVISION), encode_u64(chunk.applied_index + 1))
        batch.delete(meta(META_RESTORE_PENDING))


class _EntryApply:
    """Applies one entry's command: evaluates against the engine plus the pending
    overlay, stages into the batch and the overlay, and numbers the changes."""

    __slots__ = ("batch", "engine", "index", "keys", "pending", "sequence")

    def __init__(
        self,
        engine: Engine,
        keys: RegionKeys,
        pending: dict[bytes, bytes | None],
        index: int,
        batch: WriteBatch,
    ) -> None:
        self.engine = engine
        self.keys = keys
        self.pending = pending  # the state machine's overlay, updated in place
        self.index = index
        self.batch = batch
        self.sequence = 0  # changes made so far by this entry

    def load(self, key: bytes) -> tuple[bytes, KeyMeta] | None:
        """`key`'s value and meta as of the previous applies, pending ones included."""
        data_key = self.keys.data_key(key)
        if data_key in self.pending:
            record = self.pending[data_key]
        else:
            record = self.engine.get(data_key)
        return None if record is None else _decode_key_record(self.keys, data_key, record)

    def run(self, command: Command) -> ApplyResult:
        if isinstance(command, Txn):
            return self.txn(command)
        if isinstance(command, Noop):
            return NoopResult()
        return self.write(command)

    def op(self, op: TxnOp) -> OpResult:
        if isinstance(op, Get):
            current = self.load(op.key)
            return GetResult(None, None) if current is None else GetResult(*current)
        return self.write(op)

    def write(self, op: Put | Delete | DeleteRange) -> PutResult | DeleteResult | DeleteRangeResult:
        if isinstance(op, Put):
            return self.put(op.key, op.value)
        if isinstance(op, Delete):
            return self.delete(op.key)
        return self.delete_range(op.start, op.end)

    def txn(self, txn: Txn) -> TxnResult:
        succeeded = all(self.holds(compare) for compare in txn.compares)
        branch = txn.success if succeeded else txn.failure
        return TxnResult(succeeded, tuple(self.op(op) for op in branch))

    def holds(self, compare: Compare) -> bool:
        current = self.load(compare.key)
        if compare.target is CompareTarget.VALUE:
            equal = current is not None and current[0] == compare.operand
            return equal if compare.op is CompareOp.EQUAL else not equal
        if compare.target is CompareTarget.EXISTS:
            equal = (current is not None) == compare.operand
            return equal if compare.op is CompareOp.EQUAL else not equal
        meta = KeyMeta(0, 0, 0) if current is None else current[1]
        actual = meta.version if compare.target is CompareTarget.VERSION else meta.mod_revision
        return _compare_numbers(actual, compare.op, compare.operand)

    def put(self, key: bytes, value: bytes) -> PutResult:
        current = self.load(key)
        if current is None:
            meta, prev_revision = KeyMeta(self.index, self.index, 1), 0
        else:
            old = current[1]
            meta, prev_revision = (
                KeyMeta(old.create_revision, self.index, old.version + 1),
                old.mod_revision,
            )
        self.stage(key, encode_key_record(value, meta))
        self.event(EventKind.PUT, key, value, meta)
        return PutResult(prev_revision, current)

    def delete(self, key: bytes) -> DeleteResult:
        current = self.load(key)
        if current is None:
            return DeleteResult(False)
        self.stage(key, None)
        self.event(EventKind.DELETE, key, b"", KeyMeta(0, self.index, 0))
        return DeleteResult(True, current)

    def delete_range(self, start: bytes, end: bytes | None) -> DeleteRangeResult:
        if end is not None and end <= start:
            return DeleteRangeResult(0)
        keys = self.keys
        lo, hi = keys.data_range(start, end)
        live = {data_key for data_key, _ in self.engine.scan(lo, hi)}
        for data_key, record in self.pending.items():
            if lo <= data_key < hi:
                if record is None:
                    live.discard(data_key)
                else:
                    live.add(data_key)
        for data_key in sorted(live):
            key = keys.user_key(data_key)
            self.stage(key, None)
            self.event(EventKind.DELETE, key, b"", KeyMeta(0, self.index, 0))
        return DeleteRangeResult(len(live))

    def stage(self, key: bytes, record: bytes | None) -> None:
        data_key = self.keys.data_key(key)
        if record is None:
            self.batch.delete(data_key)
        else:
            self.batch.put(data_key, record)
        self.pending[data_key] = record

    def event(self, kind: EventKind, key: bytes, value: bytes, meta: KeyMeta) -> None:
        invariant(self.sequence <= SEQUENCE_MAX, f"entry {self.index} made over 2**32 changes")
        event_key = self.keys.event_key(self.index, self.sequence)
        self.batch.put(event_key, encode_event_record(kind, key, value, meta))
        self.sequence += 1


def _compare_numbers(actual: int, op: CompareOp, operand: bytes | int | bool) -> bool:
    if op is CompareOp.EQUAL:
        return actual == operand
    if op is CompareOp.NOT_EQUAL:
        return actual != operand
    if not isinstance(operand, int):  # Compare's constructor rules this out
        raise InvariantError(f"number compare with operand {operand!r}")
    return actual > operand if op is CompareOp.GREATER else actual < operand


def _decode_key_record(keys: RegionKeys, data_key: bytes, record: bytes) -> tuple[bytes, KeyMeta]:
    decoded = decode_key_record(record)
    if decoded is None:
        raise keys.corrupt("malformed key record", data_key)
    return decoded


def _check_limit(name: str, value: object, maximum: int) -> None:
    if type(value) is not int or not 1 <= value <= maximum:
        raise ValueError(f"{name} must be an int in [1, {maximum}], not {value!r}")


__all__ = ["EVENTS_MAX", "SCAN_KEYS_MAX", "SNAPSHOT_CHUNK_BYTES", "KvStateMachine"]
