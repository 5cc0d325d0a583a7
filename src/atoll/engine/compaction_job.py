"""Flush and compaction jobs: read inputs, merge, write SSTables. Does file I/O.

These functions run in worker processes (see `worker_pool`, which carries their
parameters and results as JSON lines) or inline, and share no state with the engine:
they take file paths and plain parameters and return `JobResult`s, which the engine
installs through a manifest edit. Running them in another process lets a compaction
use the second core instead of competing for the GIL.

Merging: the common case, when no live snapshot needs an older version, keeps only the
newest version of each key; it is done in C by feeding every input, oldest first, into
one dict and sorting its keys. Otherwise all versions are sorted (timsort merges the
sorted inputs) and one Python pass keeps, for each key, the newest version in each
interval between consecutive snapshots.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from dataclasses import dataclass, field
from operator import itemgetter

from atoll.base.errors import CorruptionError, invariant
from atoll.engine import native
from atoll.engine.api import OP_DELETE, OP_PUT
from atoll.engine.batch_codec import decode_batch
from atoll.engine.block_cache import BlockCache
from atoll.engine.log_format import FILE_KIND_WAL, WAL_MAGIC, parse_log
from atoll.engine.sstable_format import KIND_DELETE, cut_points, entry_sizes
from atoll.engine.sstable_reader import TableReader
from atoll.engine.sstable_writer import TableInfo, write_table


@dataclass(frozen=True)
class JobSpec:
    dirpath: str
    first_number: int  # output tables get numbers first_number, first_number + 1, ...
    max_outputs: int
    snapshots: tuple[int, ...]  # live snapshot sequence numbers, ascending
    bottom: bool  # nothing older lies below the output: tombstones may be dropped
    block_size: int
    bloom_bits_per_key: int
    target_table_bytes: int  # 0: one output table whatever its size (flush)


@dataclass
class JobResult:
    tables: list[TableInfo] = field(default_factory=list)
    bytes_read: int = 0
    bytes_written: int = 0
    entries_in: int = 0
    entries_out: int = 0


def table_path(dirpath: str, number: int) -> str:
    return os.path.join(dirpath, f"{number:06d}.sst")


def wal_path(dirpath: str, number: int) -> str:
    return os.path.join(dirpath, f"{number:06d}.log")


class Inputs:
    """Every input version, column by column, oldest first overall: a later index
    always holds a newer version of its key than an earlier one. Kinds use the SSTable
    codes (1 value, 0 deletion), which equal the WAL's OP_PUT and OP_DELETE; a
    deletion's value is b""."""

    def __init__(self) -> None:
        self.keys: list[bytes] = []
        self.seqs: list[int] = []
        self.kinds = bytearray()
        self.values: list[bytes] = []

    def __len__(self) -> int:
        return len(self.keys)


def read_wal(path: str, into: Inputs) -> int:
    """Append every batch of a sealed WAL segment to `into`; returns the file size."""
    with open(path, "rb") as f:
        data = f.read()
    for payload in parse_log(data, WAL_MAGIC, FILE_KIND_WAL, path, tail_may_tear=False).records:
        if native.decode_batch is not None:
            try:
                first_seq, ops = native.decode_batch(payload, into.keys, into.values)
            except ValueError as err:
                raise CorruptionError(str(err), file=path) from err
            if ops.count(OP_PUT) + ops.count(OP_DELETE) != len(ops):
                raise CorruptionError("unknown operation code in WAL batch", file=path)
        else:
            first_seq, ops, keys, values = decode_batch(payload, path)
            into.keys.extend(keys)
            into.values.extend(values)
        into.seqs.extend(range(first_seq, first_seq + len(ops)))
        into.kinds += ops
    return len(data)


def run_flush(spec: JobSpec, wal_paths: list[str]) -> JobResult:
    result = JobResult()
    inputs = Inputs()
    for path in wal_paths:
        result.bytes_read += read_wal(path, inputs)
    return _merge_and_write(spec, inputs, result)


def run_compaction(spec: JobSpec, tables: list[tuple[str, int]]) -> JobResult:
    """Merge tables given oldest first as (path, number) into the output level."""
    result = JobResult()
    inputs = Inputs()
    cache = BlockCache(0)
    for path, number in tables:
        reader = TableReader(path, number, cache)
        try:
            blocks = list(reader.all_raw_columns())
            result.bytes_read += reader.size
        finally:
            reader.close()
        # A table holds a key's versions newest first: reverse it whole.
        for keys, seqs, kinds, values in reversed(blocks):
            keys.reverse()
            seqs.reverse()
            values.reverse()
            inputs.keys.extend(keys)
            inputs.seqs.extend(seqs)
            inputs.kinds += kinds[::-1]
            inputs.values.extend(values)
    return _merge_and_write(spec, inputs, result)


def _merge_and_write(spec: JobSpec, inputs: Inputs, result: JobResult) -> JobResult:
    result.entries_in = len(inputs)
    if not result.entries_in:
        return result
    max_seq = max(inputs.seqs)
    if all(s >= max_seq for s in spec.snapshots):
        idx = _newest_only(inputs, spec.bottom)
    else:
        idx = _retain_for_snapshots(inputs, spec.snapshots, spec.bottom)
    result.entries_out = len(idx)
    if idx:
        _write_outputs(spec, inputs, idx, result)
    return result


def _newest_only(inputs: Inputs, bottom: bool) -> list[int]:
    """Indexes of the newest version of each key, in key order (all in C but one
    filter): a dict keeps the last index seen per key."""
    newest = dict(zip(inputs.keys, range(len(inputs)), strict=True))
    idx = list(map(newest.__getitem__, sorted(newest)))
    kinds = inputs.kinds
    if bottom and kinds.count(KIND_DELETE):
        idx = [i for i in idx if kinds[i]]
    return idx


def _retain_for_snapshots(inputs: Inputs, snapshots: tuple[int, ...], bottom: bool) -> list[int]:
    """Indexes to keep, in (key asc, seq desc) order: for each key, the newest version
    in each interval between consecutive snapshots."""
    keys, seqs, kinds = inputs.keys, inputs.seqs, inputs.kinds
    order = sorted(range(len(keys)), key=lambda i: (keys[i], -seqs[i]))
    kept: list[int] = []
    last_key: bytes | None = None
    last_stripe = -1
    for i in order:
        key = keys[i]
        stripe = bisect_left(snapshots, seqs[i])  # the oldest snapshot that can see it
        if key != last_key:
            last_key = key
        elif stripe == last_stripe:
            continue  # a newer version is visible to the same snapshots
        last_stripe = stripe
        if bottom and stripe == 0 and kinds[i] == KIND_DELETE:
            continue  # every reader sees this deletion, and nothing lies below it
        kept.append(i)
    return kept


def _write_outputs(spec: JobSpec, inputs: Inputs, idx: list[int], result: JobResult) -> None:
    pick = itemgetter(*idx)
    if len(idx) == 1:
        keys, seqs, values = [pick(inputs.keys)], [pick(inputs.seqs)], [pick(inputs.values)]
        kinds = bytes([pick(inputs.kinds)])
    else:
        keys, seqs, values = (
            list(pick(inputs.keys)),
            list(pick(inputs.seqs)),
            list(pick(inputs.values)),
        )
        kinds = bytes(pick(inputs.kinds))
    for lo, hi in _table_cuts(keys, values, spec.target_table_bytes):
        number = spec.first_number + len(result.tables)
        invariant(
            len(result.tables) < spec.max_outputs, f"job needs more than {spec.max_outputs} tables"
        )
        info = write_table(
            table_path(spec.dirpath, number),
            number,
            keys[lo:hi],
            seqs[lo:hi],
            kinds[lo:hi],
            values[lo:hi],
            block_size=spec.block_size,
            bloom_bits_per_key=spec.bloom_bits_per_key,
        )
        result.tables.append(info)
        result.bytes_written += info.size


def _table_cuts(keys: list[bytes], values: list[bytes], target: int) -> list[tuple[int, int]]:
    """Index ranges of output tables of about `target` bytes; never split a user key."""
    n = len(keys)
    if target <= 0:
        return [(0, n)] if n else []
    ranges: list[tuple[int, int]] = []
    lo = 0
    for cut in cut_points(entry_sizes(keys, values), target):
        while cut < n and keys[cut] == keys[cut - 1]:
            cut += 1  # versions of one key stay in one table
        if cut > lo:
            ranges.append((lo, cut))
            lo = cut
    return ranges
