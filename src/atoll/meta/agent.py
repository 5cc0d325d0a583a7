"""The node agent: how every node (meta member or not) takes part in the cluster map.
Does network I/O over atoll.rpc.

`NodeAgent.run` creates the cluster first if it was given the `Bootstrap` command
(`meta.bootstrap`; a no-op if the cluster exists), then joins it (`meta.join` to the
meta leader, found through the
seed addresses and `not_leader` hints), then keeps two loops going: a heartbeat to the
leader every `heartbeat_interval_s` (with each device's usage), and a watch of the map
(`meta.watch` on any meta member) that keeps `NodeAgent.map` current. Both survive
leader changes and member failures: a failed call moves on to the next address after
a bounded backoff. Usage figures come from the injected `usage` function, so tests
and simulations can feed their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from atoll.meta.client import MetaClient
from atoll.meta.cluster_map import DEVICE_FAILED, ClusterMap
from atoll.meta.commands import Bootstrap, SetDeviceState, decode_map, encode_command
from atoll.meta.errors import MapFormatError, MetaRefused, MetaUnavailable
from atoll.meta.service import METHOD_BOOTSTRAP, METHOD_HEARTBEAT, METHOD_JOIN, METHOD_WATCH
from atoll.proto import meta_pb2
from atoll.rpc import ConnectionLost, RpcError

log = logging.getLogger(__name__)

BACKOFF_S = 0.2
BACKOFF_MAX_S = 2.0
# The meta service sends a keepalive every 10 s on a quiet watch; three missed ones
# and the watch moves to another member.
WATCH_IDLE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class DeviceConfig:
    path: str
    capacity_bytes: int  # 0: the file system's size


@dataclass(frozen=True)
class AgentConfig:
    node_id: int
    rpc: str
    kv: str
    zone: str
    rack: str
    member: bool
    devices: tuple[DeviceConfig, ...]
    seeds: tuple[str, ...]  # atoll.rpc addresses of meta members (or of any node to join)
    heartbeat_interval_s: float = 1.0
    bootstrap: Bootstrap | None = None  # the node that creates the cluster has it


def filesystem_usage(path: str) -> tuple[int, int]:
    """(used, capacity) bytes of the file system holding `path`."""
    st = os.statvfs(path)
    capacity = st.f_blocks * st.f_frsize
    return capacity - st.f_bfree * st.f_frsize, capacity


class NodeAgent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        usage: Callable[[str], tuple[int, int]] = filesystem_usage,
        load1: Callable[[], float] = lambda: os.getloadavg()[0],
    ) -> None:
        self.config = config
        self._usage = usage
        self._degraded_reads: Callable[[], int] = lambda: 0
        self._repair: Callable[[], meta_pb2.RepairReport] | None = None
        self._load1 = load1
        self.map = ClusterMap()
        self.device_ids: tuple[int, ...] = ()
        self.members: list[str] = []  # the meta members' rpc addresses, once joined
        self.joined = asyncio.Event()
        self._changed = asyncio.Event()
        self._report_now = asyncio.Event()
        self.client = MetaClient(config.seeds)
        self._failed_devices: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the loops --------------------------------------------------------------------

    async def run(self) -> None:
        if self.config.bootstrap is not None:
            await self._retry(self._create, "bootstrap")
        await self._retry(self._join, "join")
        self.joined.set()
        await asyncio.gather(self._retry(self._heartbeats, "heartbeat"), self._watch_loop())

    async def _retry(self, attempt: Callable[[], Awaitable[None]], what: str) -> None:
        backoff = BACKOFF_S
        while True:
            try:
                await attempt()
                return
            except (MetaUnavailable, MetaRefused, RpcError, OSError) as err:
                log.info("meta: %s failed (retrying in %.1fs): %s", what, backoff, err)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _create(self) -> None:
        assert self.config.bootstrap is not None
        reply = await self.client.call_leader(
            METHOD_BOOTSTRAP, encode_command(self.config.bootstrap)
        )
        log.info("meta: the cluster is %s", reply.decode())

    async def _join(self) -> None:
        c = self.config
        devices = []
        for d in c.devices:
            capacity = d.capacity_bytes or self._usage(d.path)[1]
            devices.append(meta_pb2.DeviceSpec(path=d.path, capacity_bytes=capacity))
        request = meta_pb2.JoinRequest(
            node_id=c.node_id,
            rpc=c.rpc,
            kv=c.kv,
            zone=c.zone,
            rack=c.rack,
            member=c.member,
            devices=devices,
        )
        reply = meta_pb2.JoinReply.FromString(
            await self.client.call_leader(METHOD_JOIN, request.SerializeToString())
        )
        self.device_ids = tuple(reply.device_ids)
        self.members = [member.rpc for member in reply.members]
        for address in self.members:
            self.client.add_address(address)
        log.info(
            "meta: node %d joined cluster %s (epoch %d) with devices %s",
            c.node_id,
            reply.cluster_id,
            reply.epoch,
            list(self.device_ids),
        )

    async def _heartbeats(self) -> None:
        while True:
            devices = []
            for device_id, d in zip(self.device_ids, self.config.devices, strict=True):
                try:
                    used, capacity = self._usage(d.path)
                except OSError as err:
                    # One bad disk must not silence the node: report it, go on.
                    self._device_failed(device_id, err)
                    continue
                devices.append(
                    meta_pb2.DeviceUsage(
                        device_id=device_id,
                        used_bytes=used,
                        capacity_bytes=d.capacity_bytes or capacity,
                    )
                )
            request = meta_pb2.HeartbeatRequest(
                node_id=self.config.node_id,
                epoch=self.map.epoch,
                devices=devices,
                load1=self._load1(),
                degraded_reads=self._degraded_reads(),
            )
            if self._repair is not None:
                request.repair.CopyFrom(self._repair())
            try:
                await self.client.call_leader(METHOD_HEARTBEAT, request.SerializeToString())
            except (MetaUnavailable, MetaRefused) as err:
                log.info("meta: heartbeat of node %d failed: %s", self.config.node_id, err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._report_now.wait(), self.config.heartbeat_interval_s)
            self._report_now.clear()

    def report_soon(self) -> None:
        """Send the next heartbeat now rather than at its interval (the repairer, when
        a pass ends: the leader learns of PGs verified or left incomplete at once). At
        most one heartbeat comes early however often this is called meanwhile."""
        self._report_now.set()

    def _device_failed(self, device_id: int, err: OSError) -> None:
        """Report a device whose I/O failed, once: marked failed in the map."""
        if device_id in self._failed_devices:
            return
        log.error("meta: device %d failed: %s", device_id, err)
        self._failed_devices.add(device_id)
        task = asyncio.get_running_loop().create_task(self.report_device_failure(device_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def use_usage(self, usage: Callable[[str], tuple[int, int]]) -> None:
        """Take device usage from `usage` from now on (the storage service's own
        accounting, once it runs, rather than the file system's)."""
        self._usage = usage

    def use_degraded_reads(self, counter: Callable[[], int]) -> None:
        """Report `counter()` (the gateway's degraded-read count) in heartbeats."""
        self._degraded_reads = counter

    def use_repair(self, report: Callable[[], meta_pb2.RepairReport]) -> None:
        """Send `report()` (the repairer's latest) in heartbeats."""
        self._repair = report

    def device_failed(self, device_id: int, err: OSError) -> None:
        """For the storage service: one of this node's devices failed I/O."""
        self._device_failed(device_id, err)

    async def _watch_loop(self) -> None:
        backoff = BACKOFF_S
        index = 0
        while True:
            address = self.client.addresses[index % len(self.client.addresses)]
            index += 1
            try:
                client = await self.client.connection(address)
                request = meta_pb2.WatchRequest(epoch=self.map.epoch)
                stream = client.stream(
                    METHOD_WATCH, request.SerializeToString(), timeout_s=WATCH_IDLE_TIMEOUT_S
                )
                async for chunk in stream:
                    if not len(chunk.payload):
                        continue  # keepalive
                    m = decode_map(bytes(chunk.payload))
                    backoff = BACKOFF_S
                    if m.epoch > self.map.epoch:
                        self.map = m
                        self._changed.set()
                        self._changed = asyncio.Event()
            except (RpcError, OSError, MapFormatError, ConnectionLost) as err:
                log.debug("meta: watch at %s ended: %s", address, err)
                await self.client.drop(address)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def report_device_failure(self, device_id: int) -> None:
        """Mark one of this node's devices failed in the map (it takes no new shards,
        and its shards are to be rebuilt elsewhere); retried until the map says so."""

        async def mark() -> None:
            result = await self.client.admin(SetDeviceState(device_id, DEVICE_FAILED))
            if result.ok or result.reason.endswith(f"already {DEVICE_FAILED}"):
                log.warning("meta: device %d marked failed (epoch %d)", device_id, result.epoch)
                return
            if result.reason.startswith("no device"):
                log.error("meta: cannot mark device %d failed: %s", device_id, result.reason)
                return
            raise MetaRefused(result.reason)

        await self._retry(mark, f"marking device {device_id} failed")

    async def wait_for(self, predicate: Callable[[ClusterMap], bool], timeout_s: float) -> None:
        """Return once the map satisfies `predicate` (`TimeoutError` after `timeout_s`)."""

        async def waiting() -> None:
            while not predicate(self.map):
                await self._changed.wait()

        await asyncio.wait_for(waiting(), timeout_s)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.close()
