"""Chooses the next compaction from a version (leveled, as LevelDB). Pure: no I/O.

Scores: level 0 by its table count over `level0_compaction_trigger`; level i >= 1 by
its bytes over its target, `level_base_bytes * level_multiplier ** (i - 1)`. The level
with the highest score >= 1 is compacted: all of level 0 at once (its tables overlap),
or one table of level i chosen round-robin by key, together with every table of the
next level that overlaps it. A single table with nothing below it moves down without
rewriting (a trivial move).
"""

from __future__ import annotations

from dataclasses import dataclass

from atoll.engine.version import NUM_LEVELS, Table, Version


@dataclass(frozen=True)
class LevelShape:
    level0_compaction_trigger: int
    level_base_bytes: int
    level_multiplier: int

    def target_bytes(self, level: int) -> int:
        return int(self.level_base_bytes * self.level_multiplier ** max(0, level - 1))


@dataclass(frozen=True)
class Compaction:
    level: int
    inputs: tuple[Table, ...]  # from `level`
    next_inputs: tuple[Table, ...]  # from `level + 1`
    bottom: bool  # nothing deeper overlaps: tombstones may be dropped

    @property
    def output_level(self) -> int:
        return self.level + 1

    @property
    def trivial_move(self) -> bool:
        return len(self.inputs) == 1 and not self.next_inputs

    def all_inputs(self) -> list[tuple[int, Table]]:
        return [(self.level, t) for t in self.inputs] + [
            (self.level + 1, t) for t in self.next_inputs
        ]

    def input_bytes(self) -> int:
        return sum(t.size for t in self.inputs) + sum(t.size for t in self.next_inputs)


def key_range(tables: tuple[Table, ...] | list[Table]) -> tuple[bytes, bytes]:
    return min(t.smallest for t in tables), max(t.largest for t in tables)


def scores(version: Version, shape: LevelShape) -> list[float]:
    deeper = [
        version.level_bytes(level) / shape.target_bytes(level) for level in range(1, NUM_LEVELS - 1)
    ]
    return [len(version.levels[0]) / shape.level0_compaction_trigger, *deeper]


def build(version: Version, level: int, inputs: list[Table]) -> Compaction:
    """The compaction of `inputs` (from `level`) into the next level."""
    lo, hi = key_range(inputs)
    if level == 0:
        # Pull in every level-0 table that overlaps, transitively (they overlap each other).
        while True:
            grown = version.overlapping(0, lo, hi)
            if len(grown) == len(inputs):
                break
            inputs = grown
            lo, hi = key_range(inputs)
    next_inputs = version.overlapping(level + 1, lo, hi)
    if next_inputs:
        nlo, nhi = key_range(next_inputs)
        lo, hi = min(lo, nlo), max(hi, nhi)
    bottom = all(not version.overlapping(d, lo, hi) for d in range(level + 2, NUM_LEVELS))
    return Compaction(level, tuple(inputs), tuple(next_inputs), bottom)


def pick(version: Version, shape: LevelShape, pointers: dict[int, bytes]) -> Compaction | None:
    """The most urgent compaction, or None if every level is within its target.

    `pointers[level]` is the largest key of the last table compacted from that level;
    the next pick from it starts after that key (round-robin over the key space).
    """
    level_scores = scores(version, shape)
    best = max(range(len(level_scores)), key=lambda i: level_scores[i])
    if level_scores[best] < 1.0:
        return None
    if best == 0:
        return build(version, 0, list(version.levels[0]))
    tables = version.levels[best]
    pointer = pointers.get(best)
    chosen = tables[0]
    if pointer is not None:
        for t in tables:
            if t.smallest > pointer:
                chosen = t
                break
    return build(version, best, [chosen])


def manual(version: Version, level: int, start: bytes | None, end: bytes | None) -> list[Table]:
    """Tables of `level` overlapping [start, end] (a manual compaction's candidates)."""
    return version.overlapping(level, start, end)
