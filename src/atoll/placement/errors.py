"""Expected failures of placement (shared/STYLE.md §7). Pure: no I/O.

Every error is a `PlacementError`, which is also a `ValueError`: placement fails only
for bad or insufficient inputs, and the meta layer refuses such a pool or device set.
"""

from __future__ import annotations

from atoll.base.errors import AtollError


class PlacementError(AtollError, ValueError):
    """Root of placement failures: a pool that cannot be placed on the devices given."""


class InvalidPool(PlacementError):
    """A pool whose parameters placement cannot work with (PG count not a power of two
    or over the limit, `k` < 1, `m` < 0, `k+m` over the limit, unknown failure domain)."""

    def __init__(self, pool: str, reason: str) -> None:
        super().__init__(f"pool {pool!r}: {reason}")
        self.pool = pool
        self.reason = reason


class InvalidDevices(PlacementError):
    """A device list placement cannot work with (a device id twice, a negative or
    non-finite weight, more devices than the limit)."""


class InsufficientDevices(PlacementError):
    """Fewer distinct devices in service (with a weight above 0) than a PG has shards."""

    def __init__(self, pool: str, needed: int, available: int) -> None:
        super().__init__(
            f"pool {pool!r} needs {needed} devices in service, the cluster has {available}"
        )
        self.pool = pool
        self.needed = needed
        self.available = available


class PlacementTooLarge(PlacementError):
    """A pool whose PG count times the device count is over the placement limit (the
    preference orders are PG count x devices cells in memory)."""

    def __init__(self, pool: str, pg_count: int, devices: int, limit: int) -> None:
        super().__init__(
            f"pool {pool!r}: {pg_count} PGs x {devices} devices = {pg_count * devices}"
            f" cells, over the limit of {limit}"
        )
        self.pool = pool
        self.pg_count = pg_count
        self.devices = devices
        self.limit = limit
