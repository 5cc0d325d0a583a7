"""`atoll.placement`: where the shards of every placement group go (issue 4 §2,
shared/DESIGN.md §3-§4). Pure: no I/O, no clock, no global randomness.

`ring` is the consistent-hash ring and each PG's preference order over the devices;
`pg_table` computes a pool's PG table (`place_pool`) and checks one (`violations`);
`pools` holds the pool parameters, the default pools and `pg_of`; `simulate` measures
balance and movement for `atoll placement simulate`.
"""

from atoll.placement.errors import (
    InsufficientDevices,
    InvalidDevices,
    InvalidPool,
    PlacementError,
    PlacementTooLarge,
)
from atoll.placement.pg_table import PgTable, place_pool, violations
from atoll.placement.pools import FAILURE_DOMAINS, Pool, default_pools, pg_of
from atoll.placement.ring import Device

__all__ = [
    "FAILURE_DOMAINS",
    "Device",
    "InsufficientDevices",
    "InvalidDevices",
    "InvalidPool",
    "PgTable",
    "PlacementError",
    "PlacementTooLarge",
    "Pool",
    "default_pools",
    "pg_of",
    "place_pool",
    "violations",
]
