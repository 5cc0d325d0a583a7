"""An interaction environment for golden tests of the Raft core: a handful of cores
with in-memory storage, driven one command at a time, printing what each Ready holds
and which messages move (after etcd/raft's `rafttest.InteractionEnv`).

Storage here is a plain list: what the core asked to persist is kept, nothing is
lost, so the golden files show the core's decisions only. Crash behaviour is the
simulator's business (tests/sim).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from datadriven import Command

from atoll.raft import (
    ConfChange,
    ConfChangeOp,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Raft,
    RaftConfig,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
)
from atoll.raft.errors import ProposalDropped
from atoll.sim.sim_disk import DiskState

CONF_CHANGE_OPS = {
    "add": ConfChangeOp.ADD_VOTER,
    "learner": ConfChangeOp.ADD_LEARNER,
    "remove": ConfChangeOp.REMOVE_NODE,
}


def fmt_entry(e: Entry) -> str:
    if e.type is EntryType.CONF_CHANGE:
        cc = ConfChange.decode(e.data)
        return f"{e.term}/{e.index} conf:{cc.op.name.lower()}({cc.node_id})"
    return f"{e.term}/{e.index} {e.data.decode() if e.data else '-'}"


def fmt_message(m: Message) -> str:
    parts = [f"{m.frm}->{m.to} {m.type.name}", f"t{m.term}"]
    if m.type in (MessageType.APP, MessageType.VOTE, MessageType.PRE_VOTE):
        parts.append(f"lt{m.log_term} i{m.index}")
    elif m.index:
        parts.append(f"i{m.index}")
    if m.commit:
        parts.append(f"c{m.commit}")
    if m.reject:
        parts.append(f"rejected(hint {m.reject_hint}, lt{m.log_term})")
    if m.entries:
        parts.append("[" + ", ".join(fmt_entry(e) for e in m.entries) + "]")
    if m.snapshot is not None:
        parts.append(f"snap(i{m.snapshot.meta.index} t{m.snapshot.meta.term})")
    if m.context:
        parts.append(f"ctx={m.context.decode()}")
    return " ".join(parts)


def fmt_conf(c: ConfState) -> str:
    text = "voters=(" + " ".join(map(str, sorted(c.voters))) + ")"
    if c.learners:
        text += " learners=(" + " ".join(map(str, sorted(c.learners))) + ")"
    return text


@dataclass
class MemoryStorage(DiskState):
    """The simulator's disk state (the Ready persist rules), never losing a write, plus
    what was applied."""

    applied: list[Entry] = field(default_factory=list)

    def persist(self, rd: Ready) -> None:
        self.apply(rd)


class Env:
    def __init__(self) -> None:
        self.nodes: dict[int, Raft] = {}
        self.storage: dict[int, MemoryStorage] = {}
        self.configs: dict[int, RaftConfig] = {}
        self.queues: dict[int, list[Message]] = {}
        self.cut: set[int] = set()
        self.out: list[str] = []

    def emit(self, line: str) -> None:
        self.out.append(line)

    # -- commands ---------------------------------------------------------------------

    def run(self, cmd: Command) -> str:
        self.out = []
        handler = getattr(self, "cmd_" + cmd.name.replace("-", "_"), None)
        if handler is None:
            raise ValueError(f"unknown command {cmd.name}")
        try:
            handler(cmd)
        except ProposalDropped as err:
            self.emit(f"error: {type(err).__name__}: {err}")
        return "\n".join(self.out)

    def cmd_add_nodes(self, cmd: Command) -> None:
        """`add-nodes COUNT [voters=1,2,3] [learners=..] [index=N] [prevote=true]
        [checkquorum=true] [lease=false] [inflight=64] [promotelag=1000]`: start COUNT
        new nodes whose log base is a snapshot at `index` (term 1 unless 0) carrying the
        given configuration. Without voters/learners a node starts empty and learns the
        group's configuration from its leader (a snapshot, or the log)."""
        count = cmd.int_arg(0)
        voters = _id_set(cmd.kwargs.get("voters", ""))
        learners = _id_set(cmd.kwargs.get("learners", ""))
        index = int(cmd.kwargs.get("index", "0"))
        start = max(self.nodes, default=0) + 1
        for node in range(start, start + count):
            config = RaftConfig(
                id=node,
                pre_vote=cmd.kwargs.get("prevote", "true") == "true",
                check_quorum=cmd.kwargs.get("checkquorum", "true") == "true",
                lease_reads=cmd.kwargs.get("lease", "false") == "true",
                inflight_batches_max=int(cmd.kwargs.get("inflight", "64")),
                learner_promote_lag_max=int(cmd.kwargs.get("promotelag", "1000")),
            )
            meta = SnapshotMeta(index, 1 if index else 0, ConfState(voters, learners))
            storage = MemoryStorage(snapshot=Snapshot(meta))
            if index:
                storage.hard_state = HardState(term=1, commit=index)
            self.configs[node] = config
            self.storage[node] = storage
            self.queues[node] = []
            self._start(node)
            self.emit(f"node {node}: {fmt_conf(self.nodes[node].conf)} log base i{index}")

    def _start(self, node: int) -> None:
        storage = self.storage[node]
        applied = storage.applied[-1].index if storage.applied else storage.snapshot.meta.index
        self.nodes[node] = Raft(
            self.configs[node], random.Random(node), storage.persisted(), applied=applied
        )

    def cmd_campaign(self, cmd: Command) -> None:
        self.nodes[cmd.int_arg(0)].campaign()

    def cmd_tick(self, cmd: Command) -> None:
        """`tick NODE... [n=K]`: K ticks, the listed nodes in lockstep (one tick each
        per round, in the order given), so they share one notion of elapsed time."""
        nodes = [self.nodes[n] for n in cmd.ints()]
        for _ in range(int(cmd.kwargs.get("n", "1"))):
            for node in nodes:
                node.tick()

    def cmd_tick_election(self, cmd: Command) -> None:
        """`tick-election NODE`: tick NODE until its randomized election timeout runs
        out and it campaigns (at most two election timeouts)."""
        node = self.nodes[cmd.int_arg(0)]
        for ticks in range(1, 2 * node.config.election_timeout_ticks + 1):
            node.tick()
            if node.election_elapsed == 0:  # reset by the campaign (or by winning it)
                self.emit(f"node {node.id} campaigns after {ticks} ticks")
                return
        self.emit(f"node {node.id} did not campaign")

    def cmd_propose(self, cmd: Command) -> None:
        index = self.nodes[cmd.int_arg(0)].propose(cmd.args[1].encode())
        self.emit(f"proposed at index {index}")

    def cmd_propose_conf_change(self, cmd: Command) -> None:
        """`propose-conf-change NODE add|learner|remove ID`."""
        change = ConfChange(CONF_CHANGE_OPS[cmd.args[1]], int(cmd.args[2]))
        index = self.nodes[cmd.int_arg(0)].propose_conf_change(change)
        self.emit(f"proposed at index {index}")

    def cmd_read_index(self, cmd: Command) -> None:
        self.nodes[cmd.int_arg(0)].read_index(cmd.args[1].encode())

    def cmd_transfer_leader(self, cmd: Command) -> None:
        self.nodes[cmd.int_arg(0)].transfer_leader(cmd.int_arg(1))

    def cmd_report_snapshot(self, cmd: Command) -> None:
        """`report-snapshot LEADER FOLLOWER [failed]`: the leader's host finished (or
        failed) streaming a snapshot to FOLLOWER."""
        failed = len(cmd.args) > 2 and cmd.args[2] == "failed"
        self.nodes[cmd.int_arg(0)].report_snapshot(cmd.int_arg(1), failed)

    def cmd_compact(self, cmd: Command) -> None:
        """`compact NODE INDEX`: NODE's host saves a snapshot at INDEX (its data: the
        applied entries' payloads) and compacts the log up to it."""
        node = self.nodes[cmd.int_arg(0)]
        meta = node.snapshot_meta(cmd.int_arg(1))
        data = ",".join(e.data.decode() for e in self.storage[cmd.int_arg(0)].applied if e.data)
        self.storage[cmd.int_arg(0)].set_snapshot(Snapshot(meta, data.encode()))
        node.compact(meta)
        self.emit(f"node {cmd.int_arg(0)}: log base now i{meta.index} t{meta.term}")

    def cmd_isolate(self, cmd: Command) -> None:
        """`isolate NODE`: drop every message NODE sends or is sent from now on
        (messages already queued for delivery stay queued)."""
        self.cut.add(cmd.int_arg(0))

    def cmd_heal(self, cmd: Command) -> None:
        """`heal`: end every isolation."""
        self.cut.clear()

    def cmd_restart(self, cmd: Command) -> None:
        """`restart NODE`: rebuild NODE from its storage; messages queued for it are
        lost."""
        node = cmd.int_arg(0)
        self.queues[node] = []
        self._start(node)
        self.emit(f"node {node} restarted at {self._describe_hard(node)}")

    def cmd_status(self, cmd: Command) -> None:
        for node_id in cmd.ints() or sorted(self.nodes):
            node = self.nodes[node_id]
            self.emit(
                f"{node_id}: {node.role.value} term={node.term} vote={node.vote} "
                f"lead={node.lead} commit={node.log.committed} applied={node.log.applied} "
                f"last={node.log.last_index()} {fmt_conf(node.conf)}"
            )
            if node.role is Role.LEADER:
                for peer, pr in sorted(node.prs.items()):
                    self.emit(f"  {peer}: {pr.describe()}")

    def cmd_log(self, cmd: Command) -> None:
        node = self.nodes[cmd.int_arg(0)]
        self.emit(f"base i{node.log.base.index} t{node.log.base.term}")
        for e in node.log.entries:
            self.emit(fmt_entry(e))

    def cmd_applied(self, cmd: Command) -> None:
        entries = self.storage[cmd.int_arg(0)].applied
        self.emit(", ".join(fmt_entry(e) for e in entries) or "none")

    def cmd_deliver(self, cmd: Command) -> None:
        targets = cmd.ints() or sorted(self.nodes)
        for node in targets:
            self._deliver(node, drop=cmd.kwargs.get("drop") == "true")

    def cmd_process_ready(self, cmd: Command) -> None:
        for node in cmd.ints() or sorted(self.nodes):
            self._process_ready(node)

    def cmd_stabilize(self, cmd: Command) -> None:
        targets = cmd.ints() or sorted(self.nodes)
        for _ in range(1000):
            progressed = False
            for node in targets:
                if self.nodes[node].has_ready():
                    self._process_ready(node)
                    progressed = True
            for node in targets:
                if self.queues[node]:
                    self._deliver(node, drop=False)
                    progressed = True
            if not progressed:
                return
        raise AssertionError("stabilize did not settle in 1000 rounds")

    # -- mechanics --------------------------------------------------------------------

    def _describe_hard(self, node: int) -> str:
        hs = self.nodes[node].hard_state()
        return f"term={hs.term} vote={hs.vote} commit={hs.commit}"

    def _process_ready(self, node: int) -> None:
        core = self.nodes[node]
        if not core.has_ready():
            return
        rd = core.ready()
        self.emit(f"> {node} handling Ready")
        if rd.soft_state is not None:
            self.emit(f"  lead={rd.soft_state.leader} {rd.soft_state.role.value}")
        if rd.hard_state is not None:
            hs = rd.hard_state
            sync = " (sync)" if rd.must_sync else ""
            self.emit(f"  HardState term={hs.term} vote={hs.vote} commit={hs.commit}{sync}")
        if rd.snapshot is not None:
            meta = rd.snapshot.meta
            data = rd.snapshot.data.decode() or "-"
            self.emit(f"  Snapshot i{meta.index} t{meta.term} {fmt_conf(meta.conf)} data={data}")
        if rd.entries:
            self.emit("  Entries: " + ", ".join(fmt_entry(e) for e in rd.entries))
        storage = self.storage[node]
        storage.persist(rd)
        for m in rd.messages:
            if m.type is MessageType.SNAP and m.snapshot is not None:
                m = _with_snapshot_data(m, storage.snapshot)
            self.emit(f"  send {fmt_message(m)}")
            if m.to in self.queues and m.to not in self.cut and node not in self.cut:
                self.queues[m.to].append(m)
        if rd.snapshot is not None:
            storage.applied = []
        if rd.committed_entries:
            self.emit("  Apply: " + ", ".join(fmt_entry(e) for e in rd.committed_entries))
            storage.applied.extend(rd.committed_entries)
        for rs in rd.read_states:
            self.emit(f"  ReadState i{rs.index} ctx={rs.context.decode()}")
        core.advance(rd)

    def _deliver(self, node: int, drop: bool) -> None:
        msgs, self.queues[node] = self.queues[node], []
        for m in msgs:
            if drop:
                self.emit(f"dropped {fmt_message(m)}")
                continue
            self.emit(f"> {node} receiving {fmt_message(m)}")
            try:
                self.nodes[node].step(m)
            except ProposalDropped as err:
                self.emit(f"  error: {err}")


def _with_snapshot_data(m: Message, snapshot: Snapshot) -> Message:
    """The leader's host attaches its stored snapshot to an outgoing SNAP message."""
    if m.snapshot is None or m.snapshot.meta != snapshot.meta:
        raise AssertionError("sender's stored snapshot is not at its log base")
    return replace(m, snapshot=snapshot)


def _id_set(text: str) -> frozenset[int]:
    return frozenset(int(v) for v in text.split(",") if v)
