"""Expected failures of the storage service (shared/STYLE.md §7) and their stable
error codes on the wire (docs/formats/storage.md §5). Pure: no I/O.

Each error class carries its `code`, the name of the atoll.rpc application error frame
(`HandlerError(code, detail)`) the service answers with, and the client raises the
same class again from that code (`error_from_code`). Where a built-in category
applies the error inherits it too, so callers may catch either: `DeviceFull` is an
`OSError` (as `ENOSPC` is), `ShardNotFound` a `FileNotFoundError`, `InvalidArgument`
a `ValueError`, `UnknownDevice` a `LookupError`.

`classify_os_error` tells, from an `OSError`'s errno, whether the device is full, has
failed (its I/O or its directory is gone), or neither (the caller decides).
"""

from __future__ import annotations

import errno

from atoll.base.errors import AtollError, CorruptionError

ERROR_SHARD_NOT_FOUND = "shard_not_found"
ERROR_SHARD_CORRUPT = "shard_corrupt"
ERROR_DEVICE_FULL = "device_full"
ERROR_UNKNOWN_DEVICE = "unknown_device"
ERROR_DEVICE_FAILED = "device_failed"
ERROR_STALE_EPOCH = "stale_epoch"
ERROR_INVALID_ARGUMENT = "invalid_argument"


class StorageError(AtollError):
    """Root of storage failures. `device_id` names the device when there is one."""

    code = "storage_error"

    def __init__(self, message: str, *, device_id: int | None = None) -> None:
        where = f"device {device_id}: " if device_id is not None else ""
        super().__init__(f"{where}{message}")
        self.message = message
        self.device_id = device_id


class InvalidArgument(StorageError, ValueError):
    """A request the service cannot carry out as asked: a malformed message, a shard
    id or profile outside the limits, blocks that do not fit the declared layout, a
    block whose CRC-32C does not match the one sent with it, a range outside the
    shard."""

    code = ERROR_INVALID_ARGUMENT


class UnknownDevice(StorageError, LookupError):
    """The request names a device this node does not have."""

    code = ERROR_UNKNOWN_DEVICE


class StaleEpoch(StorageError):
    """The request was routed with a cluster-map epoch the node refuses (the node's
    `check_epoch` hook gave a reason); the caller should refresh its map."""

    code = ERROR_STALE_EPOCH

    def __init__(self, message: str, *, epoch: int, device_id: int | None = None) -> None:
        super().__init__(message, device_id=device_id)
        self.epoch = epoch


class DeviceFailed(StorageError, OSError):
    """The device's I/O failed (EIO, a read-only or vanished file system, its
    directory replaced or removed). The node marks it failed in the cluster map; it
    refuses every request until the node restarts."""

    code = ERROR_DEVICE_FAILED


class DeviceFull(StorageError, OSError):
    """The write does not fit: the device's configured capacity, less the bytes its
    shard files use and the bytes reserved by writes in flight, is smaller than the
    file (or the file system itself ran out of space). No partial file is left."""

    code = ERROR_DEVICE_FULL

    def __init__(
        self,
        message: str,
        *,
        needed_bytes: int = 0,
        free_bytes: int = 0,
        device_id: int | None = None,
    ) -> None:
        super().__init__(message, device_id=device_id)
        self.needed_bytes = needed_bytes
        self.free_bytes = free_bytes


class ShardNotFound(StorageError, FileNotFoundError):
    """The device holds no shard file of that name."""

    code = ERROR_SHARD_NOT_FOUND


class ShardCorrupt(StorageError, CorruptionError):
    """A stored shard file fails a check: a block's or the header's CRC-32C, its
    size, or its header names another shard than the one asked for. No byte of a bad
    block is ever returned. `block` is the bad block's index when a block failed;
    `file`, `offset`, `expected` and `actual` as in `CorruptionError`. The caller
    decides: reconstruct the shard from others, then rewrite or delete this one."""

    code = ERROR_SHARD_CORRUPT

    def __init__(
        self,
        message: str,
        *,
        file: str,
        block: int | None = None,
        offset: int | None = None,
        expected: int | None = None,
        actual: int | None = None,
        device_id: int | None = None,
    ) -> None:
        where = f"device {device_id}: " if device_id is not None else ""
        which = f"block {block}: " if block is not None else ""
        CorruptionError.__init__(
            self,
            f"{where}{which}{message}",
            file=file,
            offset=offset,
            expected=expected,
            actual=actual,
        )
        self.message = message
        self.device_id = device_id
        self.block = block


class ProtocolError(StorageError):
    """A reply that breaks this service's protocol (a message that does not parse, a
    stream whose offsets or checksums do not add up): a bug or a corrupted transfer
    on the peer's side. Raised by the client."""


ERROR_TYPES: dict[str, type[StorageError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        UnknownDevice,
        StaleEpoch,
        DeviceFailed,
        DeviceFull,
        ShardNotFound,
        ShardCorrupt,
    )
}
"""Every application error code the service sends, and the error it stands for."""


# errno values that mean the device itself cannot be used: its I/O fails, its file
# system went read-only or away, or its directory was replaced, removed or made
# inaccessible. ENOENT is not here: a missing shard file is normal, and a missing
# device directory is detected separately (the shell checks the root's identity).
DEVICE_FAULT_ERRNOS = frozenset(
    {
        errno.EIO,
        errno.EROFS,
        errno.ENOTDIR,
        errno.ENXIO,
        errno.ENODEV,
        errno.ESTALE,
        errno.EUCLEAN,
        errno.EACCES,
        errno.EPERM,
    }
)
DEVICE_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

FAULT_NONE = "none"
FAULT_FULL = "full"
FAULT_DEVICE = "device"


def classify_os_error(err: OSError) -> str:
    """`FAULT_FULL`, `FAULT_DEVICE` or `FAULT_NONE` for an `OSError` met doing a
    device's I/O."""
    if err.errno in DEVICE_FULL_ERRNOS:
        return FAULT_FULL
    if err.errno in DEVICE_FAULT_ERRNOS:
        return FAULT_DEVICE
    return FAULT_NONE


__all__ = [
    "DEVICE_FAULT_ERRNOS",
    "DEVICE_FULL_ERRNOS",
    "ERROR_DEVICE_FAILED",
    "ERROR_DEVICE_FULL",
    "ERROR_INVALID_ARGUMENT",
    "ERROR_SHARD_CORRUPT",
    "ERROR_SHARD_NOT_FOUND",
    "ERROR_STALE_EPOCH",
    "ERROR_TYPES",
    "ERROR_UNKNOWN_DEVICE",
    "FAULT_DEVICE",
    "FAULT_FULL",
    "FAULT_NONE",
    "DeviceFailed",
    "DeviceFull",
    "InvalidArgument",
    "ProtocolError",
    "ShardCorrupt",
    "ShardNotFound",
    "StaleEpoch",
    "StorageError",
    "UnknownDevice",
    "classify_os_error",
]
