"""Review finding on the node agent's heartbeats (issue 4 §1). Fails until fixed."""

from __future__ import annotations

import asyncio

from atoll.meta.agent import AgentConfig, DeviceConfig, NodeAgent
from atoll.meta.cluster_map import Applied
from atoll.meta.commands import SetDeviceState, decode_command
from atoll.meta.service import METHOD_ADMIN, METHOD_HEARTBEAT, encode_applied
from atoll.proto import meta_pb2


def test_one_unreadable_device_does_not_stop_the_heartbeats() -> None:
    """`_heartbeats` calls `usage(path)` (statvfs) for every device with no handling:
    a device whose mount went away raises OSError, `_retry` restarts the loop, which
    raises again before sending anything. A node with one bad disk stops heartbeating
    altogether and is marked down with all its healthy devices (exactly what a disk
    failure should not do); the bad device should be reported (or marked failed)
    while the heartbeats go on."""

    def usage(path: str) -> tuple[int, int]:
        if path == "/bad":
            raise OSError(5, "Input/output error", path)
        return 10, 100

    reported: list[object] = []

    async def body() -> list[meta_pb2.HeartbeatRequest]:
        agent = NodeAgent(
            AgentConfig(
                node_id=1,
                rpc="127.0.0.1:1",
                kv="",
                zone="",
                rack="",
                member=True,
                devices=(DeviceConfig("/good", 100), DeviceConfig("/bad", 100)),
                seeds=("127.0.0.1:1",),
                heartbeat_interval_s=0.05,
            ),
            usage=usage,
            load1=lambda: 0.0,
        )
        agent.device_ids = (1, 2)
        sent: list[meta_pb2.HeartbeatRequest] = []

        async def call_leader(method: str, message: bytes) -> bytes:
            if method == METHOD_ADMIN:
                reported.append(decode_command(message))
                return encode_applied(Applied(True, 2))
            assert method == METHOD_HEARTBEAT
            sent.append(meta_pb2.HeartbeatRequest.FromString(message))
            return meta_pb2.HeartbeatReply(epoch=1).SerializeToString()

        agent.client.call_leader = call_leader  # type: ignore[method-assign]
        task = asyncio.create_task(agent._retry(agent._heartbeats, "heartbeat"))
        await asyncio.sleep(1.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await agent.close()
        return sent

    sent = asyncio.run(body())
    assert len(sent) >= 5, f"{len(sent)} heartbeats in 1 s at a 0.05 s interval"
    assert all([d.device_id for d in h.devices] == [1] for h in sent)
    assert reported == [SetDeviceState(2, "failed")]  # once, not at every heartbeat
