"""`DeviceIo`: the storage service's blocking calls (file I/O, and the CPU work of
combining blocks) in its own bounded thread pool, never on the event loop.

At most `io_max` calls run at once per device (`Device.io_slots`). A caller that is
cancelled does not leave a call running behind its back: the cancellation waits for
the thread to return, and what an open returned by then is closed (`discard`). OS
errors are classified (`errors.classify_os_error`): a full file system is
`DeviceFull`; a device fault is `DeviceFailed`, after the `on_fault` hook (which marks
the device failed); shard file errors become the service's typed errors.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from atoll.erasure.errors import (
    ErasureError,
    HeaderFieldError,
    InvalidProfile,
    InvalidRange,
    ShardLengthError,
    ShardWriteError,
)
from atoll.erasure.errors import ShardCorrupt as ShardFileCorrupt
from atoll.storage.devices import Device
from atoll.storage.errors import (
    FAULT_DEVICE,
    FAULT_FULL,
    DeviceFailed,
    DeviceFull,
    InvalidArgument,
    ShardCorrupt,
    StorageError,
    classify_os_error,
)

log = logging.getLogger("atoll.storage.service")

T = TypeVar("T")


class DeviceIo:
    """The pool, started with `start(threads)` and shut down by `stop()`.
    `on_fault(device, error)` is called (on the event loop) for an I/O error that
    is a device fault."""

    def __init__(self, on_fault: Callable[[Device, OSError], None]) -> None:
        self._on_fault = on_fault
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def start(self, threads: int) -> None:
        if self._executor is not None:
            raise RuntimeError("the storage service is already started")
        self._executor = concurrent.futures.ThreadPoolExecutor(
            threads, thread_name_prefix="atoll-storage"
        )

    async def stop(self) -> None:
        """Shut the pool down, waiting for the calls running in it."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown, True)

    def pool(self, device_id: int | None = None) -> concurrent.futures.ThreadPoolExecutor:
        executor = self._executor
        if executor is None:
            raise StorageError("the storage service is not started", device_id=device_id)
        return executor

    async def run(
        self,
        device: Device,
        fn: Callable[..., T],
        *args: Any,
        discard: Callable[[T], object] | None = None,
    ) -> T:
        """`fn(*args)` in the pool, at most `io_max` at once on `device`; failures
        translated to storage errors (and device faults reported). `discard` undoes
        what `fn` returns (closes a reader, aborts a writer) if the caller is
        cancelled while `fn` runs: otherwise its file descriptor would leak."""
        executor = self.pool(device.id)
        abandoned = None if discard is None else _discarding(executor, discard)
        async with device.io_slots:
            future = asyncio.get_running_loop().run_in_executor(executor, fn, *args)
            try:
                return await run_to_end(future, abandoned)
            except StorageError:
                raise
            except OSError as err:
                translated = self._os_error(device, err)
                if translated is None:
                    raise  # neither full nor failed (EMFILE, ...): the caller's to report
                raise translated from err
            except ErasureError as err:
                raise _translate_erasure(err, device.id) from err

    async def compute(self, fn: Callable[..., T], *args: Any) -> T:
        """CPU work (no device I/O) in the pool."""
        future = asyncio.get_running_loop().run_in_executor(self.pool(), fn, *args)
        try:
            return await run_to_end(future)
        except ErasureError as err:  # a bug here: the arguments were checked
            raise StorageError(f"{type(err).__name__}: {err}") from err

    async def cleanup(self, device: Device, fn: Callable[[], object], what: str) -> None:
        """Run a cleanup call (abort a writer) in the pool, to its end even if
        cancelled; its failure is logged, not raised (the original error matters)."""
        try:
            await self.run(device, fn)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # cleanup after a failure: report the first error
            log.warning("storage: device %d: %s failed: %s", device.id, what, err)

    def _os_error(self, device: Device, err: OSError) -> StorageError | None:
        kind = classify_os_error(err)
        if kind == FAULT_FULL:
            return DeviceFull(f"the file system is full: {err}", device_id=device.id)
        if kind == FAULT_DEVICE:
            self._on_fault(device, err)
            return DeviceFailed(f"I/O failed: {err}", device_id=device.id)
        return None


async def run_to_end(future: asyncio.Future[T], abandoned: Callable[[T], None] | None = None) -> T:
    """Await a call running in a thread. If the awaiting task is cancelled, wait for
    the call to end before letting the cancellation through: the caller's cleanup
    (aborting a writer, closing a reader) must not race with it. What the call
    returned after all goes to `abandoned` (which closes it): the caller never gets it."""
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            # Held back only until the thread returns; re-raised just below.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([future])
        if not future.cancelled() and future.exception() is None and abandoned is not None:
            abandoned(future.result())
        raise


def _discarding(
    executor: concurrent.futures.ThreadPoolExecutor, discard: Callable[[T], object]
) -> Callable[[T], None]:
    """`discard` of an abandoned value, run in the pool (inline once the pool is
    shut down, as the service stops); a failure is logged."""

    def abandoned(value: T) -> None:
        try:
            done = executor.submit(discard, value)
        except RuntimeError:  # the pool is shut down
            discard(value)
            return
        done.add_done_callback(_log_discard_failure)

    return abandoned


def _log_discard_failure(done: concurrent.futures.Future[object]) -> None:
    err = done.exception()
    if err is not None:
        log.warning("storage: closing what a cancelled call opened failed: %s", err)


def _translate_erasure(err: ErasureError, device_id: int) -> StorageError:
    if isinstance(err, ShardFileCorrupt):
        return ShardCorrupt(
            str(err),
            file=err.file,
            block=err.block,
            offset=err.offset,
            expected=err.expected,
            actual=err.actual,
            device_id=device_id,
        )
    if isinstance(
        err, ShardWriteError | HeaderFieldError | InvalidRange | InvalidProfile | ShardLengthError
    ):
        return InvalidArgument(str(err), device_id=device_id)
    return StorageError(f"{type(err).__name__}: {err}", device_id=device_id)


__all__ = ["DeviceIo", "run_to_end"]
