"""`KvRpcClient`: the KV service reached over atoll.rpc, for Atoll's own layers (the S3
gateway's object index). Does network I/O (through `RpcPool`).

It speaks the same protobuf requests as the public gRPC API (proto/atoll/kv.proto;
the `kv.*` methods of `atoll.kv.grpc_server.rpc_handlers`) and keeps
`atoll.kv.Client`'s retry rules: it sends to the node it believes leads the region,
follows NOT_LEADER hints and retries OVERLOADED (nothing was proposed), tries another
node when a connection cannot be made (nothing was sent), and retries reads, which
change nothing, after any transport failure. A write whose request may have reached
a leader and got no answer raises `KvTimeout` (no answer in time) or
`KvOutcomeUnknown` (the connection broke): it may or may not have applied.

The nodes come from a callable (node id -> rpc address of a region replica), read at
each attempt, so a caller that follows the cluster map sees replicas come and go.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from atoll.kv.errors import Compacted, KvClientError, KvTimeout, KvUnavailable
from atoll.proto import kv_pb2
from atoll.rpc import ConnectionLost, RpcCaller, RpcPool, RpcRemoteError, RpcTimeout

RPC_ERROR_CODE = "kv_error"  # the atoll.rpc error code whose detail is a KvError
ATTEMPTS_MAX = 16
REQUEST_TIMEOUT_S = 10.0
RETRY_BACKOFF_S = 0.02
RETRY_BACKOFF_MAX_S = 0.5
SCAN_LIMIT_MAX = 10_000

_SAFE_TO_RETRY = (kv_pb2.KvError.NOT_LEADER, kv_pb2.KvError.OVERLOADED)

M = TypeVar("M", bound=Message)


class KvOutcomeUnknown(KvClientError):
    """The connection broke after a write was sent: it may or may not have applied."""


def kv_error_of(err: RpcRemoteError) -> kv_pb2.KvError | None:
    """The KvError an error frame carries, or None for a transport error."""
    if err.code != RPC_ERROR_CODE:
        return None
    try:
        return kv_pb2.KvError.FromString(err.detail)
    except DecodeError:
        return None


def cas_request(key: bytes, expected: bytes | None, new: bytes | None) -> kv_pb2.TxnRequest:
    """The Txn that sets `key` to `new` (None: deletes it) if it holds `expected`
    (None: if it is absent)."""
    if expected is None:
        compare = kv_pb2.Compare(
            key=key, target=kv_pb2.Compare.EXISTS, result=kv_pb2.Compare.EQUAL, exists=False
        )
    else:
        compare = kv_pb2.Compare(
            key=key, target=kv_pb2.Compare.VALUE, result=kv_pb2.Compare.EQUAL, value=expected
        )
    op = (
        kv_pb2.TxnOp(delete=kv_pb2.DeleteRequest(key=key))
        if new is None
        else kv_pb2.TxnOp(put=kv_pb2.PutRequest(key=key, value=new))
    )
    return kv_pb2.TxnRequest(compares=[compare], success=[op])


class KvRpcClient:
    def __init__(
        self,
        nodes: Callable[[], Mapping[int, str]],
        pool: RpcPool,
        *,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self._nodes = nodes
        self._pool = pool
        self._local: tuple[int, RpcCaller] | None = None
        self.request_timeout_s = request_timeout_s
        self.leader = 0  # node id believed to lead; 0: unknown

    def use_local(self, node_id: int, caller: RpcCaller) -> None:
        """Reach node `node_id` (this process's own KV service) through `caller` (a
        `LocalClient`) instead of a connection to itself."""
        self._local = (node_id, caller)

    def _pick(self, avoid: int) -> int:
        nodes = sorted(self._nodes())
        if not nodes:
            raise KvUnavailable("no KV replica is known")
        if self.leader in nodes and self.leader != avoid:
            return self.leader
        if avoid in nodes:
            return nodes[(nodes.index(avoid) + 1) % len(nodes)]
        return nodes[0]

    async def call(self, method: str, request: Message, reply_type: type[M], *, read: bool) -> M:
        """`kv.<method>` with the rules of the module docstring."""
        data = request.SerializeToString()
        backoff = RETRY_BACKOFF_S
        avoid = 0
        followed = 0  # leader hints followed in this call
        last = "no attempt"
        for _ in range(ATTEMPTS_MAX):
            node = self._pick(avoid)
            address = self._nodes().get(node, "")
            try:
                local = self._local
                client = local[1] if local and local[0] == node else await self._pool.get(address)
            except (ConnectionLost, RpcTimeout, ValueError) as err:
                last = f"node {node} ({address}) unreachable: {err}"
                avoid, self.leader = node, 0
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_BACKOFF_MAX_S)
                continue
            try:
                reply = await client.call(f"kv.{method}", data, timeout_s=self.request_timeout_s)
            except RpcRemoteError as err:
                error = kv_error_of(err)
                if error is None or error.code not in _SAFE_TO_RETRY:
                    raise _typed(method, node, err, error) from err
                last = f"node {node}: {kv_pb2.KvError.Code.Name(error.code)} {error.message}"
                hint = error.leader_hint
                if error.code == kv_pb2.KvError.NOT_LEADER and hint and hint != node:
                    self.leader = int(hint)
                    followed += 1
                    if followed == 1:
                        continue  # a known leader: go at once
                    # Hints that keep moving: an election runs; back off as below so
                    # the attempts outlast it instead of bouncing in milliseconds.
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, RETRY_BACKOFF_MAX_S)
                    continue
                avoid, self.leader = node, 0
            except (RpcTimeout, ConnectionLost) as err:
                if not read:
                    kind = KvTimeout if isinstance(err, RpcTimeout) else KvOutcomeUnknown
                    raise kind(f"kv.{method} at node {node}: {err}; outcome unknown") from err
                last = f"node {node}: {err}"
                avoid, self.leader = node, 0
            else:
                self.leader = node
                try:
                    return reply_type.FromString(reply.message)
                except DecodeError as err:
                    raise KvClientError(f"kv.{method} at node {node}: bad reply: {err}") from err
            await asyncio.sleep(backoff)  # an election may be running
            backoff = min(backoff * 2, RETRY_BACKOFF_MAX_S)
        raise KvUnavailable(f"kv.{method}: no replica served it ({last})")

    # -- the API (as atoll.kv.Client's) ------------------------------------------------

    async def get(self, key: bytes, serializable: bool = False) -> bytes | None:
        request = kv_pb2.GetRequest(key=key, serializable=serializable)
        response = await self.call("Get", request, kv_pb2.GetResponse, read=True)
        return response.kv.value if response.HasField("kv") else None

    async def put(self, key: bytes, value: bytes) -> None:
        request = kv_pb2.PutRequest(key=key, value=value)
        await self.call("Put", request, kv_pb2.PutResponse, read=False)

    async def delete(self, key: bytes) -> bool:
        request = kv_pb2.DeleteRequest(key=key)
        response = await self.call("Delete", request, kv_pb2.DeleteResponse, read=False)
        return bool(response.deleted)

    async def scan(
        self, start: bytes, end: bytes = b"", limit: int = 1000, *, reverse: bool = False
    ) -> tuple[list[tuple[bytes, bytes]], bool]:
        """Key-values in `[start, end)` (end b"": to the end), at most `limit`; and
        whether more were left out."""
        if not 0 < limit <= SCAN_LIMIT_MAX:
            raise ValueError(f"scan limit must be 1..{SCAN_LIMIT_MAX}, got {limit}")
        request = kv_pb2.ScanRequest(start=start, end=end, limit=limit, reverse=reverse)
        response = await self.call("Scan", request, kv_pb2.ScanResponse, read=True)
        return [(kv.key, kv.value) for kv in response.kvs], bool(response.more)

    async def txn(self, request: kv_pb2.TxnRequest) -> kv_pb2.TxnResponse:
        return await self.call("Txn", request, kv_pb2.TxnResponse, read=False)

    async def cas(self, key: bytes, expected: bytes | None, new: bytes | None) -> bool:
        return bool((await self.txn(cas_request(key, expected, new))).succeeded)


def _typed(
    method: str, node: int, err: RpcRemoteError, error: kv_pb2.KvError | None
) -> KvClientError | Compacted:
    if error is None:
        return KvClientError(f"kv.{method} at node {node}: {err}")
    if error.code == kv_pb2.KvError.COMPACTED:
        return Compacted(compact_revision=error.compact_revision, requested_revision=0)
    code = kv_pb2.KvError.Code.Name(error.code)
    text = f"kv.{method} at node {node}: {code}: {error.message}"
    if error.code == kv_pb2.KvError.TIMEOUT:
        return KvTimeout(text, code)
    return KvClientError(text, code)


__all__ = ["KvOutcomeUnknown", "KvRpcClient", "cas_request", "kv_error_of"]
