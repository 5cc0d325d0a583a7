"""The KV service on gRPC (`grpc.aio`), the public API, and on `atoll.rpc`, for
Atoll's own layers: thin adapters over `KvService`. Does network I/O.

Errors: a `KvServiceError` becomes a gRPC status (the code table in kv.proto) with the
serialized `KvError` in the trailing metadata key `atoll-kv-error-bin`; on atoll.rpc,
an error frame with code `kv_error` and the `KvError` bytes as its detail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from atoll.kv.rpc_client import RPC_ERROR_CODE
from atoll.kv.service import KvService, KvServiceError
from atoll.proto import kv_pb2, kv_pb2_grpc
from atoll.rpc import Handler, HandlerError

ERROR_METADATA_KEY = "atoll-kv-error-bin"

_STATUS = {
    kv_pb2.KvError.NOT_LEADER: grpc.StatusCode.UNAVAILABLE,
    kv_pb2.KvError.EPOCH_MISMATCH: grpc.StatusCode.FAILED_PRECONDITION,
    kv_pb2.KvError.TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    kv_pb2.KvError.COMPACTED: grpc.StatusCode.OUT_OF_RANGE,
    kv_pb2.KvError.REGION_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    kv_pb2.KvError.KEY_NOT_IN_REGION: grpc.StatusCode.FAILED_PRECONDITION,
    kv_pb2.KvError.OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    kv_pb2.KvError.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    kv_pb2.KvError.INTERNAL: grpc.StatusCode.INTERNAL,
}


def status_of(error: kv_pb2.KvError) -> grpc.StatusCode:
    return _STATUS.get(error.code, grpc.StatusCode.UNKNOWN)


async def abort_with(context: Any, error: kv_pb2.KvError, text: str) -> None:
    """End a call with `error`: its status, and the KvError in the trailing metadata."""
    context.set_trailing_metadata(((ERROR_METADATA_KEY, error.SerializeToString()),))
    await context.abort(status_of(error), text)


async def _abort(context: grpc.aio.ServicerContext[Any, Any], err: KvServiceError) -> None:
    await abort_with(context, err.error, str(err))


class KvServicer(kv_pb2_grpc.KVServicer):
    def __init__(self, service: KvService) -> None:
        self.service = service

    async def _unary(self, call: Awaitable[Any], context: Any) -> Any:
        try:
            return await call
        except KvServiceError as err:
            await _abort(context, err)
            raise  # abort raised already; for the type checker

    async def Put(self, request: kv_pb2.PutRequest, context: Any) -> kv_pb2.PutResponse:
        return await self._unary(self.service.put(request), context)  # type: ignore[no-any-return]

    async def Get(self, request: kv_pb2.GetRequest, context: Any) -> kv_pb2.GetResponse:
        return await self._unary(self.service.get(request), context)  # type: ignore[no-any-return]

    async def Delete(self, request: kv_pb2.DeleteRequest, context: Any) -> kv_pb2.DeleteResponse:
        return await self._unary(self.service.delete(request), context)  # type: ignore[no-any-return]

    async def Scan(self, request: kv_pb2.ScanRequest, context: Any) -> kv_pb2.ScanResponse:
        return await self._unary(self.service.scan(request), context)  # type: ignore[no-any-return]

    async def Txn(self, request: kv_pb2.TxnRequest, context: Any) -> kv_pb2.TxnResponse:
        return await self._unary(self.service.txn(request), context)  # type: ignore[no-any-return]

    async def Watch(
        self, request: kv_pb2.WatchRequest, context: Any
    ) -> AsyncIterator[kv_pb2.WatchResponse]:
        try:
            async for response in self.service.watch(request):
                yield response
        except KvServiceError as err:
            await _abort(context, err)


def rpc_handlers(service: KvService) -> dict[str, Handler]:
    """`kv.Put`, `kv.Get`, ... on atoll.rpc: request and reply are the same protobuf
    messages as on gRPC; a watch is a server stream."""

    def unary(parse: Callable[[bytes], Any], call: Callable[[Any], Awaitable[Any]]) -> Handler:
        async def handle(message: bytes, payload: bytes | memoryview) -> tuple[bytes, None]:
            try:
                response = await call(parse(message))
            except KvServiceError as err:
                raise HandlerError(RPC_ERROR_CODE, err.error.SerializeToString()) from err
            return response.SerializeToString(), None

        return handle

    async def watch(
        message: bytes, payload: bytes | memoryview
    ) -> AsyncIterator[tuple[bytes, None]]:
        try:
            async for response in service.watch(kv_pb2.WatchRequest.FromString(message)):
                yield response.SerializeToString(), None
        except KvServiceError as err:
            raise HandlerError(RPC_ERROR_CODE, err.error.SerializeToString()) from err

    return {
        "kv.Put": unary(kv_pb2.PutRequest.FromString, service.put),
        "kv.Get": unary(kv_pb2.GetRequest.FromString, service.get),
        "kv.Delete": unary(kv_pb2.DeleteRequest.FromString, service.delete),
        "kv.Scan": unary(kv_pb2.ScanRequest.FromString, service.scan),
        "kv.Txn": unary(kv_pb2.TxnRequest.FromString, service.txn),
        "kv.Watch": watch,
    }
