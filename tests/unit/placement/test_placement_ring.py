"""The consistent-hash ring (src/atoll/placement/ring.py): its hashes against published
values, its preference orders against the seed's clockwise walk, and its consistency.
Pure code: no mocks."""

from __future__ import annotations

import bisect
import zlib
from collections import Counter

import numpy as np

from atoll.placement.ring import (
    VNODES_PER_DEVICE,
    Ring,
    fmix32,
    hash32,
    pg_point,
    pg_points,
    vnode_key,
    vnode_points,
)


def test_fmix32_matches_murmur3_published_values() -> None:
    # MurmurHash3_x86_32 of the empty input is fmix32(seed): the SMHasher vectors
    # give 0x514E28B7 for seed 1 and 0x81F16F39 for seed 0xFFFFFFFF.
    assert fmix32(0) == 0
    assert fmix32(1) == 0x514E28B7
    assert fmix32(0xFFFFFFFF) == 0x81F16F39


def test_hash32_is_crc32_then_fmix32() -> None:
    # 0xCBF43926 is CRC-32's check value, the CRC of b"123456789".
    assert zlib.crc32(b"123456789") == 0xCBF43926
    assert hash32(b"123456789") == fmix32(0xCBF43926)


def test_vnode_points_are_the_seed_keys_hashed() -> None:
    assert vnode_key(17, 3) == b"device-17#3"
    expected = sorted(fmix32(zlib.crc32(f"device-17#{i}".encode())) for i in range(512))
    assert VNODES_PER_DEVICE == 512
    assert vnode_points(17).tolist() == expected
    assert pg_point(3, 9) == fmix32(zlib.crc32(b"pool-3/pg-9"))
    assert pg_points(3, 4).tolist() == [pg_point(3, pg) for pg in range(4)]


def seed_walk(device_ids: list[int], point: int) -> list[int]:
    """The seed's lookup, written out: every virtual node on one sorted ring, walked
    clockwise from `point`; each device where it is first met."""
    ring = sorted((int(p), d) for d in device_ids for p in vnode_points(d))
    start = bisect.bisect_left(ring, (point, -1))
    order: list[int] = []
    for step in range(len(ring)):
        owner = ring[(start + step) % len(ring)][1]
        if owner not in order:
            order.append(owner)
    return order


def test_equal_reach_ranks_devices_as_the_seed_walk_meets_them() -> None:
    ids = [3, 1000, 1001, 2000, 77]
    ring = Ring(ids, [1.0] * len(ids))
    points = np.array([pg_point(1, pg) for pg in range(40)] + [0, (1 << 32) - 1])
    orders = ring.preference(points)
    for point, order in zip(points.tolist(), orders.tolist(), strict=True):
        assert [ids[i] for i in order] == seed_walk(ids, point)


def test_reach_sets_how_often_a_device_comes_first() -> None:
    ring = Ring([1, 2, 3], [1.0, 1.0, 3.0])
    firsts = Counter(ring.preference(pg_points(1, 6000))[:, 0].tolist())
    # Device 3 reaches three times as far: about 3/5 of the firsts, the others 1/5.
    assert 0.55 < firsts[2] / 6000 < 0.65
    assert 0.15 < firsts[0] / 6000 < 0.25 and 0.15 < firsts[1] / 6000 < 0.25


def test_adding_a_device_keeps_the_others_order() -> None:
    points = pg_points(1, 300)
    before = Ring([1, 2, 3, 4], [1.0, 2.0, 0.5, 1.0]).preference(points)
    after = Ring([1, 2, 3, 4, 5], [1.0, 2.0, 0.5, 1.0, 1.5]).preference(points)
    for old, new in zip(before.tolist(), after.tolist(), strict=True):
        assert [d for d in new if d != 4] == old  # index 4 is the new device


def test_changing_one_reach_moves_only_that_device() -> None:
    points = pg_points(2, 300)
    before = Ring([1, 2, 3, 4], [1.0, 1.0, 1.0, 1.0]).preference(points)
    after = Ring([1, 2, 3, 4], [1.0, 1.0, 4.0, 1.0]).preference(points)
    moved_up = 0
    for old, new in zip(before.tolist(), after.tolist(), strict=True):
        assert [d for d in new if d != 2] == [d for d in old if d != 2]
        moved_up += new.index(2) < old.index(2)
    assert moved_up > 100  # and it did move, towards the front


def test_keys_of_rank_like_preference() -> None:
    ring = Ring([5, 6, 7], [1.0, 2.0, 1.5])
    points = pg_points(1, 50)
    keys = np.stack([ring.keys_of(j, points) for j in range(3)], axis=1)
    assert np.array_equal(np.argsort(keys, axis=1, kind="stable"), ring.preference(points))
