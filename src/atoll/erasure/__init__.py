"""Erasure coding: the Reed-Solomon codec, the stripe layout and the shard file format
(shared/DESIGN.md §4; docs/formats/shard_file.md).

- `stripe` (pure): how a part is cut into stripes of `block_size` bytes and each
  stripe into `k` data shards; which stripes and shards a byte range touches.
- `codec`: `Codec(k, m)` over ISA-L (the library the pyeclib wheel bundles) and
  `StripeCodec`, which encodes and decodes one stripe at a time in reused buffers.
- `shard_format` (pure): the bytes of a shard file (header, blocks, CRC-32C).
- `shard_file`: `ShardWriter` (temp file, fsync, rename) and `ShardReader` (every
  block verified).
"""

from atoll.erasure.codec import COMBINE_SOURCES_MAX, Codec, StripeCodec, combine, load_isal
from atoll.erasure.errors import (
    CodecUnavailable,
    ErasureError,
    FormatError,
    HeaderFieldError,
    InvalidProfile,
    InvalidRange,
    NotEnoughShards,
    ShardCorrupt,
    ShardLengthError,
    ShardTruncated,
    ShardWriteError,
)
from atoll.erasure.shard_file import ShardReader, ShardWriter, is_temp_name
from atoll.erasure.shard_format import DATA_LENGTH_UNFINISHED, ShardHeader
from atoll.erasure.stripe import BLOCK_SIZE_DEFAULT_BYTES, Extent, StripeLayout

__all__ = [
    "BLOCK_SIZE_DEFAULT_BYTES",
    "COMBINE_SOURCES_MAX",
    "DATA_LENGTH_UNFINISHED",
    "Codec",
    "CodecUnavailable",
    "ErasureError",
    "Extent",
    "FormatError",
    "HeaderFieldError",
    "InvalidProfile",
    "InvalidRange",
    "NotEnoughShards",
    "ShardCorrupt",
    "ShardHeader",
    "ShardLengthError",
    "ShardReader",
    "ShardTruncated",
    "ShardWriteError",
    "ShardWriter",
    "StripeCodec",
    "StripeLayout",
    "combine",
    "is_temp_name",
    "load_isal",
]
