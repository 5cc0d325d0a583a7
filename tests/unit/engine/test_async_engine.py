"""`AsyncEngine`: every call reaches the wrapped engine, off the event loop thread."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import atoll.engine
from atoll.engine import EngineClosedError, WriteBatch
from atoll.engine.async_engine import AsyncEngine
from atoll.engine.memory_engine import MemoryEngine


def test_exported_lazily_by_the_package() -> None:
    assert atoll.engine.AsyncEngine is AsyncEngine


def test_round_trip_through_every_method(tmp_path: Path) -> None:
    async def main() -> None:
        engine = await AsyncEngine.open(str(tmp_path / "db"), kind="lmdb", memtable_size_bytes=4096)
        async with engine:
            await engine.put(b"a", b"1")
            await engine.put(b"b", b"2", sync=True)
            await engine.write(WriteBatch().put(b"c", b"3").delete(b"b"))
            await engine.delete(b"missing")
            assert await engine.get(b"a") == b"1"
            assert await engine.get(b"b") is None
            assert await engine.scan() == [(b"a", b"1"), (b"c", b"3")]
            assert await engine.scan(reverse=True, limit=1) == [(b"c", b"3")]
            assert await engine.scan(b"b", b"d") == [(b"c", b"3")]
            assert await engine.scan(limit=0) == []
            async with await engine.snapshot() as snap:
                await engine.put(b"d", b"4")
                assert await snap.get(b"d") is None
                assert await snap.scan(limit=5) == [(b"a", b"1"), (b"c", b"3")]
            assert await engine.approximate_size(b"", b"\xff") > 0
            await engine.compact_range()
            await engine.flush()
            assert (await engine.stats())["kind"] == "lmdb"
            await engine.checkpoint(str(tmp_path / "cp"))
        with pytest.raises(EngineClosedError):
            await engine.get(b"a")

    asyncio.run(main())


def test_calls_run_on_the_executor() -> None:
    class Recording(MemoryEngine):
        threads: set[int] = set()

        def put(self, key: bytes, value: bytes, sync: bool = False) -> None:
            self.threads.add(threading.get_ident())
            super().put(key, value, sync)

    async def main() -> None:
        loop_thread = threading.get_ident()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine") as pool:
            engine = AsyncEngine(Recording(), executor=pool)
            await asyncio.gather(*(engine.put(b"%d" % i, b"v") for i in range(20)))
            assert len(await engine.scan()) == 20
        assert loop_thread not in Recording.threads
        assert len(Recording.threads) == 1

    asyncio.run(main())


def test_errors_propagate_and_limit_is_checked() -> None:
    async def main() -> None:
        engine = AsyncEngine(MemoryEngine())
        with pytest.raises(TypeError):
            await engine.put("a", b"1")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await engine.scan(limit=-1)

    asyncio.run(main())
