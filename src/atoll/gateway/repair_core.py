"""The repairer's pure core (docs/repair.md): what a PG's positions hold and lack
(`PgListing`), which PGs a pass lists (`select_work`), how a lost shard is read and
summed back from partial sums (`plan_reads`, `sum_partials`), and the rate limiter
and meter. No I/O and no clock: the shell (`atoll.gateway.repair`) passes them in.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence

from atoll.erasure import Codec, combine
from atoll.erasure.stripe import ReadableBuffer
from atoll.meta.cluster_map import ClusterMap
from atoll.objects.manifest import RepairRecord
from atoll.storage.layout import ShardId
from atoll.storage.messages import ShardInfo

PartRef = tuple[str, str, str, int]
"""An object part a shard file belongs to: bucket, key, version id, part number."""


def part_of(shard: ShardId) -> PartRef:
    return (shard.bucket, shard.key, shard.version_id, shard.part_number)


@dataclasses.dataclass
class PgListing:
    """What each position of one PG holds: `held[i]` maps each part whose shard `i`
    is on member `i`'s device (header and size valid) to its `ShardInfo`, or is None
    when that device could not be listed. `unlisted` are the positions that could not
    be listed although their node is up (a refused epoch, a timeout): what they hold
    is unknown, so the PG cannot be verified from this listing."""

    pool_id: int
    pg: int
    k: int
    m: int
    members: tuple[int, ...]
    held: list[dict[PartRef, ShardInfo] | None]
    unlisted: frozenset[int] = frozenset()
    former: dict[PartRef, dict[int, int]] | None = None  # found when needed (Repairer)

    @property
    def complete(self) -> bool:
        """Every member whose node is up was listed."""
        return not self.unlisted

    def parts(self) -> dict[PartRef, ShardInfo]:
        """Every part any position holds, with one of its shards' info."""
        out: dict[PartRef, ShardInfo] = {}
        for held in self.held:
            if held is not None:
                for part, info in held.items():
                    out.setdefault(part, info)
        return out

    def holders(self, part: PartRef) -> list[int]:
        return [i for i, held in enumerate(self.held) if held is not None and part in held]

    def endangerment(self) -> int:
        """Shards of the PG's worst-off part still held (k + m when it has no part):
        the lower, the sooner its repair."""
        counts = [len(self.holders(part)) for part in self.parts()]
        return min(counts, default=self.k + self.m)

    def missing(
        self, positions: Iterable[int], forced: Mapping[PartRef, frozenset[int]]
    ) -> list[tuple[PartRef, int]]:
        """(part, position) to rebuild among `positions`: a part some position holds
        and this one does not, or a part a repair record names at this position
        (`forced`: what is there may be an older write under the same name)."""
        parts = self.parts()
        every = sorted(set(parts) | set(forced))
        out: list[tuple[PartRef, int]] = []
        for i in sorted(positions):
            held = self.held[i] or {}
            out.extend(
                (part, i)
                for part in every
                if part not in held or i in forced.get(part, frozenset())
            )
        return out


class TokenBucket:
    """At most `rate` units per second on average, bursts up to one second's worth;
    rate 0 is no limit. `delay(now, n)` books `n` units and says how long to wait
    before using them."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._next = 0.0  # when everything booked is paid for, in the clock's seconds

    def delay(self, now: float, n: int) -> float:
        if self._rate <= 0:
            return 0.0
        self._next = max(self._next, now) + n / self._rate
        return max(0.0, self._next - now - 1.0)


class RateMeter:
    """Units per second over the last `window_s` seconds."""

    def __init__(self, window_s: float = 10.0) -> None:
        self._window_s = window_s
        self._events: deque[tuple[float, int]] = deque()

    def add(self, now: float, n: int) -> None:
        self._events.append((now, n))
        self._trim(now)

    def rate(self, now: float) -> float:
        self._trim(now)
        return sum(n for _, n in self._events) / self._window_s

    def _trim(self, now: float) -> None:
        while self._events and self._events[0][0] < now - self._window_s:
            self._events.popleft()


Record = tuple[bytes, bytes, RepairRecord]  # key, value, decoded


Work = tuple[int, int, tuple[int, ...], list[int]]  # pool id, pg, members, positions


def select_work(
    m: ClusterMap,
    local: set[int],
    verified: Mapping[tuple[int, int], tuple[int, float]],
    records: Mapping[tuple[int, int], Iterable[Record]],
    now: float,
    reverify_after_s: float,
) -> tuple[list[Work], set[tuple[int, int]], set[tuple[int, int]]]:
    """The PGs a pass lists: those with a position on a `local` device that a repair
    record names at such a position, or that were not verified under their table's
    current epoch (`verified`: (pool, pg) -> (table epoch, clock time)), or were
    verified more than `reverify_after_s` ago. Also every PG held here, and the
    named ones."""
    work: list[Work] = []
    held_here: set[tuple[int, int]] = set()
    named: set[tuple[int, int]] = set()
    for pool_id, table in sorted(m.pg_tables.items()):
        for pg, members in enumerate(table.members):
            positions = [i for i, d in enumerate(members) if d in local]
            if not positions:
                continue
            held_here.add((pool_id, pg))
            is_named = any(
                i in r.missed for _, _, r in records.get((pool_id, pg), ()) for i in positions
            )
            if is_named:
                named.add((pool_id, pg))
            seen = verified.get((pool_id, pg))
            if (
                is_named
                or seen is None
                or seen[0] != table.epoch
                or now - seen[1] > reverify_after_s
            ):
                work.append((pool_id, pg, members, positions))
    return work, held_here, named


Group = list[tuple[int, ShardId, int]]
"""Shards of one part on one node to combine: (device id, shard, coefficient) each."""
Read = tuple[int, Group]
"""A read of a rebuild and its coefficient in the sum: one shard (of coefficient 1 in
its group), or a group of several on another node (combined there)."""


@functools.lru_cache(maxsize=16)
def _codec(k: int, m: int) -> Codec:
    return Codec(k, m)


def plan_reads(
    members: Sequence[int],
    sources: Sequence[int],
    position: int,
    k: int,
    m: int,
    node_of: Mapping[int, int],
    here: int,
    shard: Callable[[int], ShardId],
) -> list[Read] | None:
    """How to rebuild shard `position` of a part with one stream per other node: k of
    the `sources` (shard indexes; position i on device `members[i]`), node `here`'s
    first, then those of the nodes holding the most, each with its coefficient in the
    rebuilt shard (`Codec.decode_rows`). Another node holding several of them sends
    their combination (`storage.combine_shards`), which enters the sum with
    coefficient 1; a shard alone on its node, and node `here`'s own, are read as they
    are and enter with their coefficient. `node_of` maps each device that can serve
    to its node: sources on other devices are left out; None when fewer than k are
    left. `shard(i)` names shard i."""
    by_node: dict[int, list[int]] = {}
    for index in sources:
        node = node_of.get(members[index])
        if node is not None:
            by_node.setdefault(node, []).append(index)
    order = sorted(by_node, key=lambda node: (node != here, -len(by_node[node]), node))
    chosen = [i for node in order for i in sorted(by_node[node])][:k]
    if len(chosen) < k:
        return None
    survivors = tuple(sorted(chosen))
    row = _codec(k, m).decode_rows(survivors, (position,))
    coefficients = dict(zip(survivors, row, strict=True))
    reads: list[Read] = []
    for node in order:
        group = [
            (members[i], shard(i), coefficients[i])
            for i in sorted(by_node[node])
            if coefficients.get(i)  # unchosen, or a zero coefficient: not read
        ]
        if len(group) > 1 and node != here:
            reads.append((1, group))
        else:
            reads += [(c, [(device_id, s, 1)]) for device_id, s, c in group]
    return reads


def sum_partials(coefficients: bytes, partials: list[list[memoryview]]) -> list[ReadableBuffer]:
    """Block by block, the sum of `coefficients[i]` times `partials[i]`: the rebuilt
    shard's blocks (worker thread; a single partial of coefficient 1 is the shard as
    it came)."""
    if coefficients == b"\x01":
        return list(partials[0])
    return [combine(coefficients, blocks) for blocks in zip(*partials, strict=True)]


def forced_positions(
    records: Iterable[Record], positions: list[int]
) -> dict[PartRef, frozenset[int]]:
    out: dict[PartRef, frozenset[int]] = {}
    for _, _, r in records:
        bits = frozenset(i for i in r.missed if i in positions)
        if bits:
            part = (r.bucket, r.key, r.version_id, r.part_number)
            out[part] = out.get(part, frozenset()) | bits
    return out


__all__ = [
    "Group",
    "PartRef",
    "PgListing",
    "RateMeter",
    "Read",
    "Record",
    "TokenBucket",
    "Work",
    "forced_positions",
    "part_of",
    "plan_reads",
    "select_work",
    "sum_partials",
]
