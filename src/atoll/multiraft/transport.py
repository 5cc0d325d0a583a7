"""Raft messages between nodes over `atoll.rpc` (docs/rpc.md). Does network I/O.

One `PeerSender` per peer node owns one connection and a bounded queue of
`(group id, message)`; its task takes everything queued (up to `batch_bytes_max`) and
sends it as one one-way `raft.batch` request, so the messages of all groups to one
peer travel together, and nothing answers a batch: the answers are Raft messages
going the other way on the peer's own connection (as etcd's streams do). Raft
tolerates loss, so a full queue drops (and counts) messages, a failed send reports the
peer unreachable to the groups involved, and batches lost with a connection are
recovered by Raft itself (a follower rejects the gap, heartbeat answers free the
leader's window); the sender reconnects with a bounded backoff.

Snapshots go by a client stream, `raft.snapshot`: the first chunk carries the `SNAP`
message (without data), the following chunks the snapshot data in
`snapshot_chunk_bytes` pieces. The outcome is reported back to the group's core
(`report_snapshot`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from atoll.multiraft.wire import decode_batch, encode_batch
from atoll.raft import Message, MessageType, Snapshot
from atoll.rpc import Chunk, Reply, RpcClient, RpcError

log = logging.getLogger(__name__)

METHOD_BATCH = "raft.batch"
METHOD_SNAPSHOT = "raft.snapshot"


@dataclass(frozen=True)
class TransportConfig:
    queue_messages_max: int = 4096
    batch_bytes_max: int = 4 << 20
    send_timeout_s: float = 5.0
    snapshot_timeout_s: float = 60.0
    snapshot_chunk_bytes: int = 1 << 20
    reconnect_backoff_s: float = 0.05
    reconnect_backoff_max_s: float = 1.0


Deliver = Callable[[int, Message], None]
Report = Callable[[int, Message, bool], None]
"""(group id, message that failed or a SNAP that finished, failed?)"""


def message_bytes(m: Message) -> int:
    return 64 + sum(len(e.data) for e in m.entries)


class PeerSender:
    def __init__(
        self,
        peer_id: int,
        address: str,
        config: TransportConfig,
        report: Report,
        snapshot_source: Callable[[int], Snapshot | None],
    ) -> None:
        self.peer_id = peer_id
        self.host, _, port = address.rpartition(":")
        self.port = int(port)
        self.config = config
        self.report = report
        self.snapshot_source = snapshot_source
        self.queue: deque[tuple[int, Message]] = deque()
        self.dropped = 0
        self._wake = asyncio.Event()
        self._client: RpcClient | None = None
        self._connecting = asyncio.Lock()
        self._snapshot_tasks: set[asyncio.Task[None]] = set()

    def enqueue(self, group_id: int, m: Message) -> None:
        if m.type is MessageType.SNAP:
            task = asyncio.get_running_loop().create_task(self._send_snapshot(group_id, m))
            self._snapshot_tasks.add(task)
            task.add_done_callback(self._snapshot_tasks.discard)
            return
        if len(self.queue) >= self.config.queue_messages_max:
            self.dropped += 1
            self.report(group_id, m, True)
            return
        self.queue.append((group_id, m))
        self._wake.set()

    async def _connect(self) -> RpcClient:
        async with self._connecting:  # one connection, even when a snapshot races run()
            if self._client is None or self._client.is_closed:
                self._client = await RpcClient.connect(self.host, self.port)
            return self._client

    async def run(self) -> None:
        backoff = self.config.reconnect_backoff_s
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.queue:
                batch = self._take()
                try:
                    client = await self._connect()
                    message, parts = encode_batch(batch)
                    await client.send(
                        METHOD_BATCH, message, parts, timeout_s=self.config.send_timeout_s
                    )
                    backoff = self.config.reconnect_backoff_s
                except (RpcError, OSError) as err:
                    log.debug("raft: sending to node %d failed: %s", self.peer_id, err)
                    for group_id, m in batch:
                        self.report(group_id, m, True)
                    await self._drop_client()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.config.reconnect_backoff_max_s)

    def _take(self) -> list[tuple[int, Message]]:
        batch: list[tuple[int, Message]] = []
        size = 0
        while self.queue and (not batch or size < self.config.batch_bytes_max):
            item = self.queue.popleft()
            batch.append(item)
            size += message_bytes(item[1])
        return batch

    async def _send_snapshot(self, group_id: int, m: Message) -> None:
        failed = True
        try:
            snapshot = await asyncio.to_thread(self.snapshot_source, group_id)
            if snapshot is None or m.snapshot is None or snapshot.meta != m.snapshot.meta:
                log.warning("raft: group %d has no snapshot at %s to send", group_id, m.snapshot)
                return
            client = await self._connect()
            head, _ = encode_batch([(group_id, m)])
            data = snapshot.data
            step = self.config.snapshot_chunk_bytes

            async def chunks() -> AsyncIterator[Chunk]:
                yield head, None
                view = memoryview(data)
                for offset in range(0, len(data), step):
                    yield b"", view[offset : offset + step]

            await client.call_stream(
                METHOD_SNAPSHOT, chunks(), timeout_s=self.config.snapshot_timeout_s
            )
            failed = False
        except (RpcError, OSError) as err:
            log.info(
                "raft: snapshot of group %d to node %d failed: %s", group_id, self.peer_id, err
            )
        finally:
            self.report(group_id, m, failed)

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close(timeout_s=1.0)

    async def close(self) -> None:
        for task in list(self._snapshot_tasks):
            task.cancel()
        await self._drop_client()


async def receive_batch(deliver: Deliver, message: bytes, payload: bytes | memoryview) -> Chunk:
    for group_id, m in decode_batch(message, payload):
        deliver(group_id, m)
    return b"", None


async def receive_snapshot(
    deliver: Deliver, chunks: AsyncIterator[Reply], data_bytes_max: int
) -> Chunk:
    head = await anext(chunks)
    items = decode_batch(head.message, head.payload)
    if len(items) != 1 or items[0][1].type is not MessageType.SNAP:
        raise ValueError("raft.snapshot: the first chunk must carry one SNAP message")
    group_id, m = items[0]
    data = bytearray()
    async for chunk in chunks:
        data += chunk.payload
        if len(data) > data_bytes_max:
            raise ValueError(f"raft.snapshot: over {data_bytes_max} bytes")
    assert m.snapshot is not None
    snapshot = Snapshot(m.snapshot.meta, bytes(data))
    deliver(
        group_id,
        Message(m.type, to=m.to, frm=m.frm, term=m.term, snapshot=snapshot),
    )
    return b"", None
