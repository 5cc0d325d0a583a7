"""Atoll's replicated key-value service (shared/DESIGN.md §2-§3, §6; formats in
docs/formats/kv.md).

Today: the pure command records and their encoding (`command`), the engine layout of a
region (`layout`), and `KvStateMachine`, which applies committed commands to the local
engine, answers reads and watches from it, and ships and installs region snapshots.
Networking, the Raft host and routing live elsewhere and drive it.
"""

from __future__ import annotations

from atoll.kv.client import Client, WatchEvent
from atoll.kv.command import (
    COMMAND_BYTES_MAX,
    KEY_BYTES_MAX,
    TXN_COMPARES_MAX,
    TXN_OPS_MAX,
    VALUE_BYTES_MAX,
    Command,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    DeleteRange,
    Get,
    Noop,
    Put,
    Txn,
    TxnOp,
    compare_and_set,
    decode,
    encode,
)
from atoll.kv.errors import (
    CommandChecksumError,
    CommandError,
    CommandLimitError,
    Compacted,
    KvClientError,
    KvError,
    KvTimeout,
    KvUnavailable,
    RestorePending,
    SnapshotChecksumError,
    SnapshotError,
    UnsupportedCommandVersion,
)
from atoll.kv.layout import Event, EventKind, KeyMeta, KeyValue
from atoll.kv.results import (
    ApplyResult,
    DeleteRangeResult,
    DeleteResult,
    GetResult,
    NoopResult,
    OpResult,
    PutResult,
    Skipped,
    TxnResult,
)
from atoll.kv.snapshot_format import CHUNK_BYTES_MAX
from atoll.kv.state_machine import EVENTS_MAX, SCAN_KEYS_MAX, KvStateMachine

__all__ = [
    "CHUNK_BYTES_MAX",
    "COMMAND_BYTES_MAX",
    "EVENTS_MAX",
    "KEY_BYTES_MAX",
    "SCAN_KEYS_MAX",
    "TXN_COMPARES_MAX",
    "TXN_OPS_MAX",
    "VALUE_BYTES_MAX",
    "ApplyResult",
    "Client",
    "Command",
    "CommandChecksumError",
    "CommandError",
    "CommandLimitError",
    "Compacted",
    "Compare",
    "CompareOp",
    "CompareTarget",
    "Delete",
    "DeleteRange",
    "DeleteRangeResult",
    "DeleteResult",
    "Event",
    "EventKind",
    "Get",
    "GetResult",
    "KeyMeta",
    "KeyValue",
    "KvClientError",
    "KvError",
    "KvStateMachine",
    "KvTimeout",
    "KvUnavailable",
    "Noop",
    "NoopResult",
    "OpResult",
    "Put",
    "PutResult",
    "RestorePending",
    "Skipped",
    "SnapshotChecksumError",
    "SnapshotError",
    "Txn",
    "TxnOp",
    "TxnResult",
    "UnsupportedCommandVersion",
    "WatchEvent",
    "compare_and_set",
    "decode",
    "encode",
]
