"""Expected failures of the local storage engine (shared/STYLE.md §7). Pure."""

from __future__ import annotations

from atoll.base.errors import AtollError, CorruptionError


class EngineError(AtollError):
    """Root of engine failures."""


class EngineClosedError(EngineError):
    """An operation on an engine (or snapshot, or iterator) after `close()`."""


class EngineLockedError(EngineError, OSError):
    """Another process (or another open engine in this process) holds the directory."""


class BackgroundError(EngineError):
    """A background flush or compaction failed; the engine refuses further writes."""


__all__ = [
    "BackgroundError",
    "CorruptionError",
    "EngineClosedError",
    "EngineError",
    "EngineLockedError",
]
