"""How a read window's shard bytes are cut into per-stripe blocks (atoll.gateway.datapath):
the sizes each shard's blocks must have, and the fallback that splits bytes that did
not arrive one block per chunk."""

from __future__ import annotations

import pytest

from atoll.base.errors import InvariantError
from atoll.erasure import StripeLayout
from atoll.gateway.datapath import split_blocks, window_blocks

MIB = 1024 * 1024


def test_window_blocks_are_full_blocks_then_the_short_last_one() -> None:
    layout = StripeLayout(4, 2, MIB)  # stripes of 1 MiB: shard blocks of 256 KiB
    size = 2 * MIB + 10  # two full stripes, then one of 10 bytes
    full = layout.full_shard_bytes
    assert window_blocks(layout, size, range(3)) == [full, full, layout.shard_bytes(10)]
    assert window_blocks(layout, size, range(2, 3)) == [layout.shard_bytes(10)]
    assert window_blocks(layout, size, range(2)) == [full, full]


def test_split_blocks_cuts_views_in_order_without_copying() -> None:
    data = bytearray(b"abcdefghij")
    view = memoryview(data)
    blocks = split_blocks(view, [4, 4, 2])
    assert [bytes(b) for b in blocks] == [b"abcd", b"efgh", b"ij"]
    data[0:1] = b"X"  # views of the same buffer, not copies
    assert bytes(blocks[0]) == b"Xbcd"


def test_split_blocks_refuses_sizes_that_do_not_cover_the_bytes() -> None:
    with pytest.raises(InvariantError):
        split_blocks(memoryview(b"abcdef"), [4, 4])
