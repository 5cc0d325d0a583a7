"""`AsyncEngine`: any `Engine` for asyncio code, with every call run in a thread pool.

Owns nothing but the hand-off: each method runs the engine's blocking call through
`loop.run_in_executor`, so fsyncs, flushes and compactions never block the event
loop (shared/STYLE.md §6). Does I/O only through the wrapped engine.

Scans come back as lists (optionally capped by `limit`) rather than async iterators:
a scan runs to completion on one worker thread, which keeps each engine iterator on
one thread at a time and releases its resources before the call returns.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from typing import Any, ParamSpec, Self, TypeVar

from atoll.engine.api import Engine, ReadView, Snapshot, WriteBatch

_P = ParamSpec("_P")
_T = TypeVar("_T")


def _collect(
    view: ReadView, start: bytes, end: bytes | None, reverse: bool, limit: int | None
) -> list[tuple[bytes, bytes]]:
    iterator: Iterator[tuple[bytes, bytes]] = view.scan(start, end, reverse)
    try:
        return list(itertools.islice(iterator, limit))
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()  # release a snapshot or transaction the iterator may hold


def _check_limit(limit: int | None) -> None:
    if limit is not None and (type(limit) is not int or limit < 0):
        raise ValueError(f"limit must be None or an int >= 0, not {limit!r}")


class _Runner:
    """Runs blocking callables on `executor` (None: the loop's default pool)."""

    def __init__(self, executor: Executor | None) -> None:
        self.executor = executor

    async def run(self, func: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(func, *args, **kwargs))


class AsyncEngine:
    """Awaitable wrapper of an `Engine`; the engine itself stays reachable as `engine`."""

    def __init__(self, engine: Engine, executor: Executor | None = None) -> None:
        self.engine = engine
        self._runner = _Runner(executor)

    @classmethod
    async def open(
        cls, path: str, kind: str = "lsm", executor: Executor | None = None, **options: Any
    ) -> AsyncEngine:
        """Open an engine with `atoll.engine.open_engine` on the executor (opening may
        replay a WAL) and wrap it."""
        from atoll.engine import open_engine

        engine = await _Runner(executor).run(open_engine, path, kind, **options)
        return cls(engine, executor)

    async def get(self, key: bytes) -> bytes | None:
        return await self._runner.run(self.engine.get, key)

    async def put(self, key: bytes, value: bytes, sync: bool = False) -> None:
        await self._runner.run(self.engine.put, key, value, sync)

    async def delete(self, key: bytes, sync: bool = False) -> None:
        await self._runner.run(self.engine.delete, key, sync)

    async def write(self, batch: WriteBatch, sync: bool = False) -> None:
        await self._runner.run(self.engine.write, batch, sync)

    async def scan(
        self,
        start: bytes = b"",
        end: bytes | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> list[tuple[bytes, bytes]]:
        """The pairs in `[start, end)` (at most `limit` of them), read point-in-time."""
        _check_limit(limit)
        return await self._runner.run(_collect, self.engine, start, end, reverse, limit)

    async def snapshot(self) -> AsyncSnapshot:
        """A point-in-time view; use as `async with await engine.snapshot() as snap:`."""
        snapshot = await self._runner.run(self.engine.snapshot)
        return AsyncSnapshot(snapshot, self._runner)

    async def checkpoint(self, path: str) -> None:
        await self._runner.run(self.engine.checkpoint, path)

    async def approximate_size(self, start: bytes, end: bytes) -> int:
        return await self._runner.run(self.engine.approximate_size, start, end)

    async def compact_range(self, start: bytes | None = None, end: bytes | None = None) -> None:
        await self._runner.run(self.engine.compact_range, start, end)

    async def flush(self) -> None:
        await self._runner.run(self.engine.flush)

    async def stats(self) -> dict[str, Any]:
        return await self._runner.run(self.engine.stats)

    async def close(self) -> None:
        await self._runner.run(self.engine.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncSnapshot:
    """Awaitable wrapper of a `Snapshot`; closes it on `async with` exit."""

    def __init__(self, snapshot: Snapshot, runner: _Runner) -> None:
        self.snapshot = snapshot
        self._runner = runner

    async def get(self, key: bytes) -> bytes | None:
        return await self._runner.run(self.snapshot.get, key)

    async def scan(
        self,
        start: bytes = b"",
        end: bytes | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> list[tuple[bytes, bytes]]:
        _check_limit(limit)
        return await self._runner.run(_collect, self.snapshot, start, end, reverse, limit)

    async def close(self) -> None:
        await self._runner.run(self.snapshot.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
