"""`Workers`: a fixed set of threads that run blocking calls for asyncio code, with
one future per call.

`loop.run_in_executor` on a `concurrent.futures.ThreadPoolExecutor` makes, per call,
a `concurrent.futures.Future` (with its own condition variable), an asyncio future
chained to it by callbacks, and, to let the call finish when its caller is cancelled,
an `asyncio.shield` around that: 53-59 µs of CPU per call on the 2-vCPU VM of the
benchmarks (uvloop) with eight calls in flight, 100-118 µs one at a time. Here a call
is a tuple on a `queue.SimpleQueue`, the worker thread settles one asyncio future
through `call_soon_threadsafe`, and the future refuses cancellation while its call
runs: 15-16 µs and 58-62 µs. The storage service makes several calls per block it
reads or writes; repair runs alternating with and without this did not differ beyond
the VM's noise.

**Cancellation.** A thread cannot be stopped, so a caller that is cancelled while
its call runs stays suspended until the call returns, and only then gets its
`CancelledError` (asyncio's timeouts then turn it into `TimeoutError` as usual).
Whatever the call returned by then is handed to `discard` (which closes a file or
aborts a writer, in a worker thread) instead of being lost with its file descriptor;
cleanup code in the caller never races with the call.

**Bounds.** Calls wait in an unbounded queue for a free thread: each caller of the
storage service, the raft host or the gateway holds at most a few calls at once, and
those callers are bounded themselves (requests in flight, shard slots, device I/O
slots).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger("atoll.base.workers")

T = TypeVar("T")


class WorkersStopped(RuntimeError):
    """A call was made after `stop()`."""


class _Call(asyncio.Future[Any]):
    """The future of one call: it cannot be cancelled (the thread runs the call to its
    end), so `Task.cancel()` marks the awaiting task instead, which gets its
    `CancelledError` once the call returned."""

    def cancel(self, msg: Any = None) -> bool:
        return False


class Workers:
    """`threads` daemon threads named `name`-N, started by the constructor. `run`
    must be awaited on one event loop at a time per call; calls from several loops
    are allowed (each call settles on its own caller's loop)."""

    def __init__(self, threads: int, name: str) -> None:
        if threads < 1:
            raise ValueError(f"Workers needs at least one thread, got {threads}")
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    async def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        discard: Callable[[T], object] | None = None,
    ) -> T:
        """`fn(*args)` in a worker thread; its result, or what it raised. If the
        caller is cancelled meanwhile, the cancellation takes effect once the call
        returned, and its result goes to `discard` (run in a worker, failures logged)."""
        if self._stopped:
            raise WorkersStopped("the worker threads are stopped")
        call = _Call(loop=asyncio.get_running_loop())
        self._queue.put((call, fn, args))
        try:
            result: T = await call
            return result
        except asyncio.CancelledError:
            if discard is not None and call.done() and call.exception() is None:
                self.detach(discard, call.result())
            raise

    def detach(self, fn: Callable[..., object], *args: Any) -> None:
        """`fn(*args)` in a worker thread, nobody waiting for it: a failure is logged.
        Runs inline once the workers are stopped (a cleanup as the owner stops)."""
        if self._stopped:
            _logged(fn, args)
            return
        self._queue.put((None, fn, args))

    async def stop(self) -> None:
        """No call is accepted from now on; returns once the calls already queued
        have run and the threads have ended."""
        if self._stopped:
            return
        self._stopped = True
        for _ in self._threads:
            self._queue.put(None)
        await asyncio.to_thread(self._join)

    def _join(self) -> None:
        for thread in self._threads:
            thread.join()

    def _work(self) -> None:
        get = self._queue.get
        while (item := get()) is not None:
            call, fn, args = item
            if call is None:
                _logged(fn, args)
            else:
                try:
                    outcome: tuple[Callable[[_Call, Any], None], Any] = (_succeed, fn(*args))
                except BaseException as err:  # the caller's to handle, whatever it is
                    outcome = (_fail, err)
                _settle_soon(call, *outcome)
            # No reference to arguments or a result outlives its call.
            item = call = fn = args = outcome = None  # type: ignore[assignment]


_shared: Workers | None = None


def shared() -> Workers:
    """The process's pool for CPU work taken off the event loop (erasure coding,
    partial sums, digests of large body pieces), as asyncio's default executor is:
    created on first use with as many threads (min(32, CPUs + 4)); never stopped,
    its threads are daemons and its calls touch no file."""
    global _shared
    if _shared is None:
        _shared = Workers(min(32, (os.cpu_count() or 1) + 4), "atoll-compute")
    return _shared


def _settle_soon(call: _Call, settle: Callable[[_Call, Any], None], value: Any) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
        call.get_loop().call_soon_threadsafe(settle, call, value)


def _succeed(call: _Call, result: Any) -> None:
    call.set_result(result)


def _fail(call: _Call, err: BaseException) -> None:
    call.set_exception(err)


def _logged(fn: Callable[..., object], args: tuple[Any, ...]) -> None:
    try:
        fn(*args)
    except Exception as err:  # nobody awaits a detached call: say what went wrong
        log.warning("a detached call (%s) failed: %s", getattr(fn, "__qualname__", fn), err)


__all__ = ["Workers", "WorkersStopped", "shared"]
