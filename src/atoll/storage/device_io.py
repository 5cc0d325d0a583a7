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
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from atoll.base.workers import Workers
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
        self._workers: Workers | None = None

    def start(self, threads: int) -> None:
        if self._workers is not None:
            raise RuntimeError("the storage service is already started")
        self._workers = Workers(threads, "atoll-storage")

    async def stop(self) -> None:
        """Shut the pool down, waiting for the calls running in it."""
        workers, self._workers = self._workers, None
        if workers is not None:
            await workers.stop()

    def _pool(self, device_id: int | None = None) -> Workers:
        workers = self._workers
        if workers is None:
            raise StorageError("the storage service is not started", device_id=device_id)
        return workers

    async def run(
        self,
        device: Device,
        fn: Callable[..., T],
        *args: Any,
        discard: Callable[[T], object] | None = None,
    ) -> T:
        """`fn(*args)` in the pool, at most `io_max` at once on `device`; failures
        translated to storage errors (and device faults reported). A caller cancelled
        while `fn` runs is cancelled once it returned (`atoll.base.workers`), and
        `discard` undoes what it returned (closes a reader, aborts a writer): otherwise
        its file descriptor would leak."""
        workers = self._pool(device.id)
        async with device.io_slots:
            try:
                return await workers.run(fn, *args, discard=discard)
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
        try:
            return await self._pool().run(fn, *args)
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


__all__ = ["DeviceIo"]
