"""Writes one SSTable from sorted, column-wise entries (docs/formats.md §3). Does I/O.

Used by flushes and compactions (in worker processes). The file is written under its
final name, fsynced, and only then named in a manifest edit; an unreferenced file left
by a crash is deleted when the engine next opens.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from crc32c import crc32c

from atoll.engine.bloom import build_filter
from atoll.engine.sstable_format import (
    FILE_HEADER,
    HANDLE,
    SST_FORMAT_VERSION,
    SST_MAGIC,
    block_cuts,
    encode_block,
    encode_footer,
)


@dataclass(frozen=True)
class TableInfo:
    """What a manifest edit records about a new table."""

    number: int
    size: int
    smallest: bytes
    largest: bytes
    entries: int
    smallest_seq: int
    largest_seq: int


def write_table(
    path: str,
    number: int,
    keys: list[bytes],
    seqs: list[int],
    kinds: bytes,
    values: list[bytes],
    *,
    block_size: int,
    bloom_bits_per_key: int,
) -> TableInfo:
    """Write entries (sorted by key asc, seq desc; at least one) to `path` and fsync it."""
    parts: list[bytes] = [FILE_HEADER.pack(SST_MAGIC, SST_FORMAT_VERSION)]
    offset = len(parts[0])
    index_keys: list[bytes] = []
    index_seqs: list[int] = []
    index_values: list[bytes] = []
    start = 0
    for end in block_cuts(keys, values, block_size):
        block = encode_block(keys[start:end], seqs[start:end], kinds[start:end], values[start:end])
        parts.append(block)
        index_keys.append(keys[end - 1])
        index_seqs.append(seqs[end - 1])
        index_values.append(HANDLE.pack(offset, len(block)))
        offset += len(block)
        start = end
    bloom = build_filter(keys, bloom_bits_per_key)
    bloom_block = bloom + crc32c(bloom).to_bytes(4, "little")
    parts.append(bloom_block)
    bloom_handle = (offset, len(bloom_block))
    offset += len(bloom_block)
    index_block = encode_block(index_keys, index_seqs, b"\x01" * len(index_keys), index_values)
    parts.append(index_block)
    index_handle = (offset, len(index_block))
    offset += len(index_block)
    parts.append(encode_footer(index_handle, bloom_handle, len(keys)))
    data = b"".join(parts)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:])
        os.fsync(fd)
    finally:
        os.close(fd)
    return TableInfo(
        number=number,
        size=len(data),
        smallest=keys[0],
        largest=keys[-1],
        entries=len(keys),
        smallest_seq=min(seqs),
        largest_seq=max(seqs),
    )
