"""The consistent-hash ring: devices as weighted virtual nodes on a 64-bit circle.

Pure: no I/O, no clock, no randomness. The seed's scheme (`ConsistentHash`: virtual
keys `"<device>#<i>"` hashed onto a ring, walked clockwise from a key's hash), with
two changes: the hash is BLAKE2b-64 rather than CRC-32 (CRC-32's 2^32 circle and poor
mixing of similar strings cluster the virtual nodes), and the number of virtual nodes
grows with a device's weight (`vnodes_for`).

A device's virtual nodes depend on its id and weight only, never on the other devices,
so adding or removing a device changes the walk of a key only where that device's
virtual nodes are: the property consistent hashing exists for.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterator, Sequence

VNODES_PER_WEIGHT = 128  # virtual nodes per weight unit (1 TiB of capacity)
VNODES_MIN = 16
VNODES_MAX = 1024


def hash64(*parts: object) -> int:
    """A stable 64-bit hash of `parts` (not Python's `hash`, which varies by process)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def vnodes_for(weight: float) -> int:
    """Virtual nodes of a device of `weight`: proportional, within [16, 1024]."""
    return max(VNODES_MIN, min(VNODES_MAX, round(VNODES_PER_WEIGHT * weight)))


class Ring:
    """Devices `(id, weight)` as virtual nodes; `walk(point)` yields device ids
    clockwise from `point`, each once."""

    def __init__(self, devices: Sequence[tuple[int, float]]) -> None:
        points: list[tuple[int, int]] = []
        for device_id, weight in devices:
            if weight <= 0:
                continue  # a device of weight 0 takes no new data
            points.extend(
                (hash64("vnode", device_id, i), device_id) for i in range(vnodes_for(weight))
            )
        points.sort()
        self._positions = [p for p, _ in points]
        self._owners = [d for _, d in points]
        self.devices = frozenset(self._owners)

    def walk(self, point: int) -> Iterator[int]:
        """Distinct device ids in clockwise order from `point`."""
        count = len(self._positions)
        if not count:
            return
        start = bisect.bisect_left(self._positions, point)
        seen: set[int] = set()
        for step in range(count):
            owner = self._owners[(start + step) % count]
            if owner not in seen:
                seen.add(owner)
                yield owner
                if len(seen) == len(self.devices):
                    return
