"""The node agent's early heartbeat (`NodeAgent.report_soon`): the repairer calls it
when a pass ends, so the meta leader learns of verified PGs without waiting out the
heartbeat interval. The leader here is a real atoll.rpc server on 127.0.0.1 that
answers heartbeats and records their arrival; the agent, its MetaClient and the
transport are the real ones."""

from __future__ import annotations

import asyncio

from atoll.meta.agent import AgentConfig, DeviceConfig, NodeAgent
from atoll.meta.service import METHOD_HEARTBEAT
from atoll.proto import meta_pb2
from atoll.rpc import RpcServer

INTERVAL_S = 60.0  # far longer than the test waits: only report_soon can send early
WAIT_S = 10.0


def test_report_soon_sends_the_next_heartbeat_at_once_and_only_one() -> None:
    async def body() -> None:
        arrived: asyncio.Queue[meta_pb2.HeartbeatRequest] = asyncio.Queue()

        async def heartbeat(message: bytes, payload: bytes | memoryview) -> tuple[bytes, None]:
            arrived.put_nowait(meta_pb2.HeartbeatRequest.FromString(message))
            return meta_pb2.HeartbeatReply(epoch=1).SerializeToString(), None

        server = RpcServer({METHOD_HEARTBEAT: heartbeat}, "127.0.0.1", 0)
        await server.start()
        address = f"127.0.0.1:{server.port}"
        agent = NodeAgent(
            AgentConfig(
                node_id=3,
                rpc="127.0.0.1:1",
                kv="",
                zone="",
                rack="",
                member=True,
                devices=(DeviceConfig("/d", 100),),
                seeds=(address,),
                heartbeat_interval_s=INTERVAL_S,
            ),
            usage=lambda path: (10, 100),
            load1=lambda: 0.0,
        )
        agent.device_ids = (1,)
        reports = iter(range(1, 100))
        agent.use_repair(lambda: meta_pb2.RepairReport(repaired_shards=next(reports)))
        task = asyncio.create_task(agent._retry(agent._heartbeats, "heartbeat"))
        try:
            first = await asyncio.wait_for(arrived.get(), WAIT_S)
            assert first.node_id == 3 and first.repair.repaired_shards == 1
            # Several calls before the loop runs again: one early heartbeat.
            agent.report_soon()
            agent.report_soon()
            second = await asyncio.wait_for(arrived.get(), WAIT_S)
            assert second.repair.repaired_shards == 2  # the report as it is now
            agent.report_soon()
            third = await asyncio.wait_for(arrived.get(), WAIT_S)
            assert third.repair.repaired_shards == 3
            # No call since: the next heartbeat waits out the interval.
            await asyncio.sleep(0.5)
            assert arrived.empty()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await agent.close()
            await server.stop()

    asyncio.run(body())
