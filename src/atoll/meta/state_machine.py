"""The meta group's replicated state machine: committed meta commands in, the cluster
map out. Does I/O only through the `Engine` it is given.

The whole map lives in memory (`current`) and, with the applied index, in one engine
record under tag `0x04` (docs/formats/meta.md §3): small (kilobytes to a few MiB with
large PG tables), changed rarely. The host contract is the KV state machine's
(`atoll.kv.state_machine`): `apply` stages the new map and applied index into the
host's batch, `batch_written` makes them current, `batch_discarded` forgets them.
Readers (`current`) see only written maps; the map object is immutable and swapped
whole, so a reader on another thread sees the old map or the new one.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from atoll.engine.api import Engine, ReadView, WriteBatch
from atoll.meta import commands
from atoll.meta.cluster_map import Applied, ClusterMap
from atoll.meta.commands import HEADER, apply_command, decode_command, decode_map, encode_map
from atoll.meta.errors import MapFormatError

TAG_META = 0x04
_U64 = struct.Struct("<Q")


def state_key(group_id: int) -> bytes:
    return bytes([TAG_META]) + group_id.to_bytes(8, "big") + b"map"


class MetaStateMachine:
    def __init__(self, engine: Engine, group_id: int) -> None:
        self._engine = engine
        self._key = state_key(group_id)
        self._applied, self._map = self._load(engine)
        self._pending: tuple[int, ClusterMap] | None = None

    def _load(self, view: ReadView) -> tuple[int, ClusterMap]:
        record = view.get(self._key)
        if record is None:
            return 0, ClusterMap()
        if len(record) < _U64.size:
            raise MapFormatError(f"meta state record of {len(record)} bytes")
        (applied,) = _U64.unpack_from(record)
        return applied, decode_map(bytes(record[_U64.size :]))

    @property
    def current(self) -> ClusterMap:
        return self._map

    def applied_index(self) -> int:
        """The index applying resumes after: staged entries included (the host's)."""
        return self._pending[0] if self._pending is not None else self._applied

    def written_index(self) -> int:
        """The index of `current`: written entries only (for readers)."""
        return self._applied

    def apply(self, index: int, data: bytes, batch: WriteBatch) -> Applied | None:
        base = self._pending[1] if self._pending is not None else self._map
        if index <= self.applied_index():
            return None  # replayed after a crash: already in the map
        result: Applied | None = None
        new = base
        if data:
            new, result = apply_command(base, decode_command(data))
        encoded = encode_map(new)
        if len(encoded) - HEADER.size > commands.BODY_BYTES_MAX:
            # Refused alike on every replica (the size is a function of the map): a map
            # that could not be read back must never be stored.
            new = base
            result = Applied(
                False, base.epoch, f"the map would exceed {commands.BODY_BYTES_MAX} bytes"
            )
            encoded = encode_map(base)
        self._pending = (index, new)
        batch.put(self._key, _U64.pack(index) + encoded)
        return result

    def batch_written(self) -> None:
        if self._pending is not None:
            self._applied, self._map = self._pending
            self._pending = None

    def batch_discarded(self) -> None:
        self._pending = None

    def snapshot_data(self, view: ReadView) -> bytes:
        applied, m = self._load(view)
        return _U64.pack(applied) + encode_map(m)

    def snapshot_chunks(self, view: ReadView, chunk_bytes: int) -> Iterator[bytes]:
        """The map is bounded (`commands.BODY_BYTES_MAX`): one piece, read when asked."""
        yield self.snapshot_data(view)

    def restore(self, data: bytes) -> None:
        if len(data) < _U64.size:
            raise MapFormatError(f"meta snapshot of {len(data)} bytes")
        m = decode_map(bytes(data[_U64.size :]))
        (applied,) = _U64.unpack_from(data)
        batch = WriteBatch()
        batch.put(self._key, bytes(data))
        self._engine.write(batch, sync=True)
        self._applied, self._map, self._pending = applied, m, None

    def compact_history(self, revision: int) -> None:
        """The map keeps no history."""
