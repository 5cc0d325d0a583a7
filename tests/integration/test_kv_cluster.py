"""A 3-node cluster of real processes on 127.0.0.1, driven by the real client
(`atoll.kv.Client`): the KV API end to end, then puts, gets and compare-and-sets while
leaders and followers are killed with SIGKILL and restarted, and a leader is stopped
with SIGSTOP for longer than the election timeout and read from directly once it
resumes. Every operation is recorded and the history must be linearizable (issue 3
§4); every write acknowledged before the faults must still be readable after them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from kv_cluster import Cluster

from atoll.kv import Client, KvClientError
from atoll.proto import kv_pb2, kv_pb2_grpc
from atoll.rpc import RpcClient, RpcRemoteError
from atoll.sim.linearizability import Operation, check_history, describe

KEYS = (b"a", b"b", b"c")
CLIENTS = 3
DIRECT_READER = 99  # the client id of reads sent straight to a resumed leader
PAUSE_S = 2.0  # > 4x the election timeout (0.5 s)
DOWN_S = 1.5
OP_TIMEOUT_S = 3.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    c.start_all()
    try:
        yield c
    finally:
        c.stop_all()


@pytest.mark.parametrize("gateways", [0, 2], ids=["grpc-in-node", "grpc-gateways"])
def test_kv_api_end_to_end(tmp_path: Path, gateways: int) -> None:
    """The public API served by the node's own gRPC server, or by gateway processes."""
    cluster = Cluster(tmp_path, kv_gateway_processes=gateways)
    cluster.start_all()
    try:
        asyncio.run(_exercise_api(cluster))
    finally:
        cluster.stop_all()


async def _exercise_api(cluster: Cluster) -> None:
    await cluster.leader()
    client = await Client.connect(cluster.endpoints)
    try:
        events: list[tuple[str, bytes, bytes]] = []
        watch = client.watch(b"w/")

        async def watcher() -> None:
            async for e in watch:
                events.append((e.type, e.key, e.value))
                if len(events) == 3:
                    return

        task = asyncio.create_task(watcher())
        await client.put(b"w/1", b"one")
        assert await client.get(b"w/1") == b"one"
        assert await client.get(b"w/1", serializable=True) in (b"one", None)
        assert await client.get(b"missing") is None
        await client.put(b"empty", b"")
        assert await client.get(b"empty") == b""  # empty is not absent
        assert await client.cas(b"w/1", b"one", b"two")
        assert not await client.cas(b"w/1", b"one", b"three")
        assert await client.cas(b"new", None, b"x")
        assert not await client.cas(b"new", None, b"y")
        assert await client.delete(b"w/1")
        assert not await client.delete(b"w/1")
        for i in range(5):
            await client.put(b"s/%d" % i, b"%d" % i)
        assert await client.scan(b"s/", b"s/9") == [(b"s/%d" % i, b"%d" % i) for i in range(5)]
        assert await client.scan(b"s/", b"s/9", limit=2, reverse=True) == [
            (b"s/4", b"4"),
            (b"s/3", b"3"),
        ]
        await asyncio.wait_for(task, 10)
        assert events == [
            ("put", b"w/1", b"one"),
            ("put", b"w/1", b"two"),
            ("delete", b"w/1", b""),
        ]
    finally:
        await client.close()


class History:
    def __init__(self) -> None:
        self.ops: list[Operation] = []
        self.acked_writes = 0

    def now(self) -> float:
        return time.monotonic()


async def run_client(
    client_id: int, endpoints: list[str], history: History, stop: asyncio.Event
) -> None:
    rng = random.Random(client_id)
    client = await Client.connect(endpoints, request_timeout_s=OP_TIMEOUT_S)
    n = 0
    try:
        while not stop.is_set():
            n += 1
            key = rng.choice(KEYS)
            value = b"c%d-%d" % (client_id, n)
            roll = rng.random()
            start = history.now()
            try:
                if roll < 0.4:
                    await client.put(key, value)
                    history.ops.append(
                        Operation(client_id, "put", key, start, history.now(), value=value)
                    )
                    history.acked_writes += 1
                elif roll < 0.6:
                    expected = rng.choice(
                        (None, b"c%d-%d" % (rng.randrange(CLIENTS), rng.randint(1, n)))
                    )
                    ok = await client.cas(key, expected, value)
                    history.ops.append(
                        Operation(
                            client_id,
                            "cas",
                            key,
                            start,
                            history.now(),
                            output=ok,
                            value=value,
                            expected=expected,
                        )
                    )
                else:
                    got = await client.get(key)
                    history.ops.append(
                        Operation(client_id, "get", key, start, history.now(), output=got)
                    )
            except (KvClientError, grpc.aio.AioRpcError):
                # A write that failed this way may or may not have applied; a failed
                # read tells nothing.
                if roll < 0.4:
                    history.ops.append(Operation(client_id, "put", key, start, None, value=value))
                elif roll < 0.6:
                    history.ops.append(
                        Operation(
                            client_id, "cas", key, start, None, value=value, expected=expected
                        )
                    )
    finally:
        await client.close()


async def direct_reads(endpoint: str, history: History, count: int) -> int:
    """Linearizable gets sent to one node only, no redirects: a deposed leader must
    refuse them rather than answer from its stale state."""
    served = 0
    async with grpc.aio.insecure_channel(endpoint) as channel:
        stub = kv_pb2_grpc.KVStub(channel)  # type: ignore[no-untyped-call]
        for i in range(count):
            key = KEYS[i % len(KEYS)]
            start = history.now()
            try:
                response = await stub.Get(kv_pb2.GetRequest(key=key), timeout=OP_TIMEOUT_S)
            except grpc.aio.AioRpcError:
                continue
            value = response.kv.value if response.HasField("kv") else None
            history.ops.append(
                Operation(DIRECT_READER, "get", key, start, history.now(), output=value)
            )
            served += 1
    return served


def test_faults_keep_history_linearizable(cluster: Cluster) -> None:
    async def main() -> None:
        history = History()
        await cluster.leader()
        stop = asyncio.Event()
        clients = [
            asyncio.create_task(run_client(i, cluster.endpoints, history, stop))
            for i in range(CLIENTS)
        ]
        faults: list[str] = []
        try:
            for _ in range(3):
                leader = await cluster.leader()
                cluster.kill(leader)
                faults.append(f"kill -9 leader {leader}")
                await asyncio.sleep(DOWN_S)  # let clients run against the survivors
                cluster.start(leader)
                leader = await cluster.leader()
                follower = next(i for i in cluster.nodes if i != leader)
                cluster.kill(follower)
                faults.append(f"kill -9 follower {follower}")
                await asyncio.sleep(DOWN_S)
                cluster.start(follower)
            leader = await cluster.leader()
            cluster.pause(leader)
            faults.append(f"SIGSTOP leader {leader} for {PAUSE_S}s")
            await asyncio.sleep(PAUSE_S)
            cluster.resume(leader)
            served = await direct_reads(cluster.nodes[leader].kv, history, 20)
            faults.append(f"SIGCONT {leader}, then 20 direct reads ({served} served)")
            await cluster.leader()
            await asyncio.sleep(1.0)
        finally:
            stop.set()
            await asyncio.gather(*clients)
        # Final reads of every key, after the faults.
        final = await Client.connect(cluster.endpoints)
        try:
            for key in KEYS:
                start = history.now()
                got = await final.get(key)
                history.ops.append(Operation(100, "get", key, start, history.now(), output=got))
        finally:
            await final.close()
        unknown = sum(1 for op in history.ops if op.return_time is None)
        print(
            f"\nfaults: {faults}\nops: {len(history.ops)} ({unknown} unknown), acked writes: {history.acked_writes}"
        )
        assert history.acked_writes >= 50, "the clients did too little to check anything"
        result = check_history(history.ops)
        if result.ok is not True:
            lines = [describe(op) for op in history.ops if op.key == result.key][-60:]
            pytest.fail(
                f"history not linearizable on {result.key!r}: {result}\n" + "\n".join(lines)
            )

    asyncio.run(main())


def test_kv_over_atoll_rpc(cluster: Cluster) -> None:
    """The same service on atoll.rpc (what Atoll's own layers use): the leader serves
    writes; a follower answers a typed NOT_LEADER naming the leader."""

    async def main() -> None:
        leader = await cluster.leader()
        follower = next(i for i in cluster.nodes if i != leader)

        async def connect(node_id: int) -> RpcClient:
            host, _, port = cluster.nodes[node_id].rpc.rpartition(":")
            return await RpcClient.connect(host, int(port))

        to_leader, to_follower = await connect(leader), await connect(follower)
        try:
            put = kv_pb2.PutRequest(key=b"r", value=b"over rpc").SerializeToString()
            await to_leader.call("kv.Put", put)
            reply = await to_follower.call(
                "kv.Get", kv_pb2.GetRequest(key=b"r").SerializeToString()
            )
            assert kv_pb2.GetResponse.FromString(reply.message).kv.value == b"over rpc"
            with pytest.raises(RpcRemoteError) as caught:
                await to_follower.call("kv.Put", put)
            assert caught.value.code == "kv_error"
            error = kv_pb2.KvError.FromString(caught.value.detail)
            assert error.code == kv_pb2.KvError.NOT_LEADER
            assert (error.leader_hint, error.leader_address) == (leader, cluster.nodes[leader].kv)
        finally:
            await to_leader.close()
            await to_follower.close()

    asyncio.run(main())


def test_a_follower_far_behind_catches_up_by_snapshot(tmp_path: Path) -> None:
    """Logs are cut every 20 entries; a follower down for 150 writes can only catch
    up from the leader's snapshot, made from the leader's engine and streamed over
    atoll.rpc in 1 MiB pieces (3 MB of values: several), and then serves the data."""
    cluster = Cluster(tmp_path, compact_after_entries=20)
    cluster.start_all()

    def value(i: int) -> bytes:
        return (b"value %d " % i) * 2000  # about 20 KB

    async def main() -> int:
        leader = await cluster.leader()
        follower = next(i for i in cluster.nodes if i != leader)
        cluster.kill(follower)
        client = await Client.connect(cluster.endpoints)
        try:
            for i in range(150):
                await client.put(b"snap/%03d" % i, value(i))
        finally:
            await client.close()
        cluster.start(follower)
        local = await Client.connect([cluster.nodes[follower].kv])
        try:
            deadline = time.monotonic() + 30
            while await local.get(b"snap/149", serializable=True) != value(149):
                assert time.monotonic() < deadline, cluster.logs()
                await asyncio.sleep(0.05)
            rows = await local.scan(b"snap/", b"snap0", limit=1000)
            assert rows == [(b"snap/%03d" % i, value(i)) for i in range(150)]
        finally:
            await local.close()
        return follower

    try:
        follower = asyncio.run(main())
    finally:
        cluster.stop_all()
    assert "installed a snapshot" in cluster.nodes[follower].log.read_text()
