"""`atoll.placement`: where the shards of every placement group go (pure; issue 4 §2,
shared/DESIGN.md §3). `ring` is the consistent-hash ring, `pg_table` the PG tables
(`place_pool`, `violations`, `pg_of`), `pools` the default pools, `simulate` the
figures of `atoll placement simulate`."""

from atoll.placement.errors import PlacementError
from atoll.placement.pg_table import (
    FAILURE_DOMAINS,
    Device,
    PgTable,
    Pool,
    pg_of,
    place_pool,
    violations,
)
from atoll.placement.pools import default_pools

__all__ = [
    "FAILURE_DOMAINS",
    "Device",
    "PgTable",
    "PlacementError",
    "Pool",
    "default_pools",
    "pg_of",
    "place_pool",
    "violations",
]
