"""`atoll.kv.Client`: the async Python client of the KV service over gRPC, the contract
other layers and external checks use (issue 3 §3). Does network I/O.

It keeps one channel per endpoint, sends to the node it believes leads the region,
follows NOT_LEADER hints, and retries only what is safe to retry: a request the server
refused before doing anything (NOT_LEADER, OVERLOADED), one that never left because
the node could not be reached, and reads. A write that may have reached a leader and
got no answer raises `KvTimeout` or `KvClientError`: its outcome is unknown, and
retrying it could apply it twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from atoll.kv.errors import Compacted, KvClientError, KvTimeout, KvUnavailable
from atoll.kv.rpc_client import cas_request
from atoll.proto import kv_pb2, kv_pb2_grpc

ERROR_METADATA_KEY = "atoll-kv-error-bin"
ATTEMPTS_MAX = 16
REQUEST_TIMEOUT_S = 10.0
RETRY_BACKOFF_S = 0.05
RETRY_BACKOFF_MAX_S = 1.0

_SAFE_TO_RETRY = {kv_pb2.KvError.NOT_LEADER, kv_pb2.KvError.OVERLOADED}


@dataclass(frozen=True)
class WatchEvent:
    type: str  # "put" or "delete"
    key: bytes
    value: bytes
    revision: int


def _kv_error(err: grpc.aio.AioRpcError) -> kv_pb2.KvError | None:
    for key, value in err.trailing_metadata() or ():
        if key == ERROR_METADATA_KEY and isinstance(value, bytes):
            return kv_pb2.KvError.FromString(value)
    return None


def _never_sent(err: grpc.aio.AioRpcError) -> bool:
    """The channel could not connect, so the request never reached a server."""
    details = (err.details() or "").lower()
    return err.code() == grpc.StatusCode.UNAVAILABLE and (
        "failed to connect" in details or "connection refused" in details
    )


class Client:
    def __init__(self, endpoints: Sequence[str], request_timeout_s: float) -> None:
        if not endpoints:
            raise ValueError("Client needs at least one endpoint")
        self.endpoints = list(endpoints)
        self.request_timeout_s = request_timeout_s
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._current = 0

    @classmethod
    async def connect(
        cls, endpoints: Sequence[str], request_timeout_s: float = REQUEST_TIMEOUT_S
    ) -> Client:
        return cls(endpoints, request_timeout_s)

    def _stub(self, endpoint: str) -> kv_pb2_grpc.KVStub:
        channel = self._channels.get(endpoint)
        if channel is None:
            channel = grpc.aio.insecure_channel(endpoint)
            self._channels[endpoint] = channel
        return kv_pb2_grpc.KVStub(channel)  # type: ignore[no-untyped-call]

    def _follow(self, error: kv_pb2.KvError | None) -> None:
        if error is not None and error.leader_address in self.endpoints:
            self._current = self.endpoints.index(error.leader_address)
        elif error is not None and error.leader_address:
            self.endpoints.append(error.leader_address)
            self._current = len(self.endpoints) - 1
        else:
            self._current = (self._current + 1) % len(self.endpoints)

    async def _call(self, method: str, request: Any, read: bool) -> Any:
        backoff = RETRY_BACKOFF_S
        last: Exception | None = None
        for _ in range(ATTEMPTS_MAX):
            endpoint = self.endpoints[self._current]
            call = getattr(self._stub(endpoint), method)
            try:
                return await call(request, timeout=self.request_timeout_s)
            except grpc.aio.AioRpcError as err:
                error = _kv_error(err)
                last = err
                if error is not None and error.code in _SAFE_TO_RETRY:
                    self._follow(error)
                elif error is None and (
                    _never_sent(err)
                    or (
                        read
                        and err.code()
                        in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                    )
                ):
                    self._follow(None)
                else:
                    raise self._raise(method, endpoint, err, error) from err
                if error is None or not error.leader_address:
                    await asyncio.sleep(backoff)  # no leader known yet: an election runs
                    backoff = min(backoff * 2, RETRY_BACKOFF_MAX_S)
        raise KvUnavailable(f"{method}: no endpoint of {self.endpoints} served it ({last})")

    @staticmethod
    def _raise(
        method: str, endpoint: str, err: grpc.aio.AioRpcError, error: kv_pb2.KvError | None
    ) -> Exception:
        if error is not None and error.code == kv_pb2.KvError.COMPACTED:
            return Compacted(compact_revision=error.compact_revision, requested_revision=0)
        code = kv_pb2.KvError.Code.Name(error.code) if error is not None else err.code().name
        text = f"{method} at {endpoint}: {code}: {err.details()}"
        if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return KvTimeout(text, code)
        return KvClientError(text, code)

    # -- the API ----------------------------------------------------------------------

    async def put(self, key: bytes, value: bytes) -> None:
        await self._call("Put", kv_pb2.PutRequest(key=key, value=value), read=False)

    async def get(self, key: bytes, serializable: bool = False) -> bytes | None:
        response = await self._call(
            "Get", kv_pb2.GetRequest(key=key, serializable=serializable), read=True
        )
        return response.kv.value if response.HasField("kv") else None

    async def delete(self, key: bytes) -> bool:
        response = await self._call("Delete", kv_pb2.DeleteRequest(key=key), read=False)
        return bool(response.deleted)

    async def scan(
        self, start: bytes, end: bytes | None = None, limit: int = 1000, reverse: bool = False
    ) -> list[tuple[bytes, bytes]]:
        request = kv_pb2.ScanRequest(start=start, end=end or b"", limit=limit, reverse=reverse)
        response = await self._call("Scan", request, read=True)
        return [(kv.key, kv.value) for kv in response.kvs]

    async def cas(self, key: bytes, expected: bytes | None, new: bytes | None) -> bool:
        """Set `key` to `new` (None: delete it) if it holds `expected` (None: absent)."""
        request = cas_request(key, expected, new)
        response = await self._call("Txn", request, read=False)
        return bool(response.succeeded)

    async def watch(
        self, prefix: bytes, from_revision: int | None = None
    ) -> AsyncIterator[WatchEvent]:
        request = kv_pb2.WatchRequest(key_prefix=prefix, from_revision=from_revision or 0)
        stub = self._stub(self.endpoints[self._current])
        try:
            async for response in stub.Watch(request):
                for e in response.events:
                    kind = "put" if e.type == kv_pb2.Event.PUT else "delete"
                    yield WatchEvent(kind, e.key, e.value, e.revision)
        except grpc.aio.AioRpcError as err:
            raise self._raise("Watch", self.endpoints[self._current], err, _kv_error(err)) from err

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
