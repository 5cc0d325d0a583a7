"""One Atoll node process: the composition root that wires the engine, the multi-raft
host, the KV region and both servers together (shared/STYLE.md §2: only here are the
real clock, randomness and sockets created). Does I/O.

The public gRPC KV API is served by `kv_gateway_processes` child processes
(`atoll.kv.gateway`) that forward to the nodes over atoll.rpc, or, with 0, by a gRPC
server inside this process.

Group 0 is the meta group (the cluster map, `atoll.meta`) and group 1 the single KV
region covering the whole key space. The initial members (`[[nodes]]`) hold their
replicas from the start; every other node opens both groups once it has the map and
holds a replica only once a group's leader adds it (docs/repair.md, "Raft
replicas"). Every node, member or joiner, runs a `NodeAgent` that registers it and its devices in the
map, heartbeats to the meta leader and watches the map; a node with devices serves
its shards (`atoll.storage`) once the map has given the devices their ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from atoll.base import loop as event_loop
from atoll.base.errors import AtollError
from atoll.engine import open_engine
from atoll.engine.api import Engine
from atoll.gateway.gc import GcConfig, run_collector
from atoll.gateway.http import S3Server
from atoll.gateway.repair import RepairConfig, Repairer
from atoll.gateway.scrub import Scrubber, ScrubConfig
from atoll.gateway.store import ObjectStore
from atoll.kv.gateway import GatewaySpec
from atoll.kv.grpc_server import KvServicer, rpc_handlers
from atoll.kv.rpc_client import KvRpcClient
from atoll.kv.service import KvService, ServiceConfig
from atoll.kv.state_machine import KvStateMachine
from atoll.meta.agent import AgentConfig, DeviceConfig, NodeAgent, filesystem_usage
from atoll.meta.cluster_map import ClusterMap
from atoll.meta.commands import Bootstrap, SetReplicas
from atoll.meta.errors import MetaRefused, MetaUnavailable
from atoll.meta.replicas import next_change, transfer_to
from atoll.meta.service import (
    META_GROUP_ID,
    BootstrapSpec,
    MetaConfig,
    MetaService,
    bootstrap_command,
    redirect_handlers,
)
from atoll.meta.state_machine import MetaStateMachine
from atoll.multiraft.host import HostConfig, RaftHost
from atoll.multiraft.log_store import LogStore
from atoll.proto import kv_pb2_grpc
from atoll.raft import ConfState, RaftError
from atoll.rpc import (
    ClientStreamHandler,
    Handler,
    LocalClient,
    RpcPool,
    RpcServer,
)
from atoll.server.config import NodeConfig, load
from atoll.storage import DeviceConfig as StorageDeviceConfig
from atoll.storage import StorageService

log = logging.getLogger("atoll.node")

REGION_ID = 1
VOTER_DUTY_INTERVAL_S = 1.0
CONF_CHANGE_TIMEOUT_S = 10.0
MAP_WAIT_S = 3600.0  # a joined node waits this long for its first map
TRANSFER_RETRY_S = 5.0  # a leader leaving asks for a transfer at most this often
GRPC_STOP_GRACE_S = 2.0
GATEWAY_START_TIMEOUT_S = 30.0
GATEWAY_STOP_TIMEOUT_S = 5.0


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


@dataclass
class RaftParts:
    """The Raft host of a node holding (or ready to hold) replicas of the meta group
    and the KV region, and the services over them."""

    host: RaftHost
    kv: KvService
    meta: MetaService
    handlers: dict[str, Handler]
    stream_handlers: dict[str, ClientStreamHandler]
    transfer_asked: dict[int, float] = field(default_factory=dict)  # group -> when

    def served(self, member: bool) -> dict[str, Handler]:
        """The rpc methods to serve: on a node that joined, the meta methods are the
        redirecting ones (`redirect_handlers`), which hand over to `meta` once this
        node holds a replica of the meta group."""
        return {k: v for k, v in self.handlers.items() if member or not k.startswith("meta.")}


async def serve(config: NodeConfig, stop: asyncio.Event) -> None:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    for device in config.devices:
        device.path.mkdir(parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        handlers: dict[str, Handler] = {}
        stream_handlers: dict[str, ClientStreamHandler] = {}
        tasks: list[asyncio.Task[None]] = []
        engine = open_engine(str(config.data_dir / "engine"), config.engine)
        stack.callback(engine.close)
        raft: RaftParts | None = None
        if config.member or _holds_replicas(engine):
            # A founding member starts from the configured members; a node that joined
            # has its groups' first configuration stored (written when it opened them).
            raft = await _make_raft(config, engine, [m.id for m in config.nodes])
            handlers.update(raft.served(config.member))
            stream_handlers.update(raft.stream_handlers)
        rpc_host, rpc_port = _split(config.rpc_address)
        rpc_server = RpcServer(handlers, rpc_host, rpc_port, client_stream_handlers=stream_handlers)
        await rpc_server.start()
        stack.push_async_callback(rpc_server.stop)
        if raft is not None:
            await _start_raft(config, stack, raft)
        agent = NodeAgent(
            AgentConfig(
                node_id=config.node_id,
                rpc=config.rpc_address,
                kv=config.kv_address,
                zone=config.zone,
                rack=config.rack,
                member=config.member,
                devices=tuple(DeviceConfig(str(d.path), d.capacity_bytes) for d in config.devices),
                seeds=tuple(m.rpc for m in config.nodes) or (config.join,),
                heartbeat_interval_s=config.heartbeat_interval_s,
                bootstrap=_bootstrap_command(config),
            )
        )
        stack.push_async_callback(agent.close)
        holder = [raft]
        if not config.member:
            rpc_server.add_handlers(
                redirect_handlers(lambda: agent.members, lambda: _meta_replica(holder[0]))
            )
        tasks.append(asyncio.create_task(agent.run(), name="meta-agent"))
        tasks.append(
            asyncio.create_task(_raft_side(config, engine, agent, rpc_server, holder), name="raft")
        )
        storage: asyncio.Future[StorageService] = asyncio.get_running_loop().create_future()
        if config.devices:
            tasks.append(
                asyncio.create_task(
                    _serve_storage(config, agent, rpc_server, storage), name="storage"
                )
            )
        if config.s3_address:
            # A node holding a KV replica serves it to its own gateway in process.
            kv_local = LocalClient(handlers) if raft is not None else None
            tasks.append(
                asyncio.create_task(_serve_s3(config, agent, storage, kv_local), name="s3")
            )
        print(
            f"atoll node {config.node_id}: kv {config.kv_address} rpc {config.rpc_address}",
            flush=True,
        )
        waits = [asyncio.create_task(stop.wait()), *tasks]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                error = task.exception()
                raise RuntimeError(
                    f"node {config.node_id}: {task.get_name()} failed: {error}"
                ) from error


def _meta_replica(raft: RaftParts | None) -> MetaService | None:
    """The node's meta service if it holds a replica of the meta group (a voter or a
    learner in the configuration it has), else None."""
    if raft is None:
        return None
    conf = raft.host.conf(META_GROUP_ID)
    return raft.meta if raft.host.id in conf.voters | conf.learners else None


def _holds_replicas(engine: Engine) -> bool:
    """Whether this node's engine holds the Raft logs of its groups (made as a founding
    member, or opened after it joined: `_make_raft` records both at once)."""
    return META_GROUP_ID in LogStore(engine).groups()


async def _make_raft(config: NodeConfig, engine: Engine, founders: Iterable[int]) -> RaftParts:
    """The Raft host with the meta group and the KV region, and the services on them.
    `founders` are the groups' first voters: recorded (both groups in one synced
    write) unless the groups have a stored log already; () when they must have."""
    initial = ConfState(frozenset(founders))
    log_store = LogStore(engine)
    if initial.voters:
        await asyncio.to_thread(log_store.initialize, (META_GROUP_ID, REGION_ID), initial)
    rng = random.Random(int.from_bytes(os.urandom(8), "big"))
    host = RaftHost(
        HostConfig(
            node_id=config.node_id,
            tick_interval_s=config.tick_interval_ms / 1000,
            election_timeout_ticks=config.election_timeout_ticks,
            lease_reads=config.lease_reads,
            compact_after_entries=config.compact_after_entries,
        ),
        engine,
        {m.id: m.rpc for m in config.nodes},
        rng,
    )
    meta_sm = MetaStateMachine(engine, META_GROUP_ID)
    host.add_group(META_GROUP_ID, meta_sm, initial)
    kv_sm = KvStateMachine(engine, REGION_ID)
    host.add_group(REGION_ID, kv_sm, initial)
    # The nodes this one's stored map knows: a restarted replica reaches its peers
    # before it has heard from anyone.
    stored = meta_sm.current
    host.set_peers(stored.rpc_addresses(stored.nodes))
    meta = MetaService(
        host,
        meta_sm,
        {m.id: m.rpc for m in config.nodes},
        MetaConfig(down_after_s=config.down_after_s, out_after_s=config.out_after_s),
        clock=time.monotonic,
    )
    kv_addresses = {m.id: m.kv for m in config.nodes}
    kv_addresses.update(stored.kv_addresses())
    kv = KvService(host, kv_sm, kv_addresses, ServiceConfig(REGION_ID))
    return RaftParts(
        host,
        kv,
        meta,
        {**host.rpc_handlers(), **rpc_handlers(kv), **meta.rpc_handlers()},
        host.rpc_stream_handlers(),
    )


async def _start_raft(
    config: NodeConfig, stack: contextlib.AsyncExitStack, raft: RaftParts
) -> None:
    """Start the host and the public KV front; `stack` stops them."""
    await raft.host.start()
    stack.push_async_callback(raft.host.stop)
    await _start_kv_front(config, stack, raft.kv)


async def _raft_side(
    config: NodeConfig,
    engine: Engine,
    agent: NodeAgent,
    rpc_server: RpcServer,
    holder: list[RaftParts | None],
) -> None:
    """The Raft side of the node for its whole life. A node that joined and holds no
    replica yet opens its groups once the map is known, with the founders' first
    configuration (so that a leader may add it later and it replays the groups' logs
    from their start, as the founders did); this task then owns them. Ends (raising)
    if the host or the meta duties fail."""
    async with contextlib.AsyncExitStack() as stack:
        raft = holder[0]
        if raft is None:
            await agent.joined.wait()
            await agent.wait_for(lambda m: bool(m.founders), MAP_WAIT_S)
            raft = await _make_raft(config, engine, agent.map.founders)
            holder[0] = raft
            rpc_server.add_handlers(raft.served(member=False), raft.stream_handlers)
            await _start_raft(config, stack, raft)
        parts = [
            asyncio.create_task(raft.meta.run(), name="meta-duties"),
            asyncio.create_task(_raft_duties(raft, agent), name="raft-duties"),
            asyncio.create_task(raft.host.failed.wait(), name="raft-host"),
        ]
        try:
            done, _ = await asyncio.wait(parts, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in parts:
                task.cancel()
            await asyncio.gather(*parts, return_exceptions=True)
        if raft.host.failure is not None:
            raise RuntimeError("the Raft host failed") from raft.host.failure
        for task in done:
            task.result()  # raises what ended it
        raise RuntimeError(f"{sorted(t.get_name() for t in done)} ended")


async def _raft_duties(raft: RaftParts, agent: NodeAgent) -> None:
    """Once a second: the host and the KV service learn the addresses the map gives;
    for each group this node leads, `_manage_replicas`. Waits for a bootstrapped map
    (the agent's: the meta leader's, newer than this replica's own may be)."""
    while True:
        m = agent.map
        if m.bootstrapped:
            raft.host.set_peers(m.rpc_addresses(m.nodes))
            raft.kv.kv_addresses.update(m.kv_addresses())
            for group_id in (META_GROUP_ID, REGION_ID):
                if raft.host.is_leader(group_id):
                    await _manage_replicas(raft, agent, group_id)
        await asyncio.sleep(VOTER_DUTY_INTERVAL_S)


async def _manage_replicas(raft: RaftParts, agent: NodeAgent, group_id: int) -> None:
    """On the leader of `group_id`: make the next membership change
    `atoll.meta.replicas` asks for, hand leadership over if this node is leaving, and
    record the group's replicas in the map when it disagrees."""
    m = agent.map
    host = raft.host
    conf = host.conf(group_id)
    change = next_change(m, conf.voters, conf.learners, host.id)
    if change is not None:
        try:
            await host.change_conf(group_id, change, CONF_CHANGE_TIMEOUT_S)
            log.warning("raft: group %d: %s done", group_id, change)
        except RaftError as err:
            log.info("raft: group %d: %s not done yet: %s", group_id, change, err)
        return
    target = transfer_to(m, conf.voters, host.id)
    now = time.monotonic()
    if target is not None and now - raft.transfer_asked.get(group_id, -1e9) > TRANSFER_RETRY_S:
        raft.transfer_asked[group_id] = now
        log.warning(
            "raft: group %d: node %d is leaving; leadership to %d", group_id, host.id, target
        )
        try:
            await host.transfer_leader(group_id, target)
        except RaftError as err:
            log.info("raft: group %d: transfer to %d not asked: %s", group_id, target, err)
        return
    replicas = tuple(sorted(conf.voters | conf.learners))
    if m.replicas_of(group_id) != replicas:
        await _record_replicas(agent, SetReplicas(group_id, replicas, host.conf_index(group_id)))


async def _record_replicas(agent: NodeAgent, command: SetReplicas) -> None:
    """Propose `command` to the meta leader through the agent's meta client (as
    `atoll admin` does). A refusal or a failure is logged; the next round tries
    again."""
    try:
        result = await agent.client.admin(command)
    except (MetaRefused, MetaUnavailable) as err:
        log.info("raft: recording %s failed: %s", command, err)
        return
    if not result.ok:
        log.info("raft: recording %s refused: %s", command, result.reason)


async def _serve_storage(
    config: NodeConfig,
    agent: NodeAgent,
    rpc_server: RpcServer,
    started: asyncio.Future[StorageService],
) -> None:
    """The shard service on this node's devices, from the moment the cluster map has
    given them ids (the agent has joined) until the node stops."""
    await agent.joined.wait()
    devices = {
        device_id: StorageDeviceConfig(str(d.path), d.capacity_bytes)
        for device_id, d in zip(agent.device_ids, config.devices, strict=True)
    }
    service = StorageService(
        devices,
        check_epoch=lambda epoch, pools: stale_routing(agent.map, epoch, pools),
        on_device_failure=agent.device_failed,
    )
    await service.start()
    gc_pool = RpcPool()
    gc_kv = KvRpcClient(_kv_replicas(agent), gc_pool)
    gc_config = GcConfig(grace_s=config.gc_grace_s, interval_s=config.gc_interval_s)
    gc = asyncio.create_task(
        run_collector(service, gc_kv, clock=time.time, sleep=asyncio.sleep, config=gc_config),
        name="gc",
    )
    repairer = Repairer(
        config.node_id,
        service,
        LocalClient(service.rpc_handlers(), service.rpc_stream_handlers()),
        gc_pool,
        gc_kv,
        lambda: agent.map,
        clock=time.monotonic,
        wall_clock=time.time,
        sleep=asyncio.sleep,
        config=RepairConfig(
            bytes_per_s=config.repair_bytes_per_s,
            pgs_max=config.repair_pgs_max,
            shards_max=config.repair_shards_max,
            interval_s=config.repair_interval_s,
        ),
        on_pass=agent.report_soon,
    )
    repair = asyncio.create_task(repairer.run(), name="repair")
    agent.use_repair(repairer.report)
    scrubber = Scrubber(
        repairer,
        service,
        lambda: agent.map,
        clock=time.monotonic,
        sleep=asyncio.sleep,
        config=ScrubConfig(
            bytes_per_s=config.scrub_bytes_per_s, interval_s=config.scrub_interval_s
        ),
    )
    scrub = asyncio.create_task(scrubber.run(), name="scrub")
    try:
        rpc_server.add_handlers(
            {**service.rpc_handlers(), **scrubber.rpc_handlers()}, service.rpc_stream_handlers()
        )
        started.set_result(service)
        agent.use_usage(lambda path: _storage_usage(service, path))
        log.info("node %d: storage serves devices %s", config.node_id, sorted(devices))
        await asyncio.Event().wait()  # until cancelled at stop
    finally:
        # The collector, the repairer and the scrubber stop before the service they
        # work through.
        for task in (gc, repair, scrub):
            task.cancel()
        await asyncio.gather(gc, repair, scrub, return_exceptions=True)
        await gc_pool.close()
        await service.stop()


def _kv_replicas(agent: NodeAgent) -> Callable[[], dict[int, str]]:
    """The KV region's replicas by the agent's current map."""
    return lambda: agent.map.rpc_addresses(agent.map.replicas_of(REGION_ID))


async def _serve_s3(
    config: NodeConfig,
    agent: NodeAgent,
    storage: asyncio.Future[StorageService],
    kv_local: LocalClient | None,
) -> None:
    """The S3 gateway on `config.s3_address`, from the moment the node has joined the
    cluster (its map names the KV replicas and the pools) until the node stops. The
    object index lives in the KV region, whose replicas are the member nodes. The
    heartbeats carry the gateway's degraded-read count (`atoll status`)."""
    await agent.joined.wait()
    pool = RpcPool()
    kv = KvRpcClient(_kv_replicas(agent), pool)
    if kv_local is not None:
        kv.use_local(config.node_id, kv_local)
    store = ObjectStore(
        kv,
        pool,
        lambda: agent.map,
        clock_ms=lambda: time.time_ns() // 1_000_000,
        entropy=os.urandom,
        block_size=config.stripe_bytes,
    )
    server = S3Server(
        store,
        credentials=lambda access_key: root_secret(agent.map, access_key),
        clock_s=time.time,
        entropy=os.urandom,
    )
    agent.use_degraded_reads(lambda: store.degraded_reads)
    storage.add_done_callback(lambda done: _use_local_storage(config, store, done))
    host, port = _split(config.s3_address)
    try:
        try:
            bound = await server.start(host, port)
        except OSError as err:
            raise S3ListenError(
                f"node {config.node_id}: cannot listen for S3 on {config.s3_address}: {err}"
            ) from err
        try:
            print(f"atoll node {config.node_id}: s3 http://{host}:{bound}", flush=True)
            await asyncio.Event().wait()  # until cancelled at stop
        finally:
            await server.stop()
    finally:
        await store.close()
        await pool.close()


def _use_local_storage(
    config: NodeConfig, store: ObjectStore, started: asyncio.Future[StorageService]
) -> None:
    """Once this node's shard service runs, the gateway reaches it in process (no
    loopback connection to itself for the shards this node holds)."""
    if started.cancelled() or started.exception() is not None:
        return
    service = started.result()
    local = LocalClient(service.rpc_handlers(), service.rpc_stream_handlers())
    store.use_local_storage(config.node_id, local)


class S3ListenError(AtollError, OSError):
    """The S3 gateway cannot listen on its configured address (in use, say)."""


def root_secret(m: ClusterMap, access_key: str) -> str | None:
    """The secret of `access_key` if it is the cluster's root access key, else None
    (also before the bootstrap has stored the root credentials)."""
    if m.root is None or m.root.access_key != access_key:
        return None
    return m.root.secret_key


def _storage_usage(service: StorageService, path: str) -> tuple[int, int]:
    """(used, capacity) of a device by the storage service's accounting: shard files
    and writes in flight, against the configured (or file system's) capacity."""
    for info in service.device_infos():
        if info.path == path:
            return info.used_bytes + info.reserved_bytes, info.capacity_bytes
    return filesystem_usage(path)


def stale_routing(m: ClusterMap, epoch: int, pools: frozenset[int] = frozenset()) -> str | None:
    """Why a storage request routed with map `epoch` for shards of `pools` must be
    refused, or None: the PG table of one of those pools (of any pool, for a request
    naming none) changed after that epoch (by this node's copy of the map), so the
    caller's routing may send shards where they no longer belong. Another pool's table
    says nothing of where these shards go: the tables of the pools an out node held
    positions in are committed one after another, and a repair routed with the first
    goes on while the next is committed."""
    tables = [t for t in m.pg_tables.values() if not pools or t.pool_id in pools]
    newest = max((table.epoch for table in tables), default=0)
    if epoch < newest:
        return f"routed with map epoch {epoch}; the PG tables changed at epoch {newest}"
    return None


def _bootstrap_command(config: NodeConfig) -> Bootstrap | None:
    """The command that creates the cluster, if this node's config asks for it: fresh
    random cluster id and root keys (unless the config fixes the keys)."""
    if config.bootstrap is None:
        return None
    b = config.bootstrap
    return bootstrap_command(
        BootstrapSpec(b.hosts, b.devices_per_host, b.root_access_key, b.root_secret_key),
        tuple(sorted(m.id for m in config.nodes)),
        random.Random(int.from_bytes(os.urandom(16), "big")),
        time.time_ns() // 1_000_000,
    )


async def _start_kv_front(
    config: NodeConfig, stack: contextlib.AsyncExitStack, service: KvService
) -> None:
    """The public gRPC KV API: gateway processes, or a gRPC server in this process."""
    if config.kv_gateway_processes:
        nodes = {m.id: m.rpc for m in config.nodes}
        nodes.update(service.host.peers_addresses())
        nodes[config.node_id] = config.rpc_address
        spec = GatewaySpec(config.kv_address, config.node_id, nodes, os.getpid())
        started = await asyncio.gather(
            *(_start_gateway(spec) for _ in range(config.kv_gateway_processes)),
            return_exceptions=True,
        )
        for gateway in started:
            if not isinstance(gateway, BaseException):
                stack.push_async_callback(_stop_gateway, gateway)
        for failure in started:
            if isinstance(failure, BaseException):
                raise failure
        return
    grpc_server = grpc.aio.server()
    kv_pb2_grpc.add_KVServicer_to_server(KvServicer(service), grpc_server)  # type: ignore[no-untyped-call]
    if grpc_server.add_insecure_port(config.kv_address) == 0:
        raise OSError(f"cannot listen on {config.kv_address}")
    await grpc_server.start()
    stack.push_async_callback(grpc_server.stop, GRPC_STOP_GRACE_S)


async def _start_gateway(spec: GatewaySpec) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "atoll.kv.gateway", spec.to_json(), stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), GATEWAY_START_TIMEOUT_S)
    except TimeoutError:
        line = b""
    if line.strip() != b"ready":
        process.kill()
        await process.wait()
        raise OSError(f"kv gateway for {spec.listen} did not start (exit {process.returncode})")
    return process


async def _stop_gateway(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), GATEWAY_STOP_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()


def main(config_path: str | Path, join: str = "") -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = load(Path(config_path), join)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, stop)

    event_loop.run_service(run())
    sys.exit(0)
