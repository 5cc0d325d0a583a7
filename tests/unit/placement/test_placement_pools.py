"""Pools (src/atoll/placement/pools.py): `pg_of` against BLAKE2b values computed with
coreutils' `b2sum -l 64`, and the default pools' sizing rules of issue 4 §1."""

from __future__ import annotations

from collections import Counter

import pytest

from atoll.placement import Device, InvalidPool, Pool, default_pools, pg_of


def pool(pg_count: int, pool_id: int = 1) -> Pool:
    return Pool(pool_id, "p", 4, 2, pg_count, "host", "STANDARD")


def test_pg_of_is_the_low_bits_of_blake2b_over_length_prefixed_names() -> None:
    # printf '\x00\x00\x00\x06photos\x00\x00\x00\x0c2024/cat.jpg\x00\x00\x00\x02v1'
    #   | b2sum -l 64  ->  8c1ce5a0c4e5473a
    assert pg_of(pool(1 << 16), "photos", "2024/cat.jpg", "v1") == 0x473A
    assert pg_of(pool(256), "photos", "2024/cat.jpg", "v1") == 0x3A
    # Three empty names: twelve zero bytes -> 24f29c3559b2b01f.
    assert pg_of(pool(1 << 16), "", "", "") == 0xB01F
    # The pool's id is not hashed.
    assert pg_of(pool(256, pool_id=7), "photos", "2024/cat.jpg", "v1") == 0x3A


def test_pg_of_separates_the_names() -> None:
    p = pool(1 << 16)
    assert pg_of(p, "a", "bc", "") != pg_of(p, "ab", "c", "")


def test_doubling_the_pg_count_splits_each_pg_in_two() -> None:
    small, large = pool(64), pool(128)
    for i in range(500):
        before, after = pg_of(small, "b", f"key-{i}", ""), pg_of(large, "b", f"key-{i}", "")
        assert after in (before, before + 64)


def test_pg_of_spreads_keys_evenly() -> None:
    p = pool(256)
    spread = Counter(pg_of(p, "bucket", f"object-{i}", "") for i in range(25_600))
    assert len(spread) == 256 and max(spread.values()) < 2 * 100


def test_pg_of_checks_the_pool() -> None:
    with pytest.raises(InvalidPool, match="power of two"):
        pg_of(pool(100), "b", "k", "")


def devices(count: int) -> list[Device]:
    return [Device(i, i, "", "", 1.0, True) for i in range(1, count + 1)]


# PG counts worked by hand: the power of two at or above 200 x devices / (k+m),
# and at least 64. E.g. 6 devices, 4+2: 200 -> 256; 16 devices, 8+3: 291 -> 512.
@pytest.mark.parametrize(
    ("count", "standard", "standard_pgs", "replicated_pgs"),
    [
        (1, (1, 0), 256, None),
        (2, (1, 1), 256, None),
        (3, (2, 1), 256, 256),
        (4, (2, 1), 512, 512),
        (5, (2, 1), 512, 512),
        (6, (4, 2), 256, 512),
        (7, (4, 2), 256, 512),
        (8, (4, 2), 512, 1024),
        (9, (4, 2), 512, 1024),
        (10, (4, 2), 512, 1024),
        (11, (4, 2), 512, 1024),
        (12, (8, 3), 256, 1024),
        (13, (8, 3), 256, 1024),
        (14, (8, 3), 256, 1024),
        (15, (8, 3), 512, 1024),
        (16, (8, 3), 512, 2048),
        (48, (8, 3), 1024, 4096),
    ],
)
def test_default_pools_follow_the_sizing_rules(
    count: int,
    standard: tuple[int, int],
    standard_pgs: int,
    replicated_pgs: int | None,
) -> None:
    pools = default_pools(devices(count))
    first = pools[0]
    assert (first.name, (first.k, first.m), first.storage_class) == (
        "standard",
        standard,
        "STANDARD",
    )
    assert first.pg_count == standard_pgs and first.failure_domain == "host"
    if replicated_pgs is None:
        assert len(pools) == 1
    else:
        second = pools[1]
        assert (second.name, second.k, second.m) == ("replicated", 1, 2)
        assert second.storage_class == "REDUCED_REDUNDANCY"
        assert second.pg_count == replicated_pgs and second.failure_domain == "host"
        assert second.id != first.id


def test_no_devices_no_pools() -> None:
    assert default_pools([]) == []
