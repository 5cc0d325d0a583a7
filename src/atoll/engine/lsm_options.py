"""Options of the LSM engine, validated once into a frozen dataclass. Pure."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True)
class LsmOptions:
    memtable_size_bytes: int = 64 * MiB
    block_size_bytes: int = 16 * KiB
    bloom_bits_per_key: int = 10
    block_cache_bytes: int = 32 * MiB
    # 0 means derived from the memtable size (see `resolve`).
    table_target_bytes: int = 0
    level_base_bytes: int = 0
    level_multiplier: int = 10
    level0_compaction_trigger: int = 4
    # At this many level-0 tables each write yields 1 ms to the background (as
    # RocksDB's slowdown trigger); at the stop trigger writes wait.
    level0_slowdown_trigger: int = 20
    level0_stop_trigger: int = 36  # as RocksDB's default
    max_immutable_memtables: int = 4
    manifest_max_bytes: int = 4 * MiB
    # "process": flushes and compactions run in worker processes (they use the other
    # core instead of holding the GIL); "thread": in a thread of this process.
    background: str = "process"
    # A write stalled by flow control waits at most this long before failing.
    stall_timeout_s: float = 600.0

    @staticmethod
    def from_kwargs(**options: Any) -> LsmOptions:
        known = {f.name for f in fields(LsmOptions)}
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"unknown LSM engine options: {', '.join(sorted(unknown))}")
        return LsmOptions(**options).resolve()

    def resolve(self) -> LsmOptions:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "background":
                if value not in ("process", "thread"):
                    raise ValueError(f"background must be 'process' or 'thread', not {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"option {f.name} must be a non-negative number, not {value!r}")
        if self.memtable_size_bytes < 1024:
            raise ValueError("memtable_size_bytes must be at least 1024")
        if self.level_multiplier < 2 or self.level0_compaction_trigger < 1:
            raise ValueError("level_multiplier must be >= 2 and level0_compaction_trigger >= 1")
        if self.level0_stop_trigger <= self.level0_compaction_trigger:
            raise ValueError("level0_stop_trigger must exceed level0_compaction_trigger")
        if self.level0_slowdown_trigger > self.level0_stop_trigger:
            raise ValueError("level0_slowdown_trigger must not exceed level0_stop_trigger")
        if self.block_size_bytes < 256 or self.max_immutable_memtables < 1:
            raise ValueError("block_size_bytes must be >= 256 and max_immutable_memtables >= 1")
        target = self.table_target_bytes or min(
            max(self.memtable_size_bytes // 2, 32 * KiB), 8 * MiB
        )
        base = self.level_base_bytes or self.memtable_size_bytes * self.level0_compaction_trigger
        return replace(self, table_target_bytes=target, level_base_bytes=base)
