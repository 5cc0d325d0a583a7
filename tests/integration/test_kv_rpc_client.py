"""`KvRpcClient`'s leader following against two real `RpcServer`s on 127.0.0.1 whose
`kv.Put` handlers say NOT_LEADER and point at each other while an "election" runs:
the client must back off and outlast it, not spend its attempts bouncing between the
hints in milliseconds."""

from __future__ import annotations

import asyncio
import time

import pytest

from atoll.kv.rpc_client import RPC_ERROR_CODE, KvRpcClient
from atoll.proto import kv_pb2
from atoll.rpc import Chunk, HandlerError, RpcPool, RpcServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ELECTION_S = 0.5


def test_moving_leader_hints_are_followed_with_backoff() -> None:
    async def body() -> None:
        start = time.monotonic()
        calls: list[int] = []

        def handler(node: int, other: int):  # type: ignore[no-untyped-def]
            async def put(message: bytes, payload: bytes | memoryview) -> Chunk:
                calls.append(node)
                if time.monotonic() - start < ELECTION_S or node != 1:
                    error = kv_pb2.KvError(
                        code=kv_pb2.KvError.NOT_LEADER, leader_hint=other, message="election"
                    )
                    raise HandlerError(RPC_ERROR_CODE, error.SerializeToString())
                return kv_pb2.PutResponse().SerializeToString(), None

            return put

        servers = {
            1: RpcServer({"kv.Put": handler(1, 2)}, "127.0.0.1", 0),
            2: RpcServer({"kv.Put": handler(2, 1)}, "127.0.0.1", 0),
        }
        for server in servers.values():
            await server.start()
        pool = RpcPool()
        client = KvRpcClient(lambda: {i: f"127.0.0.1:{s.port}" for i, s in servers.items()}, pool)
        try:
            await client.put(b"k", b"v")
        finally:
            await pool.close()
            for server in servers.values():
                await server.stop()
        assert time.monotonic() - start >= ELECTION_S
        assert calls[-1] == 1 and len(calls) <= 16

    asyncio.run(body())
