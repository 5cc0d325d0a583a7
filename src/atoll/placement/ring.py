"""The consistent-hash ring: devices, their virtual nodes, and each PG's preference
order over the devices. Pure: no I/O, no clock, no randomness.

The seed's scheme (`ConsistentHash` in shared/seed/: the virtual keys `"<node>#<i>"`
hashed with CRC-32 onto a 2^32 circle, looked up clockwise), with two choices of ours:

- **Points.** A virtual node's point is `fmix32(crc32(b"device-<id>#<i>"))` for
  `i < VNODES_PER_DEVICE`: CRC-32 as in the seed, then MurmurHash3's 32-bit finaliser.
  CRC-32 is linear, so the keys of one device (which differ in a few digits) land on
  a few structured points; the finaliser scatters them (measured on 48 devices before
  balancing: the most loaded held 1.50x the mean with plain CRC-32, 1.15x with the
  finaliser, and BLAKE2b does no better than the finaliser). A PG's point is `fmix32(crc32(b"pool-<pool id>/pg-<pg>"))`.
- **Weight as reach.** Every device has the same number of virtual nodes; a device's
  weight stretches its reach instead. A PG ranks the devices by the clockwise distance
  from its point to the device's nearest virtual node, divided by the device's reach.
  With equal reaches this is exactly the seed's walk: the order in which a clockwise
  walk from the PG's point first meets each device. A distance to the nearest of many
  random points is close to exponential, so dividing it by a reach `r` makes a device
  come first with probability proportional to `r` (the argument of Ceph's straw2),
  whatever the unit of the weights (the meta layer uses TiB; a test cluster's
  directories may weigh 0.001) and with no rounding of weights to virtual-node counts.

Consistency. A device's points depend on its id alone. Adding a device inserts it into
every PG's preference order and leaves the relative order of the other devices as it
was; removing one deletes it from the orders; changing one device's reach moves that
device alone within the orders. Everything `pg_table` builds on the orders inherits it.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from atoll.base.errors import invariant

VNODES_PER_DEVICE = 512
"""Virtual nodes per device. The ring's own unevenness shrinks as one over the root of
this: on 12 hosts x 4 devices with 16,384 PGs (so that the PGs' noise is small), the
most loaded device before balancing held 1.11-1.26 x the mean with 128, 1.07-1.10 with
512. Less unevenness, fewer balancing moves, less movement: adding a host there moved
1.04x the ideal with 128 and 1.00x with 512 (1,024 PGs). 512 points take about 0.4 ms
to make per device."""

RING_BITS = 32
RING_SIZE = 1 << RING_BITS

PREFERENCE_CHUNK_CELLS = 1 << 22
"""PGs x devices ranked in one numpy pass (32 MiB of float64 keys), so that memory is
bounded whatever the pool's size."""

_MASK32 = 0xFFFFFFFF


@dataclass(frozen=True)
class Device:
    """One disk, as the cluster map gives it to placement. `node_id` is its host."""

    id: int
    node_id: int
    zone: str  # "" if the cluster has no zones
    rack: str  # carried for the map; placement does not use racks (yet)
    weight: float  # proportional to capacity (the meta layer: TiB); 0 takes no new data
    in_service: bool  # False: the device's node is out, or the device failed


def fmix32(value: int) -> int:
    """MurmurHash3's 32-bit finaliser: a bijection on 32-bit integers."""
    h = value & _MASK32
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK32
    return h ^ (h >> 16)


def _fmix32_array(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """`fmix32` of every element (uint64 holding 32-bit values, so no product overflows)."""
    h = values & _MASK32
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & np.uint64(_MASK32)
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & np.uint64(_MASK32)
    h ^= h >> np.uint64(16)
    return h.astype(np.int64)


def hash32(data: bytes) -> int:
    """A point on the ring: `fmix32(crc32(data))`."""
    return fmix32(zlib.crc32(data))


def vnode_key(device_id: int, index: int) -> bytes:
    """The seed's virtual key `"<node>#<i>"`, for a device."""
    return f"device-{device_id}#{index}".encode("ascii")


def vnode_points(device_id: int) -> npt.NDArray[np.int64]:
    """The sorted points of a device's `VNODES_PER_DEVICE` virtual nodes."""
    crcs = np.fromiter(
        (zlib.crc32(vnode_key(device_id, i)) for i in range(VNODES_PER_DEVICE)),
        dtype=np.uint64,
        count=VNODES_PER_DEVICE,
    )
    return np.sort(_fmix32_array(crcs))


def pg_point(pool_id: int, pg: int) -> int:
    """The point a PG's preference order is measured from."""
    return hash32(f"pool-{pool_id}/pg-{pg}".encode("ascii"))


def pg_points(pool_id: int, pg_count: int) -> npt.NDArray[np.int64]:
    return np.fromiter(
        (pg_point(pool_id, pg) for pg in range(pg_count)), dtype=np.int64, count=pg_count
    )


class Ring:
    """Devices (by index `0..n-1`, in the order given) with their virtual nodes and
    reaches; ranks them for any set of points."""

    def __init__(self, device_ids: Sequence[int], reach: Sequence[float]) -> None:
        invariant(len(device_ids) == len(reach), "one reach per device")
        invariant(len(set(device_ids)) == len(device_ids), "device ids are distinct")
        invariant(all(math.isfinite(r) and r > 0 for r in reach), "reaches are positive")
        self.device_ids = tuple(device_ids)
        self.reach = np.array(reach, dtype=np.float64)
        self._vnodes = np.empty((len(device_ids), VNODES_PER_DEVICE), dtype=np.int64)
        for j, device_id in enumerate(device_ids):
            self._vnodes[j] = vnode_points(device_id)

    def __len__(self) -> int:
        return len(self.device_ids)

    def distances(self, points: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """`[p, j]`: clockwise distance from `points[p]` to device `j`'s nearest virtual
        node (0 when a virtual node sits on the point itself)."""
        out = np.empty((len(points), len(self)), dtype=np.int64)
        for j in range(len(self)):
            out[:, j] = self._distances_to(j, points)
        return out

    def keys_of(self, index: int, points: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """Device `index`'s ranking key for each point: distance over reach."""
        keys: npt.NDArray[np.float64] = self._distances_to(index, points) / self.reach[index]
        return keys

    def preference(self, points: npt.NDArray[np.int64]) -> npt.NDArray[np.int32]:
        """`[p]`: every device index, best first, for `points[p]`. Ties (two devices'
        virtual nodes on one point) go to the lower index."""
        out = np.empty((len(points), len(self)), dtype=np.int32)
        rows = max(1, PREFERENCE_CHUNK_CELLS // max(1, len(self)))
        for start in range(0, len(points), rows):
            chunk = points[start : start + rows]
            keys = self.distances(chunk) / self.reach
            out[start : start + len(chunk)] = np.argsort(keys, axis=1, kind="stable")
        return out

    def _distances_to(self, index: int, points: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        vnodes = self._vnodes[index]
        after = np.searchsorted(vnodes, points, side="left") % len(vnodes)
        result: npt.NDArray[np.int64] = (vnodes[after] - points) % RING_SIZE
        return result
