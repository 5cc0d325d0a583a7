"""Expected failures of the multi-raft host (shared/STYLE.md §7). Pure.

Where a built-in category applies the error inherits it too, so callers may catch
either; corruption of stored bytes is an `atoll.base.errors.CorruptionError`.
"""

from __future__ import annotations

from atoll.base.errors import AtollError, CorruptionError


class MultiraftError(AtollError):
    """Root of multi-raft host failures."""


# -- Raft log store (log_store.py; docs/formats/raft_log.md) ---------------------


class LogCorruption(MultiraftError, CorruptionError):
    """A record of the Raft log store fails its CRC-32C or structure check, or the
    stored log of a group is not contiguous. Never normal.

    `file` (from `CorruptionError`) names the engine key in hex, since the records
    live in the engine rather than in files of their own; `key` and `group_id` are
    also kept as they are. `expected`/`actual` are the CRCs when a checksum failed.
    """

    def __init__(
        self,
        message: str,
        *,
        group_id: int,
        key: bytes,
        expected: int | None = None,
        actual: int | None = None,
    ) -> None:
        super().__init__(
            f"raft log of group {group_id}: {message}",
            file=f"engine key {key.hex()}",
            expected=expected,
            actual=actual,
        )
        self.group_id = group_id
        self.key = key


class LogCompacted(MultiraftError, LookupError):
    """Entries were asked for at or below the log's base: compaction (or a snapshot)
    already dropped them. A reader that needs them must start from a snapshot."""

    def __init__(self, group_id: int, index: int, base_index: int) -> None:
        super().__init__(
            f"raft log of group {group_id}: entry {index} is compacted "
            f"(the log starts after index {base_index})"
        )
        self.group_id = group_id
        self.index = index
        self.base_index = base_index


class SnapshotTooLarge(MultiraftError, ValueError):
    """A received snapshot's data exceeds what a host takes in (it holds the data in
    memory until the state machine restores it: `HostConfig.snapshot_bytes_max`)."""

    def __init__(self, group_id: int, index: int, size_bytes: int, limit_bytes: int) -> None:
        super().__init__(
            f"raft group {group_id}: snapshot at index {index} has {size_bytes} "
            f"bytes of data, over the {limit_bytes}-byte limit"
        )
        self.group_id = group_id
        self.index = index
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes


# -- wire codec (wire.py; proto/atoll/raft.proto, docs/rpc.md §7) ---------------------


class WireError(MultiraftError, ValueError):
    """A Raft batch that cannot be encoded or decoded: bytes that do not parse as an
    `atoll.raft.v1.RaftBatch`, a field out of range (an unknown message or entry
    type, a missing message), or data lengths that disagree with the payload.
    `group_id` names the group of the offending message, when one is known."""

    def __init__(self, message: str, *, group_id: int | None = None) -> None:
        where = f"group {group_id}: " if group_id is not None else ""
        super().__init__(f"raft batch: {where}{message}")
        self.group_id = group_id
