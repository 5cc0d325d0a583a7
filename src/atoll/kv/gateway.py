"""KV gateway processes: the public gRPC KV API served outside the node process. Does
network and process I/O.

Python's gRPC server costs far more CPU per call than the node's own transport (a
do-nothing grpc.aio server manages about 1,800 calls/s here, atoll.rpc about 20,000),
and sharing the node's event loop and GIL with it slowed the Raft loop itself. So a
node starts `kv_gateway_processes` gateways that listen on its KV address (gRPC's
SO_REUSEPORT spreads connections over them) and forward each call, as the same
protobuf bytes, over atoll.rpc: writes straight to the region's leader (following
NOT_LEADER hints, which are safe to retry: nothing was proposed), reads, scans and
watches to their own node (any replica serves linearizable reads by ReadIndex).

Errors keep the KV service's contract: a `KvError` in the trailing metadata
`atoll-kv-error-bin` and the status of `grpc_server`'s table. A write whose forwarded
call broke after it was sent answers UNAVAILABLE without a KvError: its outcome is
unknown, and the client does not retry it.

Run as `python -m atoll.kv.gateway SPEC_JSON`; it prints `ready` once listening and
dies with its parent node.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc

from atoll.base import loop as event_loop
from atoll.base.lifetime import die_with_parent
from atoll.kv.grpc_server import abort_with
from atoll.kv.rpc_client import kv_error_of
from atoll.proto import kv_pb2
from atoll.rpc import ConnectionLost, RpcClient, RpcPool, RpcRemoteError, RpcTimeout

SERVICE = "atoll.kv.v1.KV"
WRITES = ("Put", "Delete", "Txn")
READS = ("Get", "Scan")
FORWARD_TIMEOUT_S = 10.0
LEADER_HOPS_MAX = 5
LEADER_RETRY_S = 0.05
GRPC_STOP_GRACE_S = 1.0


@dataclass(frozen=True)
class GatewaySpec:
    listen: str
    local_node: int
    nodes: dict[int, str]  # node id -> atoll.rpc address
    parent_pid: int

    def to_json(self) -> str:
        return json.dumps(
            {
                "listen": self.listen,
                "local_node": self.local_node,
                "nodes": {str(k): v for k, v in self.nodes.items()},
                "parent_pid": self.parent_pid,
            }
        )

    @staticmethod
    def from_json(text: str) -> GatewaySpec:
        doc = json.loads(text)
        return GatewaySpec(
            doc["listen"],
            int(doc["local_node"]),
            {int(k): str(v) for k, v in doc["nodes"].items()},
            int(doc["parent_pid"]),
        )


class Forwarder:
    def __init__(self, spec: GatewaySpec) -> None:
        self.spec = spec
        self.leader = spec.local_node
        self._pool = RpcPool()

    async def _client(self, node: int) -> RpcClient:
        return await self._pool.get(self.spec.nodes[node])

    async def _abort(self, context: Any, error: kv_pb2.KvError | None, text: str) -> None:
        """End the call with `error` (None: UNAVAILABLE with no KvError). Raises."""
        if error is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, text)
            return
        await abort_with(context, error, text)

    async def unary(self, method: str, request: bytes, context: Any) -> bytes:
        write = method in WRITES
        node = self.leader if write else self.spec.local_node
        # What to answer if no hop works: nothing was proposed, so NOT_LEADER (with
        # no hint) tells the client it may retry.
        refused = kv_pb2.KvError(code=kv_pb2.KvError.NOT_LEADER, message="no leader reachable")
        for hop in range(LEADER_HOPS_MAX):
            if hop:
                await asyncio.sleep(LEADER_RETRY_S * hop)  # an election may be running
            try:
                client = await self._client(node)
            except (OSError, ConnectionLost) as err:
                refused.message = f"node {node} unreachable: {err}"
                node = self._next_node(node)  # never sent: safe to try elsewhere
                continue
            try:
                reply = await client.call(f"kv.{method}", request, timeout_s=FORWARD_TIMEOUT_S)
            except RpcRemoteError as err:
                error = kv_error_of(err)
                if error is not None and error.code == kv_pb2.KvError.NOT_LEADER and write:
                    refused = error
                    hint = error.leader_hint
                    if hint and hint not in self.spec.nodes:
                        # A leader this gateway was not told of (a replica added
                        # later): the client follows the error's leader_address.
                        break
                    node = hint if hint else self._next_node(node)
                    self.leader = node
                    continue
                await self._abort(context, error, str(err))
                raise
            except RpcTimeout as err:
                timeout = kv_pb2.KvError(code=kv_pb2.KvError.TIMEOUT, message=str(err))
                await self._abort(context, timeout, str(err))
                raise
            except ConnectionLost as err:
                await self._abort(context, None, f"node {node}: {err}; outcome unknown")
                raise
            return bytes(reply.message)
        await self._abort(context, refused, refused.message)
        raise AssertionError("abort returned")

    async def watch(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        client = await self._client(self.spec.local_node)
        try:
            async for chunk in client.stream("kv.Watch", request, timeout_s=3600.0):
                yield bytes(chunk.message)
        except RpcRemoteError as err:
            await self._abort(context, kv_error_of(err), str(err))

    def _next_node(self, node: int) -> int:
        ids = sorted(self.spec.nodes)
        return ids[(ids.index(node) + 1) % len(ids)]

    async def close(self) -> None:
        await self._pool.close()


def handlers(forwarder: Forwarder) -> grpc.GenericRpcHandler:
    def unary(method: str) -> grpc.RpcMethodHandler[bytes, bytes]:
        async def call(request: bytes, context: Any) -> bytes:
            return await forwarder.unary(method, request, context)

        return grpc.unary_unary_rpc_method_handler(call)

    methods = {m: unary(m) for m in (*WRITES, *READS)}
    methods["Watch"] = grpc.unary_stream_rpc_method_handler(forwarder.watch)
    return grpc.method_handlers_generic_handler(SERVICE, methods)


async def serve(spec: GatewaySpec, stop: asyncio.Event) -> None:
    forwarder = Forwarder(spec)
    server = grpc.aio.server(options=(("grpc.so_reuseport", 1),))
    server.add_generic_rpc_handlers((handlers(forwarder),))
    if server.add_insecure_port(spec.listen) == 0:
        raise OSError(f"kv gateway: cannot listen on {spec.listen}")
    await server.start()
    print("ready", flush=True)
    await stop.wait()
    await server.stop(GRPC_STOP_GRACE_S)
    await forwarder.close()


def main(spec_json: str) -> None:
    spec = GatewaySpec.from_json(spec_json)
    die_with_parent(spec.parent_pid)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(spec, stop)

    event_loop.run_service(run())


if __name__ == "__main__":
    main(sys.argv[1])
