"""Expected failures of the replicated key-value service (shared/STYLE.md §7). Pure.

Where a built-in category applies the error inherits it too, so callers may catch
either: a `CommandError` is a `ValueError`. Damaged records read back from the local
engine are `atoll.base.errors.CorruptionError`, not a type of this package.
"""

from __future__ import annotations

from atoll.base.errors import AtollError


class KvError(AtollError):
    """Root of key-value failures."""


class CommandError(KvError, ValueError):
    """A command that cannot be built, encoded or decoded (docs/formats/kv.md §1).

    Raised by the command records' constructors for bad arguments and by `decode` for
    bytes that are not a valid v1 command. `offset` is the byte position in the encoded
    command where decoding stopped (None while building or encoding).
    """

    def __init__(self, reason: str, *, offset: int | None = None) -> None:
        where = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"bad kv command{where}: {reason}")
        self.reason = reason
        self.offset = offset


class CommandLimitError(CommandError):
    """A key, value, operation count or command size over its named limit."""

    def __init__(self, what: str, actual: int, limit: int, *, offset: int | None = None) -> None:
        super().__init__(f"{what} is {actual}, over the limit of {limit}", offset=offset)
        self.what = what
        self.actual = actual
        self.limit = limit


class CommandChecksumError(CommandError):
    """The CRC-32C stored in a command does not match its body."""

    def __init__(self, *, expected: int, actual: int) -> None:
        super().__init__(f"body crc32c {actual:#010x}, header says {expected:#010x}", offset=2)
        self.expected = expected
        self.actual = actual


class UnsupportedCommandVersion(CommandError):
    """A command written by a newer format version than this node knows.

    During a rolling upgrade this means a newer node proposed a command that this
    replica cannot apply; the replica must stop applying rather than diverge.
    """

    def __init__(self, version: int) -> None:
        super().__init__(f"unsupported command format version {version}", offset=1)
        self.version = version


class Compacted(KvError):
    """The history before `compact_revision` is gone: a watch from `requested_revision`
    can no longer be served (etcd's ErrCompacted). The client re-reads the current
    state and watches from the revision of that read plus one."""

    def __init__(self, *, compact_revision: int, requested_revision: int) -> None:
        super().__init__(
            f"revision {requested_revision} is compacted: history starts at revision "
            f"{compact_revision}"
        )
        self.compact_revision = compact_revision
        self.requested_revision = requested_revision


class SnapshotError(KvError, ValueError):
    """A region snapshot chunk that cannot be used: bad magic, version, checksum or
    structure, a chunk from another region or another snapshot, chunks out of order,
    or a stream that ended before its last chunk (docs/formats/kv.md §5).

    `chunk_index` is the position of the offending chunk in the stream (None when the
    stream as a whole is at fault). A failed restore leaves the region marked as
    restore-pending: it refuses to apply until a complete restore succeeds.
    """

    def __init__(self, reason: str, *, chunk_index: int | None = None) -> None:
        where = f" (chunk {chunk_index})" if chunk_index is not None else ""
        super().__init__(f"bad kv snapshot{where}: {reason}")
        self.reason = reason
        self.chunk_index = chunk_index


class SnapshotChecksumError(SnapshotError):
    """A snapshot chunk whose CRC-32C does not match its bytes."""

    def __init__(self, *, expected: int, actual: int, chunk_index: int | None = None) -> None:
        super().__init__(
            f"chunk crc32c {actual:#010x}, stored {expected:#010x}", chunk_index=chunk_index
        )
        self.expected = expected
        self.actual = actual


class RestorePending(KvError):
    """The region holds a partial snapshot restore (a crash or a bad chunk cut it
    short): it must be restored from a complete snapshot before it applies entries."""

    def __init__(self, region_id: int) -> None:
        super().__init__(f"region {region_id} holds a partial snapshot restore")
        self.region_id = region_id


__all__ = [
    "CommandChecksumError",
    "CommandError",
    "CommandLimitError",
    "Compacted",
    "KvClientError",
    "KvError",
    "KvTimeout",
    "KvUnavailable",
    "RestorePending",
    "SnapshotChecksumError",
    "SnapshotError",
    "UnsupportedCommandVersion",
]


# -- client-side failures (atoll.kv.client) ----------------------------------------------


class KvClientError(KvError):
    """A request through `atoll.kv.Client` failed; `code` is the server's KvError code
    name when it sent one ("NOT_LEADER", "TIMEOUT", ...), else "UNAVAILABLE"."""

    def __init__(self, message: str, code: str = "UNAVAILABLE") -> None:
        super().__init__(message)
        self.code = code


class KvTimeout(KvClientError, TimeoutError):
    """No answer in time: a write's outcome is unknown (it may or may not apply)."""


class KvUnavailable(KvClientError, ConnectionError):
    """No endpoint could serve the request (none reachable, or no leader known)."""
