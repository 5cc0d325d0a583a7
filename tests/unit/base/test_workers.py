"""`atoll.base.workers.Workers`: blocking calls in threads, one future each; a caller
cancelled while its call runs is cancelled only once the call returned, and what the
call returned goes to `discard`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

import pytest

from atoll.base.workers import Workers, WorkersStopped

WAIT_S = 10.0  # the longest any condition below is waited for


async def held_call(
    workers: Workers, discard: list[object] | None = None
) -> tuple[asyncio.Task[object], threading.Event, threading.Event]:
    """A task whose call is running in a worker and blocks until `release` is set."""
    started, release = threading.Event(), threading.Event()

    def blocking() -> object:
        started.set()
        assert release.wait(WAIT_S)
        return "opened"

    task = asyncio.ensure_future(
        workers.run(blocking, discard=None if discard is None else discard.append)
    )
    assert await asyncio.to_thread(started.wait, WAIT_S)
    return task, started, release


def with_workers(body: Callable[[Workers], Awaitable[None]]) -> None:
    """Run `body` on a fresh event loop with a pool of two threads, stopped after."""

    async def main() -> None:
        pool = Workers(2, "test-workers")
        try:
            await body(pool)
        finally:
            await pool.stop()

    asyncio.run(main())


def test_a_call_returns_its_result_and_runs_in_a_worker_thread() -> None:
    async def body(workers: Workers) -> None:
        name = await workers.run(lambda: threading.current_thread().name)
        assert name.startswith("test-workers-")
        assert await workers.run(pow, 2, 10) == 1024

    with_workers(body)


def test_a_call_raises_what_the_function_raised() -> None:
    async def body(workers: Workers) -> None:
        def fail() -> None:
            raise OSError(28, "No space left on device")

        with pytest.raises(OSError, match="No space left"):
            await workers.run(fail)

    with_workers(body)


def test_a_cancelled_caller_waits_for_its_call_and_the_result_is_discarded() -> None:
    async def body(workers: Workers) -> None:
        discarded: list[object] = []
        task, _, release = await held_call(workers, discarded)
        task.cancel()
        await asyncio.sleep(0)  # the cancellation is requested; the call still runs
        assert not task.done()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The discard runs in a worker after the cancellation went through.
        for _ in range(int(WAIT_S / 0.01)):
            if discarded:
                break
            await asyncio.sleep(0.01)
        assert discarded == ["opened"]

    with_workers(body)


def test_a_timeout_takes_effect_when_the_call_returns() -> None:
    async def body(workers: Workers) -> None:
        release = threading.Event()

        def slow() -> str:
            release.wait(WAIT_S)
            return "late"

        async def timed() -> str:
            async with asyncio.timeout(0.05):
                return await workers.run(slow)

        task = asyncio.ensure_future(timed())
        await asyncio.sleep(0.2)  # well past the timeout: still waiting for the thread
        assert not task.done()
        release.set()
        with pytest.raises(TimeoutError):
            await task

    with_workers(body)


def test_a_detached_call_that_fails_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def body(workers: Workers) -> None:
        def broken() -> None:
            raise ValueError("close failed")

        workers.detach(broken)
        assert await workers.run(lambda: "after")  # the queue is in order: it ran first
        for _ in range(int(WAIT_S / 0.01)):
            if "close failed" in caplog.text:
                break
            await asyncio.sleep(0.01)
        assert "close failed" in caplog.text

    with_workers(body)


def test_stop_waits_for_queued_calls_and_refuses_new_ones() -> None:
    asyncio.run(stop_waits_for_queued_calls_and_refuses_new_ones())


async def stop_waits_for_queued_calls_and_refuses_new_ones() -> None:
    pool = Workers(1, "test-stop")
    task, _, release = await held_call(pool)
    queued = asyncio.ensure_future(pool.run(lambda: "queued"))
    await asyncio.sleep(0)
    stopping = asyncio.ensure_future(pool.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, WAIT_S)
    assert await task == "opened" and await queued == "queued"
    with pytest.raises(WorkersStopped):
        await pool.run(lambda: None)
    ran: list[int] = []
    pool.detach(ran.append, 1)  # inline once stopped
    assert ran == [1]


def test_a_pool_needs_a_thread() -> None:
    with pytest.raises(ValueError, match="at least one thread"):
        Workers(0, "none")
