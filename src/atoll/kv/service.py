"""The KV service: one implementation of Put, Get, Delete, Scan, Txn and Watch over a
Raft-replicated region (shared/DESIGN.md §6), on protobuf messages of
`proto/atoll/kv.proto`. Served twice: on gRPC for the public API (`grpc_server`) and
on `atoll.rpc` for Atoll's own layers (`rpc_handlers`). Does I/O through the Raft host
and the engine.

Writes are proposed as commands (`atoll.kv.command`) and answered once applied on this
node. Linearizable reads wait for a ReadIndex confirmation (any replica may serve
them); serializable reads read the local replica as it is. Errors are `KvServiceError`
carrying a `KvError` message: NOT_LEADER with the leader's id and KV address,
TIMEOUT when a write's outcome is unknown, COMPACTED for a watch from before the kept
history.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from atoll.kv.command import (
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    Put,
    Txn,
    TxnOp,
    encode,
)
from atoll.kv.errors import CommandError, Compacted
from atoll.kv.layout import EventKind, KeyMeta
from atoll.kv.results import DeleteResult, GetResult, PutResult, TxnResult
from atoll.kv.state_machine import KvStateMachine
from atoll.multiraft.host import RaftHost, RaftTimeout
from atoll.proto import kv_pb2
from atoll.raft import NotLeader, ProposalDropped

KvError = kv_pb2.KvError

T = TypeVar("T")

WATCH_EVENTS_PER_MESSAGE_MAX = 1000
SCAN_LIMIT_MAX = 10_000

_COMPARE_OPS = {
    kv_pb2.Compare.EQUAL: CompareOp.EQUAL,
    kv_pb2.Compare.NOT_EQUAL: CompareOp.NOT_EQUAL,
    kv_pb2.Compare.LESS: CompareOp.LESS,
    kv_pb2.Compare.GREATER: CompareOp.GREATER,
}


class KvServiceError(Exception):
    """A request failed in a way the client must hear about; `error` says how."""

    def __init__(self, error: kv_pb2.KvError) -> None:
        super().__init__(f"{KvError.Code.Name(error.code)}: {error.message}")
        self.error = error


@dataclass(frozen=True)
class ServiceConfig:
    region_id: int = 1
    write_timeout_s: float = 5.0
    read_timeout_s: float = 5.0


class KvService:
    def __init__(
        self,
        host: RaftHost,
        sm: KvStateMachine,
        kv_addresses: Mapping[int, str],
        config: ServiceConfig = ServiceConfig(),
    ) -> None:
        self.host = host
        self.sm = sm
        self.kv_addresses = dict(kv_addresses)
        self.config = config
        self.region = config.region_id

    # -- helpers ----------------------------------------------------------------------

    def _header(self) -> kv_pb2.ResponseHeader:
        return kv_pb2.ResponseHeader(
            region_id=self.region,
            revision=self.sm.revision(),
            leader_id=self.host.leader_of(self.region),
        )

    def _error(self, code: int, message: str, **fields: int | str) -> KvServiceError:
        return KvServiceError(KvError(code=code, message=message, **fields))  # type: ignore[arg-type]

    def _not_leader(self, leader: int) -> KvServiceError:
        return self._error(
            KvError.NOT_LEADER,
            f"node {self.host.id} is not the leader of region {self.region}",
            leader_hint=leader,
            leader_address=self.kv_addresses.get(leader, ""),
        )

    async def _raft(self, call: Awaitable[T], what: str) -> T:
        """Await a Raft host call, its failures mapped to KvErrors."""
        try:
            return await call
        except NotLeader as err:
            raise self._not_leader(err.leader) from err
        except RaftTimeout as err:
            raise self._error(KvError.TIMEOUT, f"{what}: {err}") from err
        except ProposalDropped as err:
            raise self._error(KvError.OVERLOADED, str(err)) from err

    async def _propose(self, command: bytes) -> object:
        timeout_s = self.config.write_timeout_s
        call = self.host.propose(self.region, command, timeout_s)
        return await self._raft(call, "write outcome unknown")

    async def _read_barrier(self, serializable: bool) -> None:
        if not serializable:
            call = self.host.read_index(self.region, self.config.read_timeout_s)
            await self._raft(call, "read not confirmed")

    def _encode(self, command: Put | Delete | Txn) -> bytes:
        try:
            return encode(command)
        except (CommandError, TypeError, ValueError) as err:
            raise self._error(KvError.INVALID_ARGUMENT, str(err)) from err

    @staticmethod
    def _kv(key: bytes, value: bytes, meta: KeyMeta) -> kv_pb2.KeyValue:
        return kv_pb2.KeyValue(
            key=key,
            value=value,
            create_revision=meta.create_revision,
            mod_revision=meta.mod_revision,
            version=meta.version,
        )

    # -- requests ---------------------------------------------------------------------

    async def put(self, request: kv_pb2.PutRequest) -> kv_pb2.PutResponse:
        result = await self._propose(self._encode(Put(request.key, request.value)))
        if not isinstance(result, PutResult):
            raise self._error(KvError.INTERNAL, f"put applied as {result!r}")
        response = kv_pb2.PutResponse(header=self._header())
        if request.prev_kv and result.prev is not None:
            response.prev_kv.CopyFrom(self._kv(request.key, *result.prev))
        return response

    async def delete(self, request: kv_pb2.DeleteRequest) -> kv_pb2.DeleteResponse:
        result = await self._propose(self._encode(Delete(request.key)))
        if not isinstance(result, DeleteResult):
            raise self._error(KvError.INTERNAL, f"delete applied as {result!r}")
        response = kv_pb2.DeleteResponse(header=self._header(), deleted=int(result.deleted))
        if request.prev_kv and result.prev is not None:
            response.prev_kv.CopyFrom(self._kv(request.key, *result.prev))
        return response

    async def get(self, request: kv_pb2.GetRequest) -> kv_pb2.GetResponse:
        await self._read_barrier(request.serializable)
        found = self.sm.get(request.key)
        response = kv_pb2.GetResponse(header=self._header())
        if found is not None:
            response.kv.CopyFrom(self._kv(request.key, found[0], found[1]))
        return response

    async def scan(self, request: kv_pb2.ScanRequest) -> kv_pb2.ScanResponse:
        await self._read_barrier(request.serializable)
        limit = min(request.limit or SCAN_LIMIT_MAX, SCAN_LIMIT_MAX)
        rows = await asyncio.to_thread(
            self.sm.scan, request.start, request.end or None, limit + 1, request.reverse
        )
        response = kv_pb2.ScanResponse(header=self._header(), more=len(rows) > limit)
        response.kvs.extend(self._kv(r.key, r.value, r.meta) for r in rows[:limit])
        return response

    async def txn(self, request: kv_pb2.TxnRequest) -> kv_pb2.TxnResponse:
        try:
            txn = Txn(
                [self._compare(c) for c in request.compares],
                [self._op(op) for op in request.success],
                [self._op(op) for op in request.failure],
            )
        except (CommandError, TypeError, ValueError) as err:
            raise self._error(KvError.INVALID_ARGUMENT, str(err)) from err
        result = await self._propose(self._encode(txn))
        if not isinstance(result, TxnResult):
            raise self._error(KvError.INTERNAL, f"txn applied as {result!r}")
        response = kv_pb2.TxnResponse(header=self._header(), succeeded=result.succeeded)
        branch = request.success if result.succeeded else request.failure
        for n, op_result in enumerate(result.results):
            item = response.results.add()
            asked = branch[n] if n < len(branch) else kv_pb2.TxnOp()
            if isinstance(op_result, PutResult):
                item.put.CopyFrom(kv_pb2.PutResponse())
                if asked.put.prev_kv and op_result.prev is not None:
                    item.put.prev_kv.CopyFrom(self._kv(asked.put.key, *op_result.prev))
            elif isinstance(op_result, DeleteResult):
                item.delete.CopyFrom(kv_pb2.DeleteResponse(deleted=int(op_result.deleted)))
                if asked.delete.prev_kv and op_result.prev is not None:
                    item.delete.prev_kv.CopyFrom(self._kv(asked.delete.key, *op_result.prev))
            elif isinstance(op_result, GetResult) and op_result.value is not None:
                # A failed CAS reports the current value as the failure branch's get.
                assert op_result.meta is not None
                item.put.CopyFrom(
                    kv_pb2.PutResponse(prev_kv=self._kv(b"", op_result.value, op_result.meta))
                )
        return response

    def _compare(self, c: kv_pb2.Compare) -> Compare:
        op = _COMPARE_OPS[c.result]
        which = c.WhichOneof("operand")
        if c.target == kv_pb2.Compare.VALUE:
            return Compare(c.key, CompareTarget.VALUE, op, c.value if which == "value" else b"")
        if c.target == kv_pb2.Compare.VERSION:
            return Compare(c.key, CompareTarget.VERSION, op, c.version)
        return Compare(c.key, CompareTarget.EXISTS, op, c.exists)

    @staticmethod
    def _op(op: kv_pb2.TxnOp) -> TxnOp:
        which = op.WhichOneof("op")
        if which == "put":
            return Put(op.put.key, op.put.value)
        if which == "delete":
            return Delete(op.delete.key)
        raise ValueError("a txn op must be a put or a delete")

    async def watch(self, request: kv_pb2.WatchRequest) -> AsyncIterator[kv_pb2.WatchResponse]:
        """Events from `from_revision` (default: the next revision) as they are applied
        on this replica, in revision order."""
        start = request.from_revision or self.sm.revision() + 1
        sequence = 0
        while True:
            # Read the applied index before the events: an entry applied in between
            # then wakes the wait below instead of being missed.
            applied = self.sm.applied_index()
            try:
                events = self.sm.events(
                    start, request.key_prefix, WATCH_EVENTS_PER_MESSAGE_MAX, sequence
                )
            except Compacted as err:
                raise self._error(
                    KvError.COMPACTED, str(err), compact_revision=err.compact_revision
                ) from err
            if events:
                response = kv_pb2.WatchResponse(header=self._header())
                for e in events:
                    response.events.add(
                        type=kv_pb2.Event.PUT if e.kind is EventKind.PUT else kv_pb2.Event.DELETE,
                        key=e.key,
                        value=e.value,
                        revision=e.revision,
                    )
                last = events[-1]
                start, sequence = last.revision, last.sequence + 1
                yield response
                continue
            await self.host.wait_applied(self.region, applied)
