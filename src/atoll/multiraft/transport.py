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
message (without data), the following chunks the snapshot data, made piece by piece
on a worker thread as the stream goes (`OutgoingSnapshot`: the host reads its state
machine from an engine snapshot, and nothing holds the whole image). The outcome is
reported back to the group's core (`report_snapshot`); a snapshot that cannot be
made or sent is reported failed, and the core asks again later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

from atoll.multiraft.errors import SnapshotTooLarge
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


class OutgoingSnapshot:
    """A snapshot's data being made: `chunks` is read on a worker thread, one piece at
    a time, and `close` (which releases what the pieces are read from) is called once,
    however the transfer ends (a cancelled transfer may leave a read running on its
    thread: the lock makes `close` wait for it)."""

    def __init__(self, chunks: Iterator[bytes], close: Callable[[], None]) -> None:
        self._chunks = chunks
        self._close = close
        self._closed = False
        self._lock = threading.Lock()

    def next_chunk(self) -> bytes | None:
        with self._lock:
            return None if self._closed else next(self._chunks, None)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._close()


def message_bytes(m: Message) -> int:
    return 64 + sum(len(e.data) for e in m.entries)


class PeerSender:
    def __init__(
        self,
        peer_id: int,
        address: str,
        config: TransportConfig,
        report: Report,
    ) -> None:
        self.peer_id = peer_id
        self.address = address
        self.host, _, port = address.rpartition(":")
        self.port = int(port)
        self.config = config
        self.report = report
        self.queue: deque[tuple[int, Message]] = deque()
        self.dropped = 0
        self._wake = asyncio.Event()
        self._client: RpcClient | None = None
        self._connecting = asyncio.Lock()
        self._snapshot_tasks: set[asyncio.Task[None]] = set()

    def send_snapshot(self, group_id: int, m: Message, outgoing: OutgoingSnapshot) -> None:
        """Stream `m` (a SNAP whose metadata describes `outgoing`) and the data."""
        task = asyncio.get_running_loop().create_task(self._send_snapshot(group_id, m, outgoing))
        self._snapshot_tasks.add(task)
        task.add_done_callback(self._snapshot_tasks.discard)

    def enqueue(self, group_id: int, m: Message) -> None:
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

    async def _send_snapshot(self, group_id: int, m: Message, outgoing: OutgoingSnapshot) -> None:
        failed = True
        try:
            client = await self._connect()
            head, _ = encode_batch([(group_id, m)])

            async def chunks() -> AsyncIterator[Chunk]:
                yield head, None
                while (piece := await asyncio.to_thread(outgoing.next_chunk)) is not None:
                    yield b"", piece

            await client.call_stream(
                METHOD_SNAPSHOT, chunks(), timeout_s=self.config.snapshot_timeout_s
            )
            failed = False
        except (RpcError, OSError) as err:
            log.info(
                "raft: snapshot of group %d to node %d failed: %s", group_id, self.peer_id, err
            )
        except Exception:
            # The state machine is the host's to choose; whatever stops it from making
            # its image (a replica still restoring one, a read error) fails this transfer
            # only: the core asks again later.
            log.exception(
                "raft: could not make group %d's snapshot for node %d", group_id, self.peer_id
            )
        finally:
            await asyncio.to_thread(outgoing.close)
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
    assert m.snapshot is not None
    data = bytearray()
    async for chunk in chunks:
        data += chunk.payload
        if len(data) > data_bytes_max:
            raise SnapshotTooLarge(group_id, m.snapshot.meta.index, len(data), data_bytes_max)
    snapshot = Snapshot(m.snapshot.meta, bytes(data))
    deliver(
        group_id,
        Message(m.type, to=m.to, frm=m.frm, term=m.term, snapshot=snapshot),
    )
    return b"", None
