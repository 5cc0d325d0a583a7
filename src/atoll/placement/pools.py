"""Pools: their parameters and limits, the default pools a cluster starts with (issue
4 §1), and the PG of an object version (`pg_of`). Pure: no I/O.

Default pools, sized from the devices a cluster is bootstrapped with:

- `standard`, erasure coded, storage class `STANDARD`: 1 device -> 1+0; 2 -> 1+1;
  3-5 -> 2+1; 6-11 -> 4+2; 12 or more -> 8+3.
- `replicated`, three copies (`k=1, m=2`), storage class `REDUCED_REDUNDANCY`, where
  there are 3 or more devices.

Both have failure domain `host`: placement spreads a PG's shards over the hosts as
evenly as they allow, at most `ceil((k+m)/hosts)` per host when the hosts are of a
size to allow it (so on 3 hosts x 2 devices a 4+2 PG loses `m` = 2 shards with a host).
The sizing follows the device count only: on 2 hosts of 3 devices a 4+2 PG puts 3
shards on each host, more than `m`, and a host down leaves its PGs unreadable until
it returns. PG counts aim at `SHARDS_PER_DEVICE_TARGET` shards per device, rounded up
to a power of two: 1,024 PGs for 8+3 on 48 devices, 256 for 4+2 on 6.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from atoll.placement.errors import InvalidPool
from atoll.placement.ring import Device

FAILURE_DOMAINS = ("zone", "host", "device")

PG_COUNT_MAX = 1 << 16
WIDTH_MAX = 32
"""Most shards in a PG (`k+m`)."""

PLACEMENT_CELLS_MAX = 1 << 24
"""Most PG count x device count `place_pool` accepts: its preference orders are one
int32 per cell (64 MiB at the limit)."""

SHARDS_PER_DEVICE_TARGET = 200
"""Shards per device the default pools aim at. Balance needs many: at 200 the PG
count's own noise is about 6% of a device's load, which balancing evens out in a few
dozen moves; at 50 it would be 12%."""

PG_COUNT_DEFAULT_MIN = 64
STANDARD_POOL_ID = 1
REPLICATED_POOL_ID = 2


@dataclass(frozen=True)
class Pool:
    """A pool as placement sees it: an erasure profile `k+m` (replication is `k=1`),
    a PG count (a power of two) and the failure-domain level its PGs spread over."""

    id: int
    name: str
    k: int
    m: int
    pg_count: int  # a power of two
    failure_domain: str  # "zone" | "host" | "device"
    storage_class: str

    @property
    def width(self) -> int:
        """Shards per PG: `k+m`."""
        return self.k + self.m


def check_pool(pool: Pool) -> None:
    """Raise `InvalidPool` unless placement can work with `pool`."""
    reason = None
    if not 1 <= pool.pg_count <= PG_COUNT_MAX or pool.pg_count & (pool.pg_count - 1):
        reason = f"PG count {pool.pg_count} is not a power of two in [1, {PG_COUNT_MAX}]"
    elif pool.k < 1 or pool.m < 0:
        reason = f"k={pool.k}, m={pool.m}: k must be 1 or more and m 0 or more"
    elif pool.width > WIDTH_MAX:
        reason = f"k+m = {pool.width} is over the limit of {WIDTH_MAX}"
    elif pool.failure_domain not in FAILURE_DOMAINS:
        reason = f"failure domain {pool.failure_domain!r} is not one of {FAILURE_DOMAINS}"
    if reason is not None:
        raise InvalidPool(pool.name, reason)


def pg_of(pool: Pool, bucket: str, key: str, version_id: str) -> int:
    """The PG of an object version: the low bits of BLAKE2b-64 (big-endian) over the
    three names, each as a 4-byte big-endian length and its UTF-8 bytes.

    Stable across processes and machines (not Python's `hash`). Taking the low bits
    means that doubling a pool's PG count splits PG `p` into `p` and `p + old count`.
    The pool's id is not hashed: an object's PG depends only on its names and the
    pool's PG count."""
    check_pool(pool)
    digest = hashlib.blake2b(digest_size=8)
    for name in (bucket, key, version_id):
        data = name.encode("utf-8")
        digest.update(len(data).to_bytes(4, "big"))
        digest.update(data)
    return int.from_bytes(digest.digest(), "big") & (pool.pg_count - 1)


def standard_profile(devices: int) -> tuple[int, int]:
    """`(k, m)` of the `standard` pool on `devices` devices (issue 4 §1)."""
    if devices >= 12:
        return 8, 3
    if devices >= 6:
        return 4, 2
    if devices >= 3:
        return 2, 1
    if devices == 2:
        return 1, 1
    return 1, 0


def default_pg_count(devices: int, width: int) -> int:
    """The power of two at or above `SHARDS_PER_DEVICE_TARGET` shards per device, within
    `[PG_COUNT_DEFAULT_MIN, PG_COUNT_MAX]` and the placement limit."""
    wanted = -(-SHARDS_PER_DEVICE_TARGET * devices // width)
    count = max(PG_COUNT_DEFAULT_MIN, 1 << (wanted - 1).bit_length())
    while count > 1 and (count > PG_COUNT_MAX or count * devices > PLACEMENT_CELLS_MAX):
        count //= 2
    return count


def default_pools(devices: Sequence[Device]) -> list[Pool]:
    """The pools a cluster starts with, sized from the devices it expects (all of
    `devices`, whatever their state). None for no devices."""
    count = len({d.id for d in devices})
    if count == 0:
        return []
    k, m = standard_profile(count)
    pools = [
        Pool(
            STANDARD_POOL_ID,
            "standard",
            k,
            m,
            default_pg_count(count, k + m),
            "host",
            "STANDARD",
        )
    ]
    if count >= 3:
        pools.append(
            Pool(
                REPLICATED_POOL_ID,
                "replicated",
                1,
                2,
                default_pg_count(count, 3),
                "host",
                "REDUCED_REDUNDANCY",
            )
        )
    return pools
