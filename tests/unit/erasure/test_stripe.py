"""Stripe arithmetic (atoll.erasure.stripe) against a naive model: the part cut byte by
byte in Python, on random lengths, ranges and profiles."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atoll.erasure.errors import InvalidProfile, InvalidRange, ShardLengthError
from atoll.erasure.stripe import (
    BLOCK_SIZE_DEFAULT_BYTES,
    BLOCK_SIZE_MAX_BYTES,
    K_MAX,
    M_MAX,
    StripeLayout,
)

PROFILES = [(1, 0), (1, 2), (2, 1), (4, 2), (8, 3), (3, 2), (5, 1)]

layouts = st.builds(
    StripeLayout,
    k=st.integers(1, 10),
    m=st.integers(0, 4),
    block_size=st.integers(1, 200),
)


@st.composite
def part_and_range(draw: st.DrawFn) -> tuple[StripeLayout, int, int, int]:
    layout = draw(layouts)
    data_length = draw(st.integers(0, 1500))
    offset = draw(st.integers(0, data_length))
    length = draw(st.integers(0, data_length - offset))
    return layout, data_length, offset, length


def naive_shards(layout: StripeLayout, data: bytes) -> list[list[bytes]]:
    """Per stripe, the k data shards, zero-padded, cut one byte at a time."""
    stripes = []
    for start in range(0, len(data), layout.block_size):
        stripe = data[start : start + layout.block_size]
        size = -(-len(stripe) // layout.k)
        shards = [bytearray(size) for _ in range(layout.k)]
        for position, byte in enumerate(stripe):
            shards[position // size][position % size] = byte
        stripes.append([bytes(s) for s in shards])
    return stripes


@settings(max_examples=300, deadline=None)
@given(layout=layouts, data_length=st.integers(0, 3000))
def test_stripes_and_blocks_add_up(layout: StripeLayout, data_length: int) -> None:
    count = layout.stripe_count(data_length)
    lengths = [layout.stripe_length(data_length, j) for j in range(count)]
    assert sum(lengths) == data_length
    assert all(length == layout.block_size for length in lengths[:-1])
    assert all(0 < length <= layout.block_size for length in lengths)
    blocks = [layout.block_bytes(data_length, j) for j in range(count)]
    assert sum(blocks) == layout.shard_data_bytes(data_length)
    assert all(b == layout.full_shard_bytes for b in blocks[:-1])
    assert layout.last_block_bytes(data_length) == (blocks[-1] if blocks else 0)
    # A shard holds its share, rounded up, and never a whole data shard's worth of padding.
    for length, block in zip(lengths, blocks, strict=True):
        assert block * layout.k >= length > (block - 1) * layout.k


@settings(max_examples=300, deadline=None)
@given(case=part_and_range(), seed=st.integers(0, 255))
def test_extents_reassemble_the_range_from_the_shards(
    case: tuple[StripeLayout, int, int, int], seed: int
) -> None:
    layout, data_length, offset, length = case
    data = bytes((seed + 7 * i) % 251 for i in range(data_length))
    shards = naive_shards(layout, data)
    extents = list(layout.extents(data_length, offset, length))
    pieces = [
        shards[e.stripe][e.shard][e.shard_offset : e.shard_offset + e.length] for e in extents
    ]
    assert b"".join(pieces) == data[offset : offset + length]
    # Contiguous, in order, non-empty, each inside one data shard.
    position = offset
    for e in extents:
        assert e.object_offset == position and e.length > 0
        assert 0 <= e.shard < layout.k
        assert e.shard_offset + e.length <= layout.block_bytes(data_length, e.stripe)
        position += e.length
    touched = sorted({e.stripe for e in extents})
    assert touched == list(layout.stripes_for_range(data_length, offset, length))


@settings(max_examples=300, deadline=None)
@given(layout=layouts, stripe_length=st.integers(1, 200), seed=st.integers(0, 255))
def test_cut_matches_the_naive_cut_and_join_inverts_it(
    layout: StripeLayout, stripe_length: int, seed: int
) -> None:
    stripe_length = min(stripe_length, layout.block_size)
    stripe = bytes((seed + 3 * i) % 256 for i in range(stripe_length))
    expected = naive_shards(layout, stripe)[0]
    size = layout.shard_bytes(stripe_length)
    cut = layout.cut(stripe)
    # The views are the shards without their zero padding.
    assert [bytes(v).ljust(size, b"\0") for v in cut] == expected
    for i, view in enumerate(cut):
        start, end = layout.data_span(stripe_length, i)
        assert len(view) == end - start
    out = bytearray(stripe_length + 5)
    assert bytes(layout.join(expected, stripe_length, out)) == stripe
    assert bytes(layout.join(cut, stripe_length, out)) == stripe


@pytest.mark.parametrize(("k", "m"), PROFILES)
def test_default_block_size_cuts_evenly_for_the_pool_profiles(k: int, m: int) -> None:
    layout = StripeLayout(k, m)
    assert layout.block_size == BLOCK_SIZE_DEFAULT_BYTES == 4 << 20
    assert layout.n == k + m
    if k in (1, 2, 4, 8):
        assert layout.full_shard_bytes * k == BLOCK_SIZE_DEFAULT_BYTES
    else:
        assert layout.full_shard_bytes == -(-BLOCK_SIZE_DEFAULT_BYTES // k)


def test_a_small_worked_example() -> None:
    # 10 bytes in 4+2 stripes of 4: stripes of 4, 4, 2 bytes; shards of 1, 1, 1 byte.
    layout = StripeLayout(4, 2, 4)
    assert layout.stripe_count(10) == 3
    assert [layout.block_bytes(10, j) for j in range(3)] == [1, 1, 1]
    # 7 bytes in 2+1 stripes of 5: stripes of 5 and 2; shards of 3 and 1 bytes.
    layout = StripeLayout(2, 1, 5)
    assert [layout.block_bytes(7, j) for j in range(2)] == [3, 1]
    assert layout.shard_data_bytes(7) == 4
    assert layout.data_span(5, 1) == (3, 5)
    # Part "abcdefg": stripe 0 "abcde" has shards "abc" and "de"; stripe 1 "fg" has
    # "f" and "g". Bytes 2..5 are "c" | "de" | "f".
    assert [(e.stripe, e.shard, e.shard_offset, e.length) for e in layout.extents(7, 2, 4)] == [
        (0, 0, 2, 1),
        (0, 1, 0, 2),
        (1, 0, 0, 1),
    ]


def test_empty_part_and_empty_range() -> None:
    layout = StripeLayout(4, 2, 16)
    assert layout.stripe_count(0) == 0
    assert layout.shard_data_bytes(0) == 0
    assert layout.last_block_bytes(0) == 0
    assert list(layout.extents(0, 0, 0)) == []
    assert list(layout.stripes_for_range(100, 50, 0)) == []


@pytest.mark.parametrize(
    ("k", "m", "block_size"),
    [
        (0, 1, 16),
        (K_MAX + 1, 0, 16),
        (4, -1, 16),
        (4, M_MAX + 1, 16),
        (4, 2, 0),
        (4, 2, BLOCK_SIZE_MAX_BYTES + 1),
    ],
)
def test_profiles_outside_the_limits_are_refused(k: int, m: int, block_size: int) -> None:
    with pytest.raises(InvalidProfile):
        StripeLayout(k, m, block_size)


def test_ranges_and_indexes_outside_the_part_are_refused() -> None:
    layout = StripeLayout(4, 2, 16)
    with pytest.raises(InvalidRange):
        list(layout.extents(100, 90, 11))
    with pytest.raises(InvalidRange):
        layout.stripes_for_range(100, -1, 5)
    with pytest.raises(InvalidRange):
        layout.stripe_length(32, 2)
    with pytest.raises(InvalidRange):
        layout.data_span(16, 4)
    with pytest.raises(ShardLengthError):
        layout.shard_bytes(17)
    with pytest.raises(ShardLengthError):
        layout.join([b"a"] * 3, 4, bytearray(4))
    with pytest.raises(ShardLengthError):
        layout.join([b"abc", b"", b"", b""], 4, bytearray(4))  # 1-byte shards, not 3
