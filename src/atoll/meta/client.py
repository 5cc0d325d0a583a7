"""`MetaClient`: calls to the meta group over atoll.rpc, for the node agent and the
`atoll` command. Does network I/O.

It keeps one connection per address, finds the meta leader through the seed addresses
and `not_leader` hints (docs/formats/meta.md §4), and remembers it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from atoll.meta.cluster_map import Applied, ClusterMap
from atoll.meta.commands import Command, decode_map, encode_command
from atoll.meta.errors import MetaRefused, MetaUnavailable
from atoll.meta.service import (
    ERROR_META,
    ERROR_NOT_LEADER,
    METHOD_ADMIN,
    METHOD_MAP,
    METHOD_STATUS,
    decode_applied,
)
from atoll.proto import meta_pb2
from atoll.rpc import ERROR_UNKNOWN_METHOD, RpcClient, RpcError, RpcRemoteError

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 5.0
HOPS_MAX = 4  # not_leader hints followed per call, beyond one try of each address


class MetaClient:
    def __init__(self, seeds: Sequence[str]) -> None:
        if not seeds:
            raise ValueError("a meta client needs at least one address")
        self.addresses = list(dict.fromkeys(seeds))
        self._leader: str | None = None
        self._clients: dict[str, RpcClient] = {}

    def add_address(self, address: str) -> None:
        if address not in self.addresses:
            self.addresses.append(address)

    async def connection(self, address: str) -> RpcClient:
        client = self._clients.get(address)
        if client is None or client.is_closed:
            host, _, port = address.rpartition(":")
            client = await RpcClient.connect(host, int(port))
            old = self._clients.get(address)
            if old is not None and not old.is_closed:
                await client.close()  # another task connected meanwhile
                return old
            self._clients[address] = client
        return client

    async def drop(self, address: str) -> None:
        client = self._clients.pop(address, None)
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close(timeout_s=1.0)

    async def close(self) -> None:
        for address in list(self._clients):
            await self.drop(address)

    async def call_leader(self, method: str, message: bytes) -> bytes:
        """Call `method` on the meta leader: the last known one, else each address in
        turn, following `not_leader` hints. `MetaRefused` if the leader refuses,
        `MetaUnavailable` if none answers."""
        tried: list[str] = []
        candidates = ([self._leader] if self._leader else []) + self.addresses
        while candidates and len(tried) <= HOPS_MAX + len(self.addresses):
            address = candidates.pop(0)
            if address in tried:
                continue
            tried.append(address)
            try:
                client = await self.connection(address)
                reply = await client.call(method, message, timeout_s=CALL_TIMEOUT_S)
                self._leader = address
                return reply.message
            except RpcRemoteError as err:
                if err.code == ERROR_META:
                    raise MetaRefused(err.detail.decode("utf-8", "replace")) from err
                if err.code == ERROR_UNKNOWN_METHOD:
                    continue  # not a node that serves the map (yet): try the next
                if err.code != ERROR_NOT_LEADER:
                    raise MetaUnavailable(f"{method} at {address}: {err}") from err
                hint = meta_pb2.NotLeaderDetail.FromString(err.detail).leader_rpc
                if hint and hint not in tried:
                    candidates.insert(0, hint)
                    self.add_address(hint)
            except (RpcError, OSError) as err:
                log.debug("meta: %s at %s failed: %s", method, address, err)
                await self.drop(address)
        self._leader = None
        raise MetaUnavailable(f"{method}: no meta leader among {tried}")

    async def read_map(self, linearizable: bool = True) -> ClusterMap:
        """The map from the first member that answers (after a ReadIndex round there
        if `linearizable`)."""
        request = meta_pb2.MapRequest(linearizable=linearizable).SerializeToString()
        errors = []
        for address in list(self.addresses):
            try:
                client = await self.connection(address)
                reply = await client.call(METHOD_MAP, request, timeout_s=CALL_TIMEOUT_S)
                return decode_map(bytes(reply.payload))
            except (RpcError, OSError) as err:
                errors.append(f"{address}: {err}")
                await self.drop(address)
        raise MetaUnavailable(f"no member answered meta.map: {'; '.join(errors)}")

    async def status(self) -> dict[str, Any]:
        """The meta leader's status document (`meta.status`; see `status_document`)."""
        document: dict[str, Any] = json.loads(await self.call_leader(METHOD_STATUS, b""))
        return document

    async def admin(self, command: Command) -> Applied:
        """Propose an operator's command (`meta.admin`) and return its outcome."""
        return decode_applied(await self.call_leader(METHOD_ADMIN, encode_command(command)))
