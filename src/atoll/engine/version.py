"""Versions: the set of live SSTables per level, and edits between them. Pure.

A `Version` is immutable. Flushes and compactions produce a `VersionEdit` (tables added
and deleted, counters advanced); applying it gives the next version. Edits are what
the MANIFEST records (docs/formats.md §4), encoded as JSON inside CRC-framed records.

Level 0 holds flushed memtables whose key ranges may overlap, newest first. Levels 1
and deeper hold tables with disjoint key ranges, sorted by smallest key; a user key
never spans two tables of one level.
"""

from __future__ import annotations

import itertools
import json
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

from atoll.base.errors import invariant

NUM_LEVELS = 7


@dataclass(eq=False)
class Table:
    """A live SSTable: what the manifest records, plus its open reader (if any)."""

    number: int
    size: int
    smallest: bytes
    largest: bytes
    entries: int
    smallest_seq: int
    largest_seq: int
    reader: Any = field(default=None, repr=False)

    def overlaps(self, start: bytes | None, end: bytes | None) -> bool:
        """True if the table may hold keys in [start, end] (both inclusive, None open)."""
        if start is not None and self.largest < start:
            return False
        return not (end is not None and self.smallest > end)


@dataclass
class VersionEdit:
    log_number: int | None = None  # WAL segments below this number are obsolete
    next_file: int | None = None
    last_seq: int | None = None
    added: list[tuple[int, Table]] = field(default_factory=list)  # (level, table)
    deleted: list[tuple[int, int]] = field(default_factory=list)  # (level, number)

    def encode(self) -> bytes:
        doc: dict[str, Any] = {}
        if self.log_number is not None:
            doc["log_number"] = self.log_number
        if self.next_file is not None:
            doc["next_file"] = self.next_file
        if self.last_seq is not None:
            doc["last_seq"] = self.last_seq
        if self.added:
            doc["add"] = [
                [
                    level,
                    t.number,
                    t.size,
                    t.smallest.hex(),
                    t.largest.hex(),
                    t.entries,
                    t.smallest_seq,
                    t.largest_seq,
                ]
                for level, t in self.added
            ]
        if self.deleted:
            doc["delete"] = [list(d) for d in self.deleted]
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    @staticmethod
    def decode(payload: bytes) -> VersionEdit:
        """Raises ValueError (or KeyError/TypeError) on a malformed edit."""
        doc = json.loads(payload)
        if not isinstance(doc, dict):
            raise ValueError("version edit is not an object")
        edit = VersionEdit(
            log_number=_opt_int(doc, "log_number"),
            next_file=_opt_int(doc, "next_file"),
            last_seq=_opt_int(doc, "last_seq"),
        )
        unknown = set(doc) - {"log_number", "next_file", "last_seq", "add", "delete"}
        if unknown:
            raise ValueError(f"unknown version edit fields {sorted(unknown)}")
        for level, number, size, smallest, largest, entries, sseq, lseq in doc.get("add", []):
            table = Table(
                int(number),
                int(size),
                bytes.fromhex(smallest),
                bytes.fromhex(largest),
                int(entries),
                int(sseq),
                int(lseq),
            )
            edit.added.append((int(level), table))
        edit.deleted = [(int(level), int(number)) for level, number in doc.get("delete", [])]
        return edit


def _opt_int(doc: dict[str, Any], name: str) -> int | None:
    value = doc.get(name)
    if value is not None and (type(value) is not int or value < 0):
        raise ValueError(f"version edit field {name} is not a non-negative integer: {value!r}")
    return value


@dataclass(frozen=True, eq=False)
class Version:
    levels: tuple[tuple[Table, ...], ...]

    @staticmethod
    def empty() -> Version:
        return Version(tuple(() for _ in range(NUM_LEVELS)))

    def tables(self) -> list[Table]:
        return [t for level in self.levels for t in level]

    def level_bytes(self, level: int) -> int:
        return sum(t.size for t in self.levels[level])

    def overlapping(self, level: int, start: bytes | None, end: bytes | None) -> list[Table]:
        return [t for t in self.levels[level] if t.overlaps(start, end)]

    def __post_init__(self) -> None:
        largest = tuple([t.largest for t in level] for level in self.levels)
        object.__setattr__(self, "_largest", largest)
        # For point reads: (tables, their largest keys) of each non-empty level >= 1.
        deep = tuple((self.levels[i], largest[i]) for i in range(1, NUM_LEVELS) if self.levels[i])
        object.__setattr__(self, "deep_levels", deep)

    def find(self, level: int, key: bytes) -> Table | None:
        """The table of a level >= 1 whose range may contain `key`."""
        tables = self.levels[level]
        i = bisect_left(self._largest[level], key)  # type: ignore[attr-defined]
        if i < len(tables) and tables[i].smallest <= key:
            return tables[i]
        return None

    def first_at_or_after(self, level: int, key: bytes) -> int:
        """Index of the first table of a level >= 1 whose largest key is >= `key`."""
        return bisect_left(self._largest[level], key)  # type: ignore[attr-defined]

    def apply(self, edit: VersionEdit) -> Version:
        levels = [list(level) for level in self.levels]
        for level, number in edit.deleted:
            before = len(levels[level])
            levels[level] = [t for t in levels[level] if t.number != number]
            invariant(len(levels[level]) == before - 1, f"edit deletes absent table {number}")
        for level, table in edit.added:
            levels[level].append(table)
        levels[0].sort(key=lambda t: (t.largest_seq, t.number), reverse=True)
        for level in range(1, NUM_LEVELS):
            levels[level].sort(key=lambda t: t.smallest)
            tables = levels[level]
            for a, b in itertools.pairwise(tables):
                invariant(
                    a.largest < b.smallest,
                    f"level {level} tables {a.number} and {b.number} overlap",
                )
        return Version(tuple(tuple(level) for level in levels))

    def snapshot_edit(self) -> VersionEdit:
        """An edit that rebuilds this version from nothing (a fresh MANIFEST's first record)."""
        return VersionEdit(added=[(lvl, t) for lvl, level in enumerate(self.levels) for t in level])
