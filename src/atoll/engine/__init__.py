"""Atoll's local storage engine (shared/DESIGN.md §7; formats in docs/formats.md).

`open_engine(path, kind="lsm" | "lmdb" | "memory", **options)` returns an `Engine`:
the LSM tree written in this package, the same interface over LMDB (a B+tree), or an
in-memory engine for unit tests of other layers. `AsyncEngine` wraps any of them for
asyncio code without blocking the event loop.
"""

from __future__ import annotations

from typing import Any

from atoll.engine.api import Engine, Snapshot, WriteBatch
from atoll.engine.errors import (
    BackgroundError,
    CorruptionError,
    EngineClosedError,
    EngineError,
    EngineLockedError,
)

KINDS = ("lsm", "lmdb", "memory")


def open_engine(path: str, kind: str = "lsm", **options: Any) -> Engine:
    """Open (creating if needed) the engine of `kind` stored under directory `path`."""
    if kind == "lsm":
        from atoll.engine.lsm import LsmEngine

        return LsmEngine.open(path, **options)
    if kind == "lmdb":
        from atoll.engine.lmdb_engine import LmdbEngine

        return LmdbEngine.open(path, **options)
    if kind == "memory":
        from atoll.engine.memory_engine import MemoryEngine

        return MemoryEngine(**options)
    raise ValueError(f"unknown engine kind {kind!r}; expected one of {', '.join(KINDS)}")


def __getattr__(name: str) -> Any:
    # AsyncEngine pulls in asyncio; import it lazily so threads-only users do not pay.
    if name == "AsyncEngine":
        from atoll.engine.async_engine import AsyncEngine

        return AsyncEngine
    raise AttributeError(name)


__all__ = [
    "KINDS",
    "AsyncEngine",
    "BackgroundError",
    "CorruptionError",
    "Engine",
    "EngineClosedError",
    "EngineError",
    "EngineLockedError",
    "Snapshot",
    "WriteBatch",
    "open_engine",
]
