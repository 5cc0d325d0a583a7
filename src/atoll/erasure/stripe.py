"""Stripe layout: how an object part is cut into stripes and shards. Pure: no I/O, no
clock, no randomness.

Implements docs/formats/shard_file.md §1 (stripe layout) for shared/DESIGN.md §4. A
part of `data_length` bytes is cut into stripes of `block_size` bytes (the last one may
be shorter). A stripe of `L` bytes is split into `k` data shards of
`S = ceil(L / k)` bytes each: data shard `i` holds stripe bytes `[i*S, (i+1)*S)`, and
the bytes past `L` (at most `k - 1` of them, in the last data shards) are zeros.
The codec adds `m` parity shards of `S` bytes. Shard `i` of stripe `j` is block `j` of
the shard file of shard index `i`.

ISA-L needs no alignment or padding of its own (any length, any address; its SIMD
kernels handle the tail), so `S` is not rounded up: a stripe costs exactly
`(k + m) * ceil(L / k)` bytes of shards.

Everything here is integer arithmetic and memoryview slicing; `join` copies with
slice assignment (memcpy), never byte by byte.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

from atoll.erasure.errors import InvalidProfile, InvalidRange, ShardLengthError

K_MAX = 32
"""Largest `k`. ISA-L's Cauchy matrices allow `k + m <= 256`; the shard file header
holds `k` and `m` in a byte each. Pools use at most 8+3."""

M_MAX = 16
"""Largest `m`."""

BLOCK_SIZE_DEFAULT_BYTES = 4 * 1024 * 1024
BLOCK_SIZE_MAX_BYTES = 64 * 1024 * 1024
"""Largest stripe: ISA-L takes shard lengths as a C `int`, and a reader holds a few
blocks in memory at once."""

DATA_LENGTH_MAX_BYTES = 5 * 1024**4
"""Largest part (or object) one set of shard files may hold: S3's 5 TiB object limit."""

ReadableBuffer = bytes | bytearray | memoryview
WritableBuffer = bytearray | memoryview


@dataclasses.dataclass(frozen=True, slots=True)
class Extent:
    """A piece of a byte range that lies in one data shard of one stripe."""

    stripe: int
    """Stripe index, which is also the block index in the shard file."""
    shard: int
    """Data shard index, `0 <= shard < k`."""
    shard_offset: int
    """Offset of the piece inside the shard's block."""
    length: int
    object_offset: int
    """Offset of the piece in the part."""


def check_profile(k: int, m: int) -> None:
    """Raise `InvalidProfile` unless `1 <= k <= K_MAX` and `0 <= m <= M_MAX`."""
    if not (1 <= k <= K_MAX and 0 <= m <= M_MAX):
        raise InvalidProfile(f"erasure profile {k}+{m} outside 1..{K_MAX} + 0..{M_MAX}")


@dataclasses.dataclass(frozen=True, slots=True)
class StripeLayout:
    """The stripe arithmetic of one `k+m` profile and block size."""

    k: int
    m: int
    block_size: int = BLOCK_SIZE_DEFAULT_BYTES

    def __post_init__(self) -> None:
        check_profile(self.k, self.m)
        if not 1 <= self.block_size <= BLOCK_SIZE_MAX_BYTES:
            raise InvalidProfile(
                f"block size {self.block_size} outside 1..{BLOCK_SIZE_MAX_BYTES} bytes"
            )

    @property
    def n(self) -> int:
        """Shards per stripe, `k + m`."""
        return self.k + self.m

    @property
    def full_shard_bytes(self) -> int:
        """The shard size of a whole stripe: every block of a shard file but the last."""
        return self.shard_bytes(self.block_size)

    def shard_bytes(self, stripe_length: int) -> int:
        """The size of each of the `k + m` shards of a stripe of `stripe_length` bytes."""
        _check_length(stripe_length, self.block_size, "stripe length")
        return -(-stripe_length // self.k)

    # -- a part: stripes and blocks ----------------------------------------------------

    def stripe_count(self, data_length: int) -> int:
        """Stripes in a part of `data_length` bytes (0 for an empty part); also the
        number of blocks in each of its shard files."""
        _check_length(data_length, DATA_LENGTH_MAX_BYTES, "data length")
        return -(-data_length // self.block_size)

    def stripe_length(self, data_length: int, stripe: int) -> int:
        """The length of stripe `stripe` of a part of `data_length` bytes."""
        count = self.stripe_count(data_length)
        if not 0 <= stripe < count:
            raise InvalidRange(
                f"stripe {stripe} outside 0..{count - 1} of a {data_length}-byte part"
            )
        return min(self.block_size, data_length - stripe * self.block_size)

    def block_bytes(self, data_length: int, stripe: int) -> int:
        """The size of block `stripe` of every shard file of the part."""
        return self.shard_bytes(self.stripe_length(data_length, stripe))

    def last_block_bytes(self, data_length: int) -> int:
        """The size of the last block of the part's shard files (0 if it has none)."""
        count = self.stripe_count(data_length)
        return self.block_bytes(data_length, count - 1) if count else 0

    def shard_data_bytes(self, data_length: int) -> int:
        """Shard bytes (without framing) in each shard file of the part."""
        count = self.stripe_count(data_length)
        if count == 0:
            return 0
        return (count - 1) * self.full_shard_bytes + self.last_block_bytes(data_length)

    # -- ranges ----------------------------------------------------------------------

    def stripes_for_range(self, data_length: int, offset: int, length: int) -> range:
        """The stripes (blocks) that bytes `[offset, offset + length)` of the part touch."""
        _check_range(data_length, offset, length)
        if length == 0:
            return range(0)
        return range(offset // self.block_size, (offset + length - 1) // self.block_size + 1)

    def extents(self, data_length: int, offset: int, length: int) -> Iterator[Extent]:
        """The pieces of bytes `[offset, offset + length)` of the part, in order, one per
        (stripe, data shard) they touch. Lazy, so a long range costs no memory."""
        for stripe in self.stripes_for_range(data_length, offset, length):
            stripe_start = stripe * self.block_size
            stripe_length = min(self.block_size, data_length - stripe_start)
            shard_size = self.shard_bytes(stripe_length)
            start = max(offset, stripe_start) - stripe_start
            end = min(offset + length, stripe_start + stripe_length) - stripe_start
            while start < end:
                shard, shard_offset = divmod(start, shard_size)
                piece = min(end - start, shard_size - shard_offset)
                yield Extent(stripe, shard, shard_offset, piece, stripe_start + start)
                start += piece

    # -- one stripe: cut and join -------------------------------------------------------

    def data_span(self, stripe_length: int, shard: int) -> tuple[int, int]:
        """The stripe bytes `[start, end)` that data shard `shard` holds; the rest of the
        shard (`shard_bytes(stripe_length) - (end - start)` bytes) is zero padding."""
        if not 0 <= shard < self.k:
            raise InvalidRange(f"data shard {shard} outside 0..{self.k - 1}")
        size = self.shard_bytes(stripe_length)
        return min(shard * size, stripe_length), min((shard + 1) * size, stripe_length)

    def cut(self, stripe: ReadableBuffer) -> list[memoryview]:
        """Views of the `k` data shards' bytes in `stripe` (no copy). A view shorter than
        `shard_bytes(len(stripe))` must be padded with zeros to that size to be coded."""
        view = memoryview(stripe).cast("B")
        return [view[a:b] for a, b in (self.data_span(len(view), i) for i in range(self.k))]

    def join(
        self, shards: Sequence[ReadableBuffer], stripe_length: int, out: WritableBuffer
    ) -> memoryview:
        """Copy the stripe's bytes out of its `k` data shards into `out`; returns the view
        of `out` that holds them (`stripe_length` bytes)."""
        size = self.shard_bytes(stripe_length)
        if len(shards) != self.k:
            raise ShardLengthError(f"join needs {self.k} data shards, got {len(shards)}")
        target = memoryview(out).cast("B")
        if len(target) < stripe_length:
            raise ShardLengthError(
                f"output of {len(target)} bytes is shorter than the {stripe_length}-byte stripe"
            )
        for i, shard in enumerate(shards):
            start, end = self.data_span(stripe_length, i)
            source = memoryview(shard).cast("B")
            if len(source) < end - start or len(source) > size:
                raise ShardLengthError(
                    f"data shard {i} has {len(source)} bytes; a {stripe_length}-byte stripe "
                    f"needs {end - start}..{size}"
                )
            target[start:end] = source[: end - start]
        return target[:stripe_length]


def _check_length(length: int, limit: int, what: str) -> None:
    if not 0 <= length <= limit:
        raise ShardLengthError(f"{what} {length} outside 0..{limit}")


def _check_range(data_length: int, offset: int, length: int) -> None:
    _check_length(data_length, DATA_LENGTH_MAX_BYTES, "data length")
    if offset < 0 or length < 0 or offset + length > data_length:
        raise InvalidRange(
            f"range [{offset}, {offset + length}) outside the {data_length}-byte part"
        )
