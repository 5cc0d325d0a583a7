"""`RpcPool`: one `RpcClient` per peer address, connected on first use and again after
the connection broke. Does network I/O (through `RpcClient`).

Callers that talk to many nodes (the S3 gateway, the KV gateway processes) share one
pool instead of keeping their own dict of clients. Concurrent first uses of an
address wait for one connection attempt.
"""

from __future__ import annotations

import asyncio

from atoll.rpc.client import RpcClient
from atoll.rpc.connection import CONNECT_TIMEOUT_S


def split_address(address: str) -> tuple[str, int]:
    """`host:port` -> (host, port); `ValueError` if the port is not a number."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"not a host:port address: {address!r}")
    return host, int(port)


class RpcPool:
    def __init__(self, *, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self.connect_timeout_s = connect_timeout_s
        self._clients: dict[str, RpcClient] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._closed = False

    async def get(self, address: str) -> RpcClient:
        """The client of `address`, connecting if there is none or it broke. Raises
        what `RpcClient.connect` raises (`ConnectionLost`, `RpcTimeout`)."""
        if self._closed:
            raise RuntimeError("the rpc pool is closed")
        client = self._clients.get(address)
        if client is not None and not client.is_closed:
            return client
        async with self._locks.setdefault(address, asyncio.Lock()):
            client = self._clients.get(address)
            if client is None or client.is_closed:
                host, port = split_address(address)
                client = await RpcClient.connect(
                    host, port, connect_timeout_s=self.connect_timeout_s
                )
                self._clients[address] = client
            return client

    async def close(self) -> None:
        self._closed = True
        clients, self._clients = self._clients, {}
        await asyncio.gather(*(c.close() for c in clients.values()), return_exceptions=True)


__all__ = ["RpcPool", "split_address"]
