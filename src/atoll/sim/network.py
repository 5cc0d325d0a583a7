"""A seeded, simulated network for the deterministic simulator. Pure: no I/O, no clock;
all randomness from the `random.Random` it is given.

It decides, for each message sent at virtual time `now`, whether it is dropped, when
it arrives (a random delay, so messages reorder) and whether it is duplicated; and it
holds the current partition as a set of blocked directed links, so a partition may be
symmetric (both directions cut) or asymmetric (one direction only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random


@dataclass(frozen=True)
class NetworkFaults:
    drop_probability: float = 0.0
    duplicate_probability: float = 0.0
    delay_min_steps: int = 1
    delay_max_steps: int = 1


@dataclass
class NetworkStats:
    sent: int = 0
    dropped: int = 0
    duplicated: int = 0
    blocked: int = 0


@dataclass
class SimNetwork:
    rng: random.Random
    faults: NetworkFaults = NetworkFaults()
    blocked: set[tuple[int, int]] = field(default_factory=set)
    stats: NetworkStats = field(default_factory=NetworkStats)

    def arrivals(self, frm: int, to: int, now: int) -> list[int]:
        """The virtual times at which a message sent now from `frm` to `to` arrives
        (empty: lost; two: duplicated)."""
        self.stats.sent += 1
        if (frm, to) in self.blocked:
            self.stats.blocked += 1
            return []
        if self.rng.random() < self.faults.drop_probability:
            self.stats.dropped += 1
            return []
        copies = 1
        if self.rng.random() < self.faults.duplicate_probability:
            self.stats.duplicated += 1
            copies = 2
        return [
            now + self.rng.randint(self.faults.delay_min_steps, self.faults.delay_max_steps)
            for _ in range(copies)
        ]

    def partition(self, side_a: set[int], side_b: set[int], symmetric: bool) -> None:
        """Cut every link from `side_a` to `side_b` (and back, if `symmetric`)."""
        for a in sorted(side_a):
            for b in sorted(side_b):
                self.blocked.add((a, b))
                if symmetric:
                    self.blocked.add((b, a))

    def heal(self) -> None:
        self.blocked.clear()
