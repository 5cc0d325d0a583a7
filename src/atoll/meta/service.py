"""The meta service on each member of the meta group (Raft group 0). Does network
I/O (through `atoll.rpc` handlers) and runs the leader's duties.

Handlers (docs/formats/meta.md §4), all on atoll.rpc:

- `meta.bootstrap` (leader only): create the cluster with the given `Bootstrap`
  command, unless it exists (then the existing cluster's id is the answer).
- `meta.join` (leader only): register a node and its devices; idempotent.
- `meta.heartbeat` (leader only): a node is alive; its device usage and load. A
  heartbeat from a node marked down marks it up again.
- `meta.admin` (leader only): an operator's command (create a pool, set a node's or
  a device's state, create or delete a bucket), proposed as it is; the reply is its
  outcome (`Applied`, as canonical JSON).
- `meta.map`: the map this member holds (optionally after a ReadIndex round).
- `meta.watch`: a server stream of the map, sent whenever its epoch grows (and an
  empty keepalive chunk after `watch_keepalive_s` of silence).

A handler that needs the leader answers elsewhere with the application error
`not_leader`, whose detail (`NotLeaderDetail`) names the leader if known.

The leader's duties (`run`, a task on every member that acts while this node leads):
mark down every node silent for `down_after_s` (a node's clock of silence starts when
this node became leader, so a new leader gives everyone a full period); mark out every
node down for `out_after_s` (counted from when this leader saw it down), which takes
its devices out of placement; and compute and commit the PG table of every pool whose
table is stale (`ClusterMap.stale_pools`). Time comes from the injected `clock`
(monotonic seconds).

PG health (`atoll.meta.health`) is judged from the repair reports the nodes send in
their heartbeats (docs/repair.md).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from atoll.meta.cluster_map import (
    NODE_DOWN,
    NODE_DRAINING,
    NODE_OUT,
    NODE_UP,
    Applied,
    ClusterMap,
    Credentials,
    PoolRecord,
    canonical_json,
    placement_devices,
    placement_digest,
)
from atoll.meta.commands import (
    Bootstrap,
    Command,
    CreateBucket,
    CreatePool,
    DeleteBucket,
    RegisterDevice,
    RegisterNode,
    RemoveNode,
    SetDeviceState,
    SetNodeState,
    SetPgTable,
    SetReplicas,
    decode_command,
    encode_command,
    encode_map,
)
from atoll.meta.errors import MapFormatError, NotBootstrapped
from atoll.meta.health import RepairState, pg_health
from atoll.meta.state_machine import MetaStateMachine
from atoll.multiraft.host import RaftHost
from atoll.placement import Device, default_pools, place_pool
from atoll.proto import meta_pb2
from atoll.raft import ConfState, ProposalDropped, RaftError
from atoll.rpc import Chunk, Handler, HandlerError

log = logging.getLogger(__name__)

META_GROUP_ID = 0
ERROR_NOT_LEADER = "not_leader"
ERROR_META = "meta_error"

METHOD_BOOTSTRAP = "meta.bootstrap"
METHOD_JOIN = "meta.join"
METHOD_HEARTBEAT = "meta.heartbeat"
METHOD_ADMIN = "meta.admin"
METHOD_STATUS = "meta.status"
METHOD_MAP = "meta.map"
METHOD_WATCH = "meta.watch"

# What an operator may propose through `meta.admin`.
ADMIN_COMMANDS = (
    CreatePool,
    SetNodeState,
    RemoveNode,
    SetDeviceState,
    CreateBucket,
    DeleteBucket,
    SetReplicas,  # from a Raft group's leader that does not lead the meta group
)

ACCESS_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
SECRET_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@dataclass(frozen=True)
class BootstrapSpec:
    """What the first node creates the cluster from: the hosts and devices it should
    expect (default pools are sized from them), and optionally fixed root keys."""

    hosts: int
    devices_per_host: int
    root_access_key: str = ""
    root_secret_key: str = ""


@dataclass(frozen=True)
class MetaConfig:
    down_after_s: float = 30.0
    out_after_s: float = 600.0
    duty_interval_s: float = 0.25
    propose_timeout_s: float = 5.0
    watchers_max: int = 256
    watch_keepalive_s: float = 10.0


@dataclass
class NodeHealth:
    last_seen: float
    epoch: int = 0
    load1: float = 0.0
    devices: dict[int, tuple[int, int]] = field(default_factory=dict)  # id -> used, capacity
    degraded_reads: int = 0  # stripes its gateway decoded from parity since it started
    repair: RepairState | None = None  # its repairer's latest report (None: no devices)
    down_since: float | None = None  # when this leader first saw it down


def redirect_handlers(
    members: Callable[[], list[str]],
    service: Callable[[], MetaService | None] = lambda: None,
) -> dict[str, Handler]:
    """The meta methods on a node that joined (not a founding member): served by its
    `service` once it runs one (the node came to hold a replica of the meta group);
    until then each answers `not_leader` naming a member it knows, so that a node may
    join, or an operator's command go, through any node."""

    def handler_for(method: str) -> Handler:
        async def handler(
            message: bytes, payload: bytes | memoryview
        ) -> Chunk | AsyncIterator[Chunk]:
            running = service()
            if running is not None:
                result = running.rpc_handlers()[method](message, payload)
                return await result if inspect.isawaitable(result) else result
            known = members()
            detail = meta_pb2.NotLeaderDetail(leader_id=0, leader_rpc=known[0] if known else "")
            raise HandlerError(ERROR_NOT_LEADER, detail.SerializeToString())

        return handler

    methods = (
        METHOD_BOOTSTRAP,
        METHOD_JOIN,
        METHOD_HEARTBEAT,
        METHOD_ADMIN,
        METHOD_MAP,
        METHOD_WATCH,
        METHOD_STATUS,
    )
    return {method: handler_for(method) for method in methods}


def status_document(
    m: ClusterMap,
    health: Mapping[int, NodeHealth],
    now: float,
    confs: Mapping[int, ConfState] | None = None,
    trusted_from: Mapping[int, int] | None = None,
) -> dict[str, Any]:
    """What `atoll status --json` prints: the map's nodes, devices and pools with the
    leader's latest heartbeat figures, the PG health, and the voters of the Raft
    groups the leader's node holds (`confs`: group id -> its configuration there)."""
    usage: dict[int, tuple[int, int]] = {}
    for node_health in health.values():
        usage.update(node_health.devices)
    reports = {n: h.repair for n, h in health.items() if h.repair is not None}
    pgs = pg_health(m, reports, trusted_from)
    eta = pgs.repair_eta_s
    return {
        "cluster_id": m.cluster_id,
        "epoch": m.epoch,
        "nodes": [
            {
                "id": n.id,
                "state": n.state,
                "rpc": n.rpc,
                "zone": n.zone,
                "rack": n.rack,
                "member": n.member,
                "heartbeat_age_s": round(now - health[n.id].last_seen, 3)
                if n.id in health
                else None,
                "load1": health[n.id].load1 if n.id in health else None,
                "degraded_reads": health[n.id].degraded_reads if n.id in health else None,
                "repair": _repair_json(reports.get(n.id)),
            }
            for n in sorted(m.nodes.values(), key=lambda n: n.id)
        ],
        "devices": [
            {
                "id": d.id,
                "node": d.node_id,
                "path": d.path,
                "state": d.state,
                "used_bytes": usage.get(d.id, (0, 0))[0],
                "capacity_bytes": d.capacity_bytes,
            }
            for d in sorted(m.devices.values(), key=lambda d: d.id)
        ],
        "pools": [
            {
                "name": p.name,
                "k": p.k,
                "m": p.m,
                "pg_count": p.pg_count,
                "failure_domain": p.failure_domain,
                "storage_class": p.storage_class,
                "table_epoch": m.pg_tables[p.id].epoch if p.id in m.pg_tables else None,
            }
            for p in sorted(m.pools.values(), key=lambda p: p.id)
        ],
        "pgs": pgs.pgs,
        "degraded_pgs": pgs.degraded_pgs,
        "bytes_to_repair": pgs.bytes_to_repair,
        "repair_bytes_per_s": round(pgs.repair_bytes_per_s, 1),
        "repair_eta_s": None if eta is None else round(eta, 1),
        # Stripes the gateways decoded from parity, summed over the nodes' latest
        # heartbeats (each counts since its process started).
        "degraded_reads": sum(h.degraded_reads for h in health.values()),
        "raft_groups": [
            {
                "id": group_id,
                "voters": sorted(conf.voters),
                "learners": sorted(conf.learners),
                "recorded": list(m.replicas_of(group_id)),  # as the map has them
            }
            for group_id, conf in sorted((confs or {}).items())
        ],
    }


def _repair_json(r: RepairState | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        "checked_epoch": r.checked_epoch,
        "incomplete_pgs": len(r.incomplete),
        "bytes_to_repair": r.bytes_to_repair,
        "repaired_bytes": r.repaired_bytes,
        "repaired_shards": r.repaired_shards,
        "repair_bytes_per_s": round(r.repair_bytes_per_s, 1),
        "stale_removed": r.stale_removed,
        "last_pass_ms": r.last_pass_ms,
    }


def repair_state(report: meta_pb2.RepairReport) -> RepairState:
    return RepairState(
        checked_epoch=report.checked_epoch,
        incomplete=frozenset((p.pool_id, p.pg) for p in report.incomplete),
        bytes_to_repair=report.bytes_to_repair,
        repaired_bytes=report.repaired_bytes,
        repaired_shards=report.repaired_shards,
        repair_bytes_per_s=report.repair_bytes_per_s,
        stale_removed=report.stale_removed,
        last_pass_ms=report.last_pass_ms,
    )


def encode_applied(result: Applied) -> bytes:
    return canonical_json(
        {
            "ok": result.ok,
            "epoch": result.epoch,
            "reason": result.reason,
            "allocated": result.allocated,
        }
    )


def decode_applied(data: bytes) -> Applied:
    try:
        d = json.loads(data)
        return Applied(bool(d["ok"]), int(d["epoch"]), str(d["reason"]), int(d["allocated"]))
    except (ValueError, KeyError, TypeError) as err:
        raise MapFormatError(f"not an encoded outcome: {err!r}") from err


def random_credentials(rng: random.Random) -> Credentials:
    access = "AK" + "".join(rng.choice(ACCESS_KEY_ALPHABET) for _ in range(18))
    secret = "".join(rng.choice(SECRET_KEY_ALPHABET) for _ in range(40))
    return Credentials(access, secret)


def bootstrap_command(
    spec: BootstrapSpec, members: tuple[int, ...], rng: random.Random, now_ms: int
) -> Bootstrap:
    """The Bootstrap command for `spec`: default pools sized from the expected hosts
    and devices, a random cluster id and root keys unless the spec fixes them."""
    expected = [
        Device(
            id=h * spec.devices_per_host + d + 1,
            node_id=h + 1,
            zone="",
            rack="",
            weight=1.0,
            in_service=True,
        )
        for h in range(spec.hosts)
        for d in range(spec.devices_per_host)
    ]
    pools = tuple(
        PoolRecord(
            id=0,
            name=p.name,
            k=p.k,
            m=p.m,
            pg_count=p.pg_count,
            failure_domain=p.failure_domain,
            storage_class=p.storage_class,
        )
        for p in default_pools(expected)
    )
    root = random_credentials(rng)
    if spec.root_access_key:
        root = Credentials(spec.root_access_key, spec.root_secret_key)
    cluster_id = f"{rng.getrandbits(128):032x}"
    return Bootstrap(cluster_id, now_ms, root, pools, members)


class MetaService:
    def __init__(
        self,
        host: RaftHost,
        sm: MetaStateMachine,
        members: Mapping[int, str],
        config: MetaConfig,
        *,
        clock: Callable[[], float],
    ) -> None:
        self.host = host
        self.sm = sm
        self.members = dict(members)
        self.config = config
        self._clock = clock
        self.health: dict[int, NodeHealth] = {}
        # Per node, the map epoch a repair report must have checked to count for PG
        # health (atoll.meta.health): when it last came up, or this node took over.
        self.trusted_from: dict[int, int] = {}
        self._leading = False
        self._watchers = 0

    @property
    def map(self) -> ClusterMap:
        return self.sm.current

    def rpc_handlers(self) -> dict[str, Handler]:
        return {
            METHOD_BOOTSTRAP: self._bootstrap,
            METHOD_JOIN: self._join,
            METHOD_HEARTBEAT: self._heartbeat,
            METHOD_ADMIN: self._admin,
            METHOD_MAP: self._map,
            METHOD_WATCH: self._watch,
            METHOD_STATUS: self._status,
        }

    # -- handlers -----------------------------------------------------------------------

    def addresses(self) -> dict[int, str]:
        """atoll.rpc addresses of the nodes: the configured members, then every node
        the map knows (a replica added later, a member that moved)."""
        return {**self.members, **self.map.rpc_addresses(self.map.nodes)}

    def replicas(self) -> dict[int, str]:
        """The meta group's replicas and their addresses, by the map (the configured
        members until the map names any)."""
        found = self.map.rpc_addresses(self.map.meta_replicas)
        return found or dict(self.members)

    def _require_leader(self) -> None:
        if not self.host.is_leader(META_GROUP_ID):
            raise self._not_leader()

    def _not_leader(self) -> HandlerError:
        leader = self.host.leader_of(META_GROUP_ID)
        address = self.addresses().get(leader, "")
        if not address:
            # No leader known here (an election, or a node that holds no replica
            # yet): name another replica, which may know.
            others = [a for i, a in sorted(self.replicas().items()) if i != self.host.id]
            leader, address = 0, others[0] if others else ""
        detail = meta_pb2.NotLeaderDetail(leader_id=leader, leader_rpc=address)
        return HandlerError(ERROR_NOT_LEADER, detail.SerializeToString())

    def _cut_off(self) -> bool:
        """Whether this replica knows no leader: an election runs, it is on the
        minority side of a partition, or it was removed from the group while it was
        away (it hears from no one, so its map no longer moves)."""
        return not self.host.is_leader(META_GROUP_ID) and not self.host.leader_of(META_GROUP_ID)

    async def propose(self, command: Command) -> Applied:
        try:
            result = await self.host.propose(
                META_GROUP_ID, encode_command(command), self.config.propose_timeout_s
            )
        except (ProposalDropped, RaftError) as err:
            raise HandlerError(ERROR_META, str(err).encode()) from err
        if not isinstance(result, Applied):
            raise HandlerError(ERROR_META, b"the command was not applied")
        return result

    async def _bootstrap(self, message: bytes, payload: bytes | memoryview) -> Chunk:
        self._require_leader()
        try:
            command = decode_command(message)
        except MapFormatError as err:
            raise HandlerError(ERROR_META, str(err).encode()) from err
        if not isinstance(command, Bootstrap):
            raise HandlerError(ERROR_META, b"meta.bootstrap takes a Bootstrap command")
        if not self.map.bootstrapped:
            result = await self.propose(command)
            if not result.ok and not self.map.bootstrapped:
                raise HandlerError(ERROR_META, result.reason.encode())
        return self.map.cluster_id.encode(), None

    async def _join(self, message: bytes, payload: bytes | memoryview) -> Chunk:
        self._require_leader()
        request = meta_pb2.JoinRequest.FromString(message)
        if not self.map.bootstrapped:
            raise HandlerError(ERROR_META, str(NotBootstrapped("not bootstrapped")).encode())
        node = RegisterNode(
            node_id=request.node_id,
            rpc=request.rpc,
            kv=request.kv,
            zone=request.zone,
            rack=request.rack,
            member=request.member,
        )
        existing = self.map.nodes.get(request.node_id)
        if existing is None or (
            existing.rpc,
            existing.kv,
            existing.zone,
            existing.rack,
            existing.member,
        ) != (node.rpc, node.kv, node.zone, node.rack, node.member):
            result = await self.propose(node)
            if not result.ok:
                raise HandlerError(ERROR_META, result.reason.encode())
        device_ids = []
        for spec in request.devices:
            result = await self.propose(
                RegisterDevice(request.node_id, spec.path, spec.capacity_bytes)
            )
            if not result.ok:
                raise HandlerError(ERROR_META, result.reason.encode())
            device_ids.append(result.allocated)
        self.health[request.node_id] = NodeHealth(self._clock(), self.map.epoch)
        reply = meta_pb2.JoinReply(
            cluster_id=self.map.cluster_id,
            epoch=self.map.epoch,
            device_ids=device_ids,
            members=[meta_pb2.Member(id=i, rpc=a) for i, a in sorted(self.replicas().items())],
        )
        return reply.SerializeToString(), None

    async def _heartbeat(self, message: bytes, payload: bytes | memoryview) -> Chunk:
        self._require_leader()
        request = meta_pb2.HeartbeatRequest.FromString(message)
        self.health[request.node_id] = NodeHealth(
            self._clock(),
            request.epoch,
            request.load1,
            {d.device_id: (d.used_bytes, d.capacity_bytes) for d in request.devices},
            request.degraded_reads,
            repair_state(request.repair) if request.HasField("repair") else None,
        )
        node = self.map.nodes.get(request.node_id)
        if node is not None and node.state == NODE_DOWN:
            log.info("meta: node %d is back: marking it up", node.id)
            result = await self.propose(SetNodeState(node.id, NODE_UP, expect=NODE_DOWN))
            if result.ok:
                self.trusted_from[node.id] = result.epoch
        elif node is not None and node.state == NODE_OUT:
            log.debug("meta: node %d is out; `atoll admin in %d` brings it back", node.id, node.id)
        return meta_pb2.HeartbeatReply(epoch=self.map.epoch).SerializeToString(), None

    async def _admin(self, message: bytes, payload: bytes | memoryview) -> Chunk:
        self._require_leader()
        try:
            command = decode_command(message)
        except MapFormatError as err:
            raise HandlerError(ERROR_META, str(err).encode()) from err
        if not isinstance(command, ADMIN_COMMANDS):
            raise HandlerError(
                ERROR_META, f"{type(command).__name__} is not an admin command".encode()
            )
        node = self.map.nodes.get(getattr(command, "node_id", 0))
        if isinstance(command, RemoveNode) and node and node.state in (NODE_DRAINING, NODE_OUT):
            held = self._bytes_held(command.node_id)
            if held:
                refusal = Applied(
                    False, self.map.epoch, f"node {command.node_id} still holds {held} bytes"
                )
                return encode_applied(refusal), None
        result = await self.propose(command)
        if result.ok and isinstance(command, SetNodeState) and command.state == NODE_UP:
            self.trusted_from[command.node_id] = result.epoch
        return encode_applied(result), None

    def _bytes_held(self, node_id: int) -> int | None:
        """Shard bytes the node's devices hold by its latest heartbeat (None: not
        heard from since this node leads)."""
        health = self.health.get(node_id)
        if health is None or not health.devices:
            return None if health is None else 0
        return sum(used for used, _ in health.devices.values())

    async def _status(self, message: bytes, payload: bytes | memoryview) -> Chunk:
        self._require_leader()
        confs = {group_id: self.host.conf(group_id) for group_id in sorted(self.host.groups)}
        doc = status_document(self.map, self.health, self._clock(), confs, self.trusted_from)
        return canonical_json(doc), None

    async def _map(self, message: bytes, payload: bytes | memoryview) -> Chunk:
        request = meta_pb2.MapRequest.FromString(message)
        if request.linearizable:
            try:
                await self.host.read_index(META_GROUP_ID, self.config.propose_timeout_s)
            except (ProposalDropped, RaftError) as err:
                raise HandlerError(ERROR_META, str(err).encode()) from err
        return b"", encode_map(self.map)

    def _watch(self, message: bytes, payload: bytes | memoryview) -> AsyncIterator[Chunk]:
        request = meta_pb2.WatchRequest.FromString(message)
        if self._watchers >= self.config.watchers_max:
            raise HandlerError(ERROR_META, b"too many map watchers")
        if self._cut_off():
            raise self._not_leader()
        return self._watch_stream(request.epoch)

    async def _watch_stream(self, known_epoch: int) -> AsyncIterator[Chunk]:
        """The map whenever its epoch passes what was sent; an empty chunk after
        `watch_keepalive_s` without one, so the watcher can tell silence from a
        stalled member; ends with `not_leader` when this replica knows no leader."""
        self._watchers += 1
        try:
            sent = known_epoch
            while True:
                # The written index first, then the map: a change written after the
                # index was read is newer than it, so the wait below returns at once.
                index = self.sm.written_index()
                current = self.map
                if current.epoch > sent:
                    sent = current.epoch
                    yield b"", encode_map(current)
                try:
                    await asyncio.wait_for(
                        self.host.wait_applied(META_GROUP_ID, index),
                        self.config.watch_keepalive_s,
                    )
                except TimeoutError:
                    if self._cut_off():
                        # The watcher goes elsewhere rather than keep a map that no
                        # longer moves.
                        raise self._not_leader() from None
                    yield b"", None
        finally:
            self._watchers -= 1

    # -- the leader's duties ------------------------------------------------------------

    async def run(self) -> None:
        """Run the leader's duties whenever this node leads the meta group."""
        while True:
            try:
                await self._duties()
            except (HandlerError, ProposalDropped, RaftError) as err:
                log.info("meta: leader duty failed (will retry): %s", err)
            await asyncio.sleep(self.config.duty_interval_s)

    async def _duties(self) -> None:
        leading = self.host.is_leader(META_GROUP_ID)
        if leading and not self._leading:
            # A new leader knows nothing of earlier heartbeats: everyone gets a full
            # down_after_s from now.
            now = self._clock()
            self.health = {node_id: NodeHealth(now) for node_id in self.map.nodes}
            self.trusted_from = dict.fromkeys(self.map.nodes, self.map.epoch)
            log.info("meta: node leads the meta group at epoch %d", self.map.epoch)
        self._leading = leading
        if not leading:
            return
        m = self.map
        if not m.bootstrapped:
            return
        await self._mark_silent_nodes(m)
        await self._place_stale_pools()

    async def _mark_silent_nodes(self, m: ClusterMap) -> None:
        """Up and silent past `down_after_s`: down. Down for `out_after_s` (by this
        leader's clock, from when it first saw the node down): out."""
        now = self._clock()
        for node in m.nodes.values():
            health = self.health.setdefault(node.id, NodeHealth(now))
            silent = now - health.last_seen
            if node.state != NODE_DOWN:
                health.down_since = None
            if node.state == NODE_UP and silent > self.config.down_after_s:
                log.warning("meta: node %d silent for %.1fs: marking it down", node.id, silent)
                result = await self.propose(SetNodeState(node.id, NODE_DOWN, expect=NODE_UP))
                if result.ok:
                    health.down_since = now
            elif node.state == NODE_DOWN:
                if health.down_since is None:
                    health.down_since = now
                down_for = now - health.down_since
                if down_for > self.config.out_after_s:
                    log.warning("meta: node %d down for %.1fs: marking it out", node.id, down_for)
                    await self.propose(SetNodeState(node.id, NODE_OUT, expect=NODE_DOWN))

    async def _place_stale_pools(self) -> None:
        for pool in self.map.stale_pools():
            m = self.map
            digest = placement_digest(m, pool)
            devices = placement_devices(m)
            current = m.pg_tables.get(pool.id)
            previous = current.members if current is not None else None
            table = await asyncio.to_thread(place_pool, pool.as_placement(), devices, previous)
            members = tuple(tuple(pg) for pg in table)
            result = await self.propose(SetPgTable(pool.id, digest, members))
            log.info(
                "meta: PG table of pool %s (%d PGs on %d devices): %s",
                pool.name,
                pool.pg_count,
                len(devices),
                f"epoch {result.epoch}" if result.ok else result.reason,
            )
