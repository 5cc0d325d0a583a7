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

from atoll.base.errors import invariant
from atoll.engine.api import OP_PUT
from atoll.engine.batch_codec import decode_batch
from atoll.engine.log_format import FILE_KIND_WAL, WAL_MAGIC, parse_log
from atoll.engine.sstable_format import KIND_DELETE, KIND_VALUE, cut_points, entry_sizes
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


Columns = tuple[list[bytes], list[int], list[bytes | None]]


def table_path(dirpath: str, number: int) -> str:
    return os.path.join(dirpath, f"{number:06d}.sst")


def wal_path(dirpath: str, number: int) -> str:
    return os.path.join(dirpath, f"{number:06d}.log")


def read_wal_columns(path: str) -> tuple[list[Columns], int]:
    """Every batch of a WAL segment as columns (oldest first), and the file size."""
    with open(path, "rb") as f:
        data = f.read()
    runs: list[Columns] = []
    for payload in parse_log(data, WAL_MAGIC, FILE_KIND_WAL, path, tail_may_tear=False).records:
        first_seq, ops, keys, values = decode_batch(payload, path)
        vals: list[bytes | None] = list(values)
        if ops.count(OP_PUT) != len(ops):
            vals = [v if op == OP_PUT else None for op, v in zip(ops, values, strict=True)]
        runs.append((keys, list(range(first_seq, first_seq + len(keys))), vals))
    return runs, len(data)


def run_flush(spec: JobSpec, wal_paths: list[str]) -> JobResult:
    result = JobResult()
    runs: list[Columns] = []
    for path in wal_paths:
        wal_runs, size = read_wal_columns(path)
        runs.extend(wal_runs)
        result.bytes_read += size
    return _merge_and_write(spec, runs, result)


def run_compaction(spec: JobSpec, inputs: list[tuple[str, int]]) -> JobResult:
    """Merge tables given oldest first as (path, number) into the output level."""
    from atoll.engine.block_cache import BlockCache

    result = JobResult()
    runs: list[Columns] = []
    cache = BlockCache(0)
    for path, number in inputs:
        reader = TableReader(path, number, cache)
        try:
            blocks = list(reader.all_columns())
            result.bytes_read += reader.size
        finally:
            reader.close()
        # Oldest version first within the table: reverse the whole table.
        for keys, seqs, values in reversed(blocks):
            keys.reverse()
            seqs.reverse()
            values.reverse()
            runs.append((keys, seqs, values))
    return _merge_and_write(spec, runs, result)


def _merge_and_write(spec: JobSpec, runs: list[Columns], result: JobResult) -> JobResult:
    """`runs` hold every input version, ordered oldest first overall."""
    result.entries_in = sum(len(r[0]) for r in runs)
    if not result.entries_in:
        return result
    max_seq = max(max(r[1]) for r in runs if r[1])
    if all(s >= max_seq for s in spec.snapshots):
        keys, seqs, values = _newest_only(runs, spec.bottom)
    else:
        keys, seqs, values = _retain_for_snapshots(runs, spec.snapshots, spec.bottom)
    result.entries_out = len(keys)
    _write_outputs(spec, keys, seqs, values, result)
    return result


def _newest_only(runs: list[Columns], bottom: bool) -> Columns:
    newest: dict[bytes, tuple[int, bytes | None]] = {}
    for keys, seqs, values in runs:
        newest.update(zip(keys, zip(seqs, values, strict=True), strict=True))
    keys = sorted(newest)
    entries = [newest[k] for k in keys]
    if bottom:
        kept = [i for i, e in enumerate(entries) if e[1] is not None]
        if len(kept) != len(keys):
            keys = [keys[i] for i in kept]
            entries = [entries[i] for i in kept]
    return keys, [e[0] for e in entries], [e[1] for e in entries]


def _retain_for_snapshots(runs: list[Columns], snapshots: tuple[int, ...], bottom: bool) -> Columns:
    everything: list[tuple[bytes, int, bytes | None]] = []
    for keys, seqs, values in runs:
        everything.extend(zip(keys, [-s for s in seqs], values, strict=True))
    everything.sort(key=lambda e: (e[0], e[1]))
    out_keys: list[bytes] = []
    out_seqs: list[int] = []
    out_values: list[bytes | None] = []
    last_key: bytes | None = None
    last_stripe = -1
    for key, nseq, value in everything:
        seq = -nseq
        stripe = bisect_left(snapshots, seq)  # the oldest snapshot that can see it
        if key != last_key:
            last_key = key
        elif stripe == last_stripe:
            continue  # a newer version is visible to the same snapshots
        last_stripe = stripe
        if value is None and bottom and stripe == 0:
            continue  # every reader sees this deletion, and nothing lies below it
        out_keys.append(key)
        out_seqs.append(seq)
        out_values.append(value)
    return out_keys, out_seqs, out_values


def _write_outputs(
    spec: JobSpec, keys: list[bytes], seqs: list[int], values: list[bytes | None], result: JobResult
) -> None:
    kinds = bytes(KIND_DELETE if v is None else KIND_VALUE for v in values)
    raw = [b"" if v is None else v for v in values]
    for lo, hi in _table_cuts(keys, raw, spec.target_table_bytes):
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
            raw[lo:hi],
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
