"""What applying one command returns: the answer the proposing client waits for.

Pure: no I/O, plain frozen records. `KvStateMachine.apply` returns an `ApplyResult`;
every replica computes the same one for the same entry, but only the replica whose
client proposed it has anyone to hand it to. Nothing here is persisted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from atoll.kv.layout import KeyMeta


@dataclass(frozen=True, slots=True)
class PutResult:
    """`prev_revision`: the mod revision of the value replaced; 0 if the key was absent.
    `prev`: the replaced value and its meta (for `prev_kv`), None if it was absent."""

    prev_revision: int
    prev: tuple[bytes, KeyMeta] | None = None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """`deleted`: whether the key existed (and now does not); `prev` its value and meta
    then (for `prev_kv`)."""

    deleted: bool
    prev: tuple[bytes, KeyMeta] | None = None


@dataclass(frozen=True, slots=True)
class DeleteRangeResult:
    """`deleted`: how many keys the range held (and now does not)."""

    deleted: int


@dataclass(frozen=True, slots=True)
class GetResult:
    """A `Get` inside a transaction branch: the value and meta, or both None if the key
    is missing (an empty value is `b""`, never None)."""

    value: bytes | None
    meta: KeyMeta | None


OpResult: TypeAlias = PutResult | DeleteResult | DeleteRangeResult | GetResult


@dataclass(frozen=True, slots=True)
class TxnResult:
    """`succeeded`: whether every compare held (so `success` ran, else `failure`);
    `results`: one per operation of the branch that ran, in order."""

    succeeded: bool
    results: tuple[OpResult, ...]


@dataclass(frozen=True, slots=True)
class NoopResult:
    """A no-op, a leader's empty entry, or an entry that is not a KV command."""


@dataclass(frozen=True, slots=True)
class Skipped:
    """The entry at `index` was applied before (it is at or below the applied index):
    nothing was staged. Happens when the host replays its log after a restart."""

    index: int


ApplyResult: TypeAlias = (
    PutResult | DeleteResult | DeleteRangeResult | TxnResult | NoopResult | Skipped
)

__all__ = [
    "ApplyResult",
    "DeleteRangeResult",
    "DeleteResult",
    "GetResult",
    "NoopResult",
    "OpResult",
    "PutResult",
    "Skipped",
    "TxnResult",
]
