"""The deterministic Raft simulator: a whole cluster of real `atoll.raft` cores in one
thread on virtual time, with a seeded network, a disk that loses unsynced writes on
crash, restarts, membership changes, leadership transfers and log compaction, all
drawn from one seed (shared/STYLE.md §9; TigerBeetle's VOPR, FoundationDB's
simulation). Pure: no I/O, no clock; `run_seed(seed)` is a function of its seed.

Each node has a host loop like the real one: it takes a `Ready`, writes it to its
simulated disk, and when the Ready needs an fsync the sync takes a random number of
steps during which the node accepts no input (inputs queue); only then are messages
sent, entries applied and the core advanced. A crash during that window loses a
random suffix of the unsynced writes.

Clients run puts, compare-and-sets and linearizable reads (ReadIndex) against a
register per key. Proposals are matched to log entries by a unique command id, so an
operation's outcome is known exactly when its node applies its index, and is unknown
(recorded as such for the checker) when its node crashes or it times out.

Phase 1 injects faults for `fault_steps`; phase 2 heals the network, restarts every
node and requires, within `heal_budget_steps`, a leader that commits a fresh entry and
every member applying up to it with identical state. Checked throughout: at most one
leader per term, log matching, leader completeness, state-machine safety (no two nodes
apply different entries at one index); at the end, that every acknowledged write is
applied and that the client history is linearizable.
"""

from __future__ import annotations

import contextlib
import heapq
import random
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from atoll.raft import (
    ConfChange,
    ConfChangeOp,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    PersistedState,
    ProposalDropped,
    Raft,
    RaftConfig,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
)
from atoll.raft.types import SEND_BEFORE_PERSIST
from atoll.sim.linearizability import Operation, check_history, describe
from atoll.sim.network import NetworkFaults, SimNetwork
from atoll.sim.sim_disk import SimDisk

STEPS_PER_TICK = 10
KEYS = (b"a", b"b", b"c")
VALUE_SEP = b"|"
ABSENT = b"~"

CoreFactory = Callable[[RaftConfig, random.Random, PersistedState, int], Raft]


def default_core(
    config: RaftConfig, rng: random.Random, state: PersistedState, applied: int
) -> Raft:
    return Raft(config, rng, state, applied)


class Violation(Exception):
    """An invariant the simulator checks does not hold."""


# -- the parameters of one run, all drawn from the seed ------------------------------------


@dataclass(frozen=True)
class SimParams:
    seed: int
    initial_voters: int
    spare_nodes: int
    clients: int
    faults: NetworkFaults
    fault_steps: int
    heal_budget_steps: int
    sync_delay_max_steps: int
    crash_probability: float  # per tick, of one random node
    crash_in_sync_probability: float  # per fsync: the node dies before it completes
    partition_probability: float  # per tick
    conf_change_probability: float  # per tick
    transfer_probability: float  # per tick
    compact_every_entries: int
    op_timeout_steps: int
    pre_vote: bool
    lease_reads: bool

    @staticmethod
    def from_seed(seed: int) -> SimParams:
        rng = random.Random(seed)
        return SimParams(
            seed=seed,
            initial_voters=rng.choice((3, 3, 5)),
            spare_nodes=rng.choice((0, 1, 2)),
            clients=rng.randint(2, 4),
            faults=NetworkFaults(
                drop_probability=rng.choice((0.0, 0.01, 0.05, 0.15)),
                duplicate_probability=rng.choice((0.0, 0.01, 0.05)),
                delay_min_steps=1,
                delay_max_steps=rng.choice((3, 8, 20)),
            ),
            fault_steps=rng.randint(2000, 5000),
            heal_budget_steps=4000,
            sync_delay_max_steps=rng.choice((1, 3, 10, 30)),
            crash_probability=rng.choice((0.0, 0.002, 0.01, 0.03)),
            crash_in_sync_probability=rng.choice((0.0, 0.0, 0.002, 0.01)),
            partition_probability=rng.choice((0.0, 0.005, 0.02)),
            conf_change_probability=rng.choice((0.0, 0.005, 0.02)),
            transfer_probability=rng.choice((0.0, 0.003, 0.01)),
            compact_every_entries=rng.choice((8, 32, 1000)),
            op_timeout_steps=rng.choice((100, 300)),
            pre_vote=rng.random() < 0.8,
            lease_reads=rng.random() < 0.3,
        )


@dataclass
class SimReport:
    seed: int
    ok: bool
    violation: str = ""
    ops_checked: int = 0
    ops_unknown: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    steps: int = 0

    def summary(self) -> str:
        status = "ok" if self.ok else f"VIOLATION: {self.violation}"
        faults = " ".join(f"{k}={v}" for k, v in sorted(self.faults.items()) if v)
        return (
            f"seed {self.seed}: {status} (ops {self.ops_checked}, unknown {self.ops_unknown},"
            f" steps {self.steps}; {faults})"
        )


# -- the replicated state machine: a register per key ---------------------------------------


def encode_command(
    op_id: int, kind: str, key: bytes, value: bytes | None, expected: bytes | None
) -> bytes:
    def enc(v: bytes | None) -> bytes:
        return ABSENT if v is None else v

    return VALUE_SEP.join((str(op_id).encode(), kind.encode(), key, enc(value), enc(expected)))


def decode_command(data: bytes) -> tuple[int, str, bytes, bytes | None, bytes | None]:
    op_id, kind, key, value, expected = data.split(VALUE_SEP)

    def dec(v: bytes) -> bytes | None:
        return None if v == ABSENT else v

    return int(op_id), kind.decode(), key, dec(value), dec(expected)


def apply_command(state: dict[bytes, bytes], data: bytes) -> tuple[int, bool]:
    """Apply one command; returns its op id and, for a cas, whether it succeeded."""
    op_id, kind, key, value, expected = decode_command(data)
    if kind == "put":
        assert value is not None
        state[key] = value
        return op_id, True
    current = state.get(key)
    if current != expected:
        return op_id, False
    if value is None:
        state.pop(key, None)
    else:
        state[key] = value
    return op_id, True


def encode_state(state: dict[bytes, bytes]) -> bytes:
    return b"\n".join(k + VALUE_SEP + v for k, v in sorted(state.items()))


def decode_state(data: bytes) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for line in data.split(b"\n") if data else []:
        key, _, value = line.partition(VALUE_SEP)
        out[key] = value
    return out


# -- nodes ----------------------------------------------------------------------------------


@dataclass
class PendingOp:
    client: int
    op_id: int
    kind: str
    key: bytes
    value: bytes | None
    expected: bytes | None
    call_time: int
    node: int
    index: int = 0  # the log index a proposal got (0 for a read)
    read_index: int = -1  # for a read: the index to wait for, once known
    done: bool = False


class SimNode:
    def __init__(self, node_id: int, config: RaftConfig) -> None:
        self.id = node_id
        self.config = config
        self.disk = SimDisk()
        self.core: Raft | None = None
        self.state: dict[bytes, bytes] = {}
        self.inbox: deque[tuple[str, Any]] = deque()
        self.syncing: Ready | None = None
        self.sync_epoch = 0
        self.pending: list[PendingOp] = []
        self.incarnation = 0
        # What the state machine has applied (the core's `log.applied` jumps when it
        # takes a snapshot, before the host has installed it).
        self.applied = 0

    @property
    def alive(self) -> bool:
        return self.core is not None


# -- the simulation -------------------------------------------------------------------------


class RaftSim:
    def __init__(self, params: SimParams, core_factory: CoreFactory = default_core) -> None:
        self.p = params
        self.rng = random.Random(params.seed ^ 0x5EED)
        self.core_factory = core_factory
        self.net = SimNetwork(random.Random(params.seed ^ 0x4E37), params.faults)
        self.now = 0
        self._events: list[tuple[int, int, str, Any]] = []
        self._seq = 0
        total = params.initial_voters + params.spare_nodes
        voters = frozenset(range(1, params.initial_voters + 1))
        self.nodes: dict[int, SimNode] = {}
        for node_id in range(1, total + 1):
            config = RaftConfig(
                id=node_id,
                pre_vote=params.pre_vote,
                lease_reads=params.lease_reads,
                inflight_batches_max=8,
                batch_bytes_max=512,
            )
            node = SimNode(node_id, config)
            # Every node, spare ones included, knows the group's first configuration.
            node.disk.synced.snapshot = Snapshot(SnapshotMeta(0, 0, ConfState(voters)))
            self.nodes[node_id] = node
        self.leaders_by_term: dict[int, int] = {}
        self.applied_entries: dict[int, tuple[int, bytes, int]] = {}  # index -> (term, data, type)
        self.history: list[Operation] = []
        self.acked_writes: dict[int, int] = {}  # op id -> log index
        self.next_op_id = 1
        self.client_busy: dict[int, PendingOp | None] = dict.fromkeys(range(params.clients))
        self.counts: dict[str, int] = {
            "crashes": 0,
            "restarts": 0,
            "partitions": 0,
            "conf_changes": 0,
            "transfers": 0,
            "compactions": 0,
            "snapshots_sent": 0,
        }
        self.faulting = True

    # -- event queue ------------------------------------------------------------------

    def schedule(self, at: int, kind: str, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._events, (at, self._seq, kind, payload))

    def run(self) -> SimReport:
        try:
            for node in self.nodes.values():
                self.start_node(node)
            for step in range(0, self.p.fault_steps, STEPS_PER_TICK):
                self.schedule(step, "tick", None)
            for client in self.client_busy:
                self.schedule(self.rng.randint(1, 50), "client", client)
            self.run_until(self.p.fault_steps)
            self.heal()
            self.converge()
            self.check_final()
        except Violation as err:
            return self.report(ok=False, violation=str(err))
        except Exception as err:
            where = traceback.extract_tb(err.__traceback__)[-1]
            text = f"{type(err).__name__}: {err} at {where.filename}:{where.lineno}"
            return self.report(ok=False, violation=text)
        return self.report(ok=True)

    def report(self, ok: bool, violation: str = "") -> SimReport:
        faults = dict(self.counts)
        faults.update(
            dropped=self.net.stats.dropped,
            duplicated=self.net.stats.duplicated,
            blocked=self.net.stats.blocked,
            lost_writes=sum(n.disk.lost_writes for n in self.nodes.values()),
        )
        unknown = sum(1 for op in self.history if op.return_time is None)
        return SimReport(self.p.seed, ok, violation, len(self.history), unknown, faults, self.now)

    def run_until(self, end: int, stop: Callable[[], bool] | None = None) -> bool:
        while self._events and self._events[0][0] <= end:
            at, _, kind, payload = heapq.heappop(self._events)
            self.now = at
            getattr(self, "on_" + kind)(payload)
            if stop is not None and stop():
                return True
        self.now = max(self.now, end)
        return False

    # -- node lifecycle ---------------------------------------------------------------

    def start_node(self, node: SimNode) -> None:
        state = node.disk.load()
        snapshot = node.disk.synced.snapshot
        node.state = decode_state(snapshot.data)
        node.applied = snapshot.meta.index
        node.incarnation += 1
        node.core = self.core_factory(
            node.config, random.Random(self.rng.getrandbits(32)), state, snapshot.meta.index
        )
        node.syncing = None
        node.inbox.clear()
        self.pump(node)

    def crash(self, node: SimNode) -> None:
        node.core = None
        node.syncing = None
        node.inbox.clear()
        node.disk.crash(self.rng)
        for op in node.pending:
            self.finish_op(op, unknown=True)
        node.pending = []
        for queued in list(self.client_busy.values()):
            if queued is not None and queued.node == node.id and not queued.done:
                self.retry(queued)  # queued at the node, never proposed
        self.counts["crashes"] += 1

    # -- host loop --------------------------------------------------------------------

    def pump(self, node: SimNode) -> None:
        """Feed queued inputs and carry out Readies until the node waits for a sync."""
        while node.core is not None and node.syncing is None:
            core = node.core
            if core.has_ready():
                rd = core.ready()
                self.persist(node, rd)
                if node.syncing is not None:
                    return
                continue
            if not node.inbox:
                return
            kind, payload = node.inbox.popleft()
            self.feed(node, core, kind, payload)

    def feed(self, node: SimNode, core: Raft, kind: str, payload: Any) -> None:
        if kind == "msg":
            core.step(payload)
        elif kind == "tick":
            core.tick()
        elif kind == "call":
            payload(node, core)

    def persist(self, node: SimNode, rd: Ready) -> None:
        for m in rd.messages:
            if m.type in SEND_BEFORE_PERSIST:
                self.send(node, m)  # as the real host does: replicate while persisting
        node.disk.write(rd)
        if rd.must_sync:
            node.syncing = rd
            node.sync_epoch += 1
            delay = self.rng.randint(1, self.p.sync_delay_max_steps)
            token = (node.id, node.incarnation, node.sync_epoch)
            self.schedule(self.now + delay, "synced", token)
            if self.faulting and self.rng.random() < self.p.crash_in_sync_probability:
                self.schedule(self.now + self.rng.randint(0, delay - 1), "crash_in_sync", token)
        else:
            self.after_persist(node, rd)

    def on_crash_in_sync(self, payload: tuple[int, int, int]) -> None:
        node = self.nodes[payload[0]]
        if node.core is not None and (node.incarnation, node.sync_epoch) == payload[1:]:
            self.crash(node)
            self.schedule(self.now + self.rng.randint(10, 400), "restart", node.id)

    def on_synced(self, payload: tuple[int, int, int]) -> None:
        node = self.nodes[payload[0]]
        if node.core is None or (node.incarnation, node.sync_epoch) != payload[1:]:
            return
        rd = node.syncing
        assert rd is not None
        node.disk.sync()
        node.syncing = None
        self.after_persist(node, rd)
        self.pump(node)

    def after_persist(self, node: SimNode, rd: Ready) -> None:
        core = node.core
        assert core is not None
        if rd.soft_state is not None and rd.soft_state.role is Role.LEADER:
            self.on_new_leader(node, core)
        for m in rd.messages:
            if m.type not in SEND_BEFORE_PERSIST:
                self.send(node, m)
        if rd.snapshot is not None:
            node.state = decode_state(rd.snapshot.data)
            node.applied = rd.snapshot.meta.index
        for entry in rd.committed_entries:
            self.apply(node, entry)
            node.applied = entry.index
        for rs in rd.read_states:
            self.read_ready(node, rs.index, rs.context)
        core.advance(rd)
        self.serve_reads(node)
        self.maybe_compact(node, core)

    def send(self, node: SimNode, m: Message) -> None:
        if m.type is MessageType.SNAP:
            snapshot = node.disk.current().snapshot
            assert m.snapshot is not None
            if snapshot.meta != m.snapshot.meta:
                raise Violation(
                    f"node {node.id} sends a snapshot it does not hold: {m.snapshot.meta}"
                )
            m = Message(m.type, to=m.to, frm=m.frm, term=m.term, snapshot=snapshot)
            self.counts["snapshots_sent"] += 1
        arrivals = self.net.arrivals(m.frm, m.to, self.now)
        for at in arrivals:
            self.schedule(at, "deliver", m)
        if m.type is MessageType.SNAP:
            # The transfer's outcome as the sending host's transport would see it.
            done = max(arrivals, default=self.now + self.p.faults.delay_max_steps)
            self.schedule(done, "snap_status", (node.id, node.incarnation, m.to, not arrivals))

    def on_snap_status(self, payload: tuple[int, int, int, bool]) -> None:
        node_id, incarnation, to, failed = payload
        node = self.nodes[node_id]
        if node.core is not None and node.incarnation == incarnation:
            node.inbox.append(("call", lambda _n, core: core.report_snapshot(to, failed=failed)))
            self.pump(node)

    def on_deliver(self, m: Message) -> None:
        node = self.nodes.get(m.to)
        if node is None or node.core is None:
            return
        node.inbox.append(("msg", m))
        self.pump(node)

    def on_tick(self, _: object) -> None:
        for node in self.nodes.values():
            if node.core is not None:
                node.inbox.append(("tick", None))
                self.pump(node)
        if self.faulting:
            self.inject_faults()
        self.expire_ops()

    # -- applying and invariants ------------------------------------------------------

    def on_new_leader(self, node: SimNode, core: Raft) -> None:
        holder = self.leaders_by_term.setdefault(core.term, node.id)
        if holder != node.id:
            raise Violation(f"two leaders in term {core.term}: {holder} and {node.id}")
        log = core.log
        for index, (term, data, _) in self.applied_entries.items():
            if index <= log.base.index:
                continue
            mine = log.entries[index - log.base.index - 1] if index <= log.last_index() else None
            if mine is None or (mine.term, mine.data) != (term, data):
                raise Violation(
                    f"leader completeness: node {node.id} leads term {core.term} without"
                    f" committed entry {index} (term {term}); its term there: {log.term(index)}"
                )

    def apply(self, node: SimNode, entry: Entry) -> None:
        known = self.applied_entries.setdefault(entry.index, (entry.term, entry.data, entry.type))
        if known != (entry.term, entry.data, entry.type):
            raise Violation(
                f"state-machine safety: node {node.id} applies {entry.term}/{entry.index}"
                f" {entry.data!r}, another node applied term {known[0]} {known[1]!r}"
            )
        if entry.type is not EntryType.NORMAL or not entry.data:
            return
        op_id, succeeded = apply_command(node.state, entry.data)
        for op in node.pending:
            if op.index == entry.index and not op.done:
                if op.op_id == op_id:
                    self.finish_op(op, output=succeeded)
                else:
                    self.finish_op(op, failed=True)  # another entry took its index
        node.pending = [op for op in node.pending if not op.done]

    def read_ready(self, node: SimNode, index: int, context: bytes) -> None:
        op_id = int(context)
        for op in node.pending:
            if op.op_id == op_id and op.read_index < 0:
                op.read_index = index

    def serve_reads(self, node: SimNode) -> None:
        core = node.core
        if core is None:
            return
        for op in node.pending:
            if op.kind == "get" and 0 <= op.read_index <= node.applied and not op.done:
                self.finish_op(op, output=node.state.get(op.key))
        node.pending = [op for op in node.pending if not op.done]

    def check_log_matching(self) -> None:
        live = [n for n in self.nodes.values() if n.core is not None]
        for i, a in enumerate(live):
            for b in live[i + 1 :]:
                assert a.core is not None and b.core is not None
                la, lb = a.core.log, b.core.log
                lo = max(la.base.index, lb.base.index) + 1
                hi = min(la.last_index(), lb.last_index())
                matched = False
                for index in range(hi, lo - 1, -1):
                    ea, eb = (
                        la.entries[index - la.base.index - 1],
                        lb.entries[index - lb.base.index - 1],
                    )
                    if matched or ea.term == eb.term:
                        matched = True
                        if ea != eb:
                            raise Violation(
                                f"log matching: nodes {a.id} and {b.id} differ at index {index}"
                                f" ({ea} vs {eb}) below a common entry"
                            )

    # -- clients ----------------------------------------------------------------------

    def on_client(self, client: int) -> None:
        if self.client_busy[client] is not None:
            return
        horizon = self.p.fault_steps if self.faulting else self.now + self.p.heal_budget_steps
        if self.now >= horizon:
            return
        op_id = self.next_op_id
        self.next_op_id += 1
        key = self.rng.choice(KEYS)
        roll = self.rng.random()
        value = f"v{op_id}".encode()
        if roll < 0.35:
            op = PendingOp(client, op_id, "put", key, value, None, self.now, 0)
        elif roll < 0.6:
            expected = self.rng.choice(
                (None, *(f"v{self.rng.randint(max(1, op_id - 10), op_id)}".encode(),))
            )
            op = PendingOp(
                client, op_id, "cas", key, self.rng.choice((value, None)), expected, self.now, 0
            )
        else:
            op = PendingOp(client, op_id, "get", key, None, None, self.now, 0)
        self.client_busy[client] = op
        self.submit(op, self.pick_node())

    def pick_node(self) -> int:
        leaders = [
            n.id for n in self.nodes.values() if n.core is not None and n.core.role is Role.LEADER
        ]
        if leaders and self.rng.random() < 0.8:
            return self.rng.choice(leaders)
        return self.rng.choice(sorted(self.nodes))

    def submit(self, op: PendingOp, node_id: int) -> None:
        node = self.nodes[node_id]
        op.node = node_id
        if node.core is None:
            self.retry(op)
            return

        def call(n: SimNode, core: Raft) -> None:
            try:
                if op.kind == "get":
                    core.read_index(str(op.op_id).encode())
                else:
                    op.index = core.propose(
                        encode_command(op.op_id, op.kind, op.key, op.value, op.expected)
                    )
            except ProposalDropped:
                self.retry(op)
                return
            n.pending.append(op)

        node.inbox.append(("call", call))
        self.pump(node)

    def retry(self, op: PendingOp) -> None:
        """Nothing was proposed: try again shortly (the op has not started to exist)."""
        self.client_busy[op.client] = None
        self.schedule(self.now + self.rng.randint(5, 30), "client", op.client)

    def finish_op(
        self, op: PendingOp, output: object = None, unknown: bool = False, failed: bool = False
    ) -> None:
        if op.done:
            return
        op.done = True
        if not failed:
            self.record(op, output, unknown)
        self.client_busy[op.client] = None
        self.schedule(self.now + self.rng.randint(1, 20), "client", op.client)

    def record(self, op: PendingOp, output: object, unknown: bool) -> None:
        if op.kind == "get" and unknown:
            return  # a read that never returned tells nothing
        ret = None if unknown else self.now
        if op.kind == "put":
            self.history.append(
                Operation(op.client, "put", op.key, op.call_time, ret, value=op.value)
            )
        elif op.kind == "cas":
            out = None if unknown else bool(output)
            self.history.append(
                Operation(
                    op.client,
                    "cas",
                    op.key,
                    op.call_time,
                    ret,
                    output=out,
                    value=op.value,
                    expected=op.expected,
                )
            )
        else:
            assert output is None or isinstance(output, bytes)
            self.history.append(
                Operation(op.client, "get", op.key, op.call_time, ret, output=output)
            )
        if not unknown and op.kind != "get":
            self.acked_writes[op.op_id] = op.index

    def expire_ops(self) -> None:
        for node in self.nodes.values():
            for op in node.pending:
                if not op.done and self.now - op.call_time > self.p.op_timeout_steps:
                    self.finish_op(op, unknown=True)
            node.pending = [op for op in node.pending if not op.done]

    # -- faults -----------------------------------------------------------------------

    def inject_faults(self) -> None:
        rng = self.rng
        ids = sorted(self.nodes)
        if rng.random() < self.p.crash_probability:
            syncing = [i for i in ids if self.nodes[i].syncing is not None]
            # Half the crashes hit a node inside an fsync: where lost writes matter.
            pool = syncing if syncing and rng.random() < 0.5 else ids
            victim = self.nodes[rng.choice(pool)]
            if victim.core is not None:
                self.crash(victim)
                self.schedule(self.now + rng.randint(10, 400), "restart", victim.id)
        if rng.random() < self.p.partition_probability:
            self.net.heal()
            if rng.random() < 0.7:
                side = set(rng.sample(ids, rng.randint(1, len(ids) // 2)))
                self.net.partition(side, set(ids) - side, symmetric=rng.random() < 0.7)
                self.counts["partitions"] += 1
        leader = self.current_leader()
        if leader is not None and rng.random() < self.p.conf_change_probability:
            self.propose_conf_change(leader)
        if leader is not None and rng.random() < self.p.transfer_probability:
            assert leader.core is not None
            target = rng.choice(sorted(leader.core.conf.voters))

            def transfer(_n: SimNode, core: Raft) -> None:
                with contextlib.suppress(ProposalDropped):  # it lost leadership meanwhile
                    core.transfer_leader(target)

            leader.inbox.append(("call", transfer))
            self.counts["transfers"] += 1
            self.pump(leader)
        if self.now % 500 == 0:
            self.check_log_matching()

    def propose_conf_change(self, leader: SimNode) -> None:
        assert leader.core is not None
        conf = leader.core.conf
        ids = sorted(self.nodes)
        outsiders = [i for i in ids if i not in conf.voters and i not in conf.learners]
        choices: list[ConfChange] = [ConfChange(ConfChangeOp.ADD_LEARNER, i) for i in outsiders]
        choices += [ConfChange(ConfChangeOp.ADD_VOTER, i) for i in sorted(conf.learners)]
        if len(conf.voters) > 3:
            choices += [ConfChange(ConfChangeOp.REMOVE_NODE, i) for i in sorted(conf.voters)]
        choices += [ConfChange(ConfChangeOp.REMOVE_NODE, i) for i in sorted(conf.learners)]
        if not choices:
            return
        change = self.rng.choice(choices)

        def call(_n: SimNode, core: Raft) -> None:
            try:
                core.propose_conf_change(change)
                self.counts["conf_changes"] += 1
            except ProposalDropped:
                pass

        leader.inbox.append(("call", call))
        self.pump(leader)

    def on_restart(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.core is None:
            self.counts["restarts"] += 1
            self.start_node(node)

    def current_leader(self) -> SimNode | None:
        best: SimNode | None = None
        for node in self.nodes.values():
            core = node.core
            if core is None or core.role is not Role.LEADER:
                continue
            if best is None or (best.core is not None and core.term > best.core.term):
                best = node
        return best

    def maybe_compact(self, node: SimNode, core: Raft) -> None:
        applied = core.log.applied
        if applied - core.log.base.index < self.p.compact_every_entries:
            return
        index = applied - self.rng.randint(0, 4)
        if index <= core.log.base.index:
            return
        meta = core.snapshot_meta(index)
        # The state machine as of `index` (not `applied`): rebuild it from the last
        # snapshot and the log, as a real host's engine snapshot would freeze it.
        state = decode_state(node.disk.current().snapshot.data)
        for entry in core.log.slice(core.log.base.index + 1, index + 1, 1 << 62) or []:
            if entry.type is EntryType.NORMAL and entry.data:
                apply_command(state, entry.data)
        node.disk.save_snapshot(Snapshot(meta, encode_state(state)))
        core.compact(meta)
        self.counts["compactions"] += 1

    # -- phase 2 ----------------------------------------------------------------------

    def heal(self) -> None:
        self.faulting = False
        self.net.heal()
        self.net.faults = NetworkFaults(0.0, 0.0, 1, self.p.faults.delay_max_steps)
        for node in self.nodes.values():
            if node.core is None:
                self.counts["restarts"] += 1
                self.start_node(node)
        end = self.now + self.p.heal_budget_steps
        for step in range(self.now + 1, end, STEPS_PER_TICK):
            self.schedule(step, "tick", None)

    def converge(self) -> None:
        end = self.now + self.p.heal_budget_steps
        marker = (0, 0, 0)  # (leader, term, index) of the entry every member must apply

        def settled() -> bool:
            nonlocal marker
            leader = self.current_leader()
            if leader is None or leader.core is None or leader.syncing is not None:
                return False
            core = leader.core
            if marker[:2] != (leader.id, core.term):
                try:
                    marker = (leader.id, core.term, core.propose(b""))
                except ProposalDropped:
                    return False
                self.pump(leader)
            marker_index = marker[2]
            members = core.conf.voters | core.conf.learners
            return all(
                (n := self.nodes[m]).core is not None
                and n.syncing is None
                and n.applied >= marker_index
                for m in members
            )

        if not self.run_until(end, settled):
            leader = self.current_leader()
            raise Violation(
                f"no convergence within {self.p.heal_budget_steps} steps after healing"
                f" (leader: {leader.id if leader else None}; "
                + ", ".join(
                    f"{n.id}:{n.core.role.value}/t{n.core.term}/c{n.core.log.committed}/a{n.core.log.applied}"
                    for n in self.nodes.values()
                    if n.core is not None
                )
                + ")"
            )

    def check_final(self) -> None:
        for node in self.nodes.values():
            for op in node.pending:
                self.finish_op(op, unknown=True)  # still in flight: outcome unknown
        self.check_log_matching()
        leader = self.current_leader()
        assert leader is not None and leader.core is not None
        members = leader.core.conf.voters | leader.core.conf.learners
        states = {m: encode_state(self.nodes[m].state) for m in sorted(members)}
        applied = {m: self.nodes[m].applied for m in sorted(members)}
        top = max(applied.values())
        reference = [states[m] for m in states if applied[m] == top]
        for m, state in states.items():
            if applied[m] == top and state != reference[0]:
                raise Violation(f"replicas diverge: node {m} state differs at applied index {top}")
        for op_id, index in sorted(self.acked_writes.items()):
            entry = self.applied_entries.get(index)
            if entry is None or decode_command(entry[1])[0] != op_id:
                raise Violation(f"acknowledged write {op_id} at index {index} is not applied there")
        result = check_history(self.history)
        if result.ok is False:
            lines = [describe(op) for op in self.history if op.key == result.key][:40]
            raise Violation(f"history not linearizable on key {result.key!r}: " + "; ".join(lines))


def run_seed(seed: int, core_factory: CoreFactory = default_core) -> SimReport:
    return RaftSim(SimParams.from_seed(seed), core_factory).run()
