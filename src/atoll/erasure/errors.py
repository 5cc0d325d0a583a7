"""Expected failures of the erasure-coding layer (shared/STYLE.md §7). Pure: no I/O.

Where a built-in category applies the error inherits it too, so callers may catch
either. Bad stored bytes are `ShardCorrupt`, an `atoll.base.errors.CorruptionError`
carrying the file, the offset, the expected and actual CRC-32C and, for a data block,
the block index (docs/formats/shard_file.md §4). The code that finds corruption
reports it; the caller decides to reconstruct the shard from others, quarantine the
file, or fail.
"""

from __future__ import annotations

from atoll.base.errors import AtollError, CorruptionError


class ErasureError(AtollError):
    """Root of erasure-coding failures."""


class InvalidProfile(ErasureError, ValueError):
    """A `k`, `m` or block size outside the supported limits (stripe.K_MAX, stripe.M_MAX,
    stripe.BLOCK_SIZE_MAX_BYTES)."""


class InvalidRange(ErasureError, ValueError):
    """A byte range, stripe index or shard index outside the part or the profile."""


class CodecUnavailable(ErasureError, RuntimeError):
    """The native Reed-Solomon library (ISA-L, as bundled by the pyeclib wheel) cannot
    be found or lacks a symbol this code calls."""


class NotEnoughShards(ErasureError, ValueError):
    """Fewer than `k` distinct shards were given to decode or reconstruct from."""

    def __init__(self, have: list[int], k: int, m: int) -> None:
        super().__init__(
            f"{k}+{m} needs {k} distinct shards to decode, got {len(have)}: indexes {have}"
        )
        self.have = have
        self.k = k
        self.m = m


class ShardLengthError(ErasureError, ValueError):
    """A shard or output buffer has the wrong length for the stripe being coded."""


class HeaderFieldError(ErasureError, ValueError):
    """A shard file header cannot be written: a field is out of range (a key longer than
    the limit, a shard index not below `k + m`, ...)."""


class ShardWriteError(ErasureError, ValueError):
    """Blocks given to a `ShardWriter` do not fit the header's layout: a block of the
    wrong size, more blocks than the data length allows, or a finish with too few."""


class ShardCorrupt(ErasureError, CorruptionError):
    """Stored bytes of a shard file fail a check. Never normal: a shard file becomes
    visible only after it was written completely and fsynced.

    `block` is the index of the data block whose CRC-32C failed (the stripe index), or
    None when the header itself is bad. `expected`/`actual` are the stored and the
    computed CRC when a checksum failed.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str,
        block: int | None = None,
        offset: int | None = None,
        expected: int | None = None,
        actual: int | None = None,
    ) -> None:
        where = f"block {block}: " if block is not None else ""
        super().__init__(
            f"shard file {where}{message}",
            file=file,
            offset=offset,
            expected=expected,
            actual=actual,
        )
        self.block = block


class ShardTruncated(ShardCorrupt):
    """A shard file is shorter than its header says: a torn or truncated file. `block`
    is the first block that is incomplete."""


class FormatError(ShardCorrupt):
    """A shard file's header does not parse: wrong magic, an unknown version or code
    (corrupt, or written by newer code), a header CRC mismatch, impossible field values,
    or a file whose size disagrees with the header in a way that is not a truncation."""
