"""Helpers of the tests that put real shard files and drive the repairer: a part cut
and encoded as a gateway does it, a bit flipped on disk, and an object index that
holds nothing (for repairer code that never reads it)."""

from __future__ import annotations

from pathlib import Path

from atoll.erasure.codec import StripeCodec
from atoll.erasure.stripe import StripeLayout


def encode(data: bytes, layout: StripeLayout) -> list[list[bytes]]:
    """blocks[i][j]: shard i of stripe j, as a gateway makes them."""
    codec = StripeCodec(layout)
    blocks: list[list[bytes]] = [[] for _ in range(layout.n)]
    for start in range(0, len(data), layout.block_size):
        for i, shard in enumerate(codec.encode(data[start : start + layout.block_size])):
            blocks[i].append(bytes(shard))
    return blocks


def flip_bit(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x10]))


class NoIndex:
    """An object index with nothing in it (`repair.IndexStore`)."""

    async def get(self, key: bytes, serializable: bool = False) -> bytes | None:
        return None

    async def scan(
        self, start: bytes, end: bytes | None = None, limit: int = 1000
    ) -> tuple[list[tuple[bytes, bytes]], bool]:
        return [], False

    async def cas(self, key: bytes, expected: bytes | None, new: bytes | None) -> bool:
        return False
