"""Default pools, sized from the devices and hosts a cluster starts with (issue 4 §1).

Pure: no I/O.

- `standard`, erasure coded, storage class `STANDARD`: 1 device -> 1+0; 2 -> 1+1;
  3-5 -> 2+1; 6-11 -> 4+2; 12 or more -> 8+3. Failure domain host (the placement
  limit `ceil((k+m)/hosts)` per host spreads a PG's shards as evenly as the hosts
  allow: on 3 hosts x 2 devices a 4+2 PG loses at most 2 shards with a host).
- `replicated`, three copies (1+2), storage class `REDUCED_REDUNDANCY`, where there
  are 3 or more devices.

PG counts: about 100 shards per device, rounded to a power of two, within [32, 4096].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from atoll.placement.pg_table import Device, Pool

SHARDS_PER_DEVICE = 100
PG_COUNT_MIN = 32
PG_COUNT_MAX = 4096


def standard_profile(devices: int) -> tuple[int, int]:
    if devices >= 12:
        return 8, 3
    if devices >= 6:
        return 4, 2
    if devices >= 3:
        return 2, 1
    if devices == 2:
        return 1, 1
    return 1, 0


def pg_count_for(devices: int, width: int) -> int:
    """A power of two near `SHARDS_PER_DEVICE` shards per device."""
    wanted = max(1, devices * SHARDS_PER_DEVICE // width)
    power = 1 << max(0, round(math.log2(wanted)))
    return max(PG_COUNT_MIN, min(PG_COUNT_MAX, power))


def default_pools(devices: Sequence[Device]) -> list[Pool]:
    count = len(devices)
    if count == 0:
        return []
    k, m = standard_profile(count)
    pools = [Pool(1, "standard", k, m, pg_count_for(count, k + m), "host", "STANDARD")]
    if count >= 3:
        pools.append(
            Pool(2, "replicated", 1, 2, pg_count_for(count, 3), "host", "REDUCED_REDUNDANCY")
        )
    return pools
