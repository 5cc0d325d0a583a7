"""The Raft consensus core: one node's state machine. Pure: no I/O, no clock, no global
random (shared/STYLE.md §1-2; shared/DESIGN.md §6).

Everything that happens to a node is an input: `step(message)` for messages from peers
and for local events (`MessageType.HUP`, `BEAT`, ...), `tick()` for the passage of one
unit of time, and the conveniences `propose`, `propose_conf_change`, `read_index`,
`transfer_leader`, `campaign` and `compact`, which step a local message. Effects are
collected and handed to the host as a `Ready` (see its docstring for the order the host
must follow), and `advance(ready)` tells the core they are done.

What is implemented, after Ongaro's thesis and etcd/raft:

- Elections with randomized timeouts drawn from an injected `random.Random`;
  **pre-vote** (§9.6: a node that could not win does not disturb the cluster by
  bumping terms) and **check-quorum** (a leader that has not heard from a majority
  within an election timeout steps down; a follower that heard from a leader within
  one ignores vote requests, which is what makes lease reads safe).
- Replication with probing, pipelined streaming of bounded batches
  (`inflight_batches_max` in flight per follower, `batch_bytes_max` each) and fast
  back-tracking by term on conflicts; commitment of current-term entries only, by
  majority match index. A leader counts its own log only once it is persisted
  (`advance`), so no entry is committed on a majority that includes unsynced disks.
- Snapshots: the host saves a snapshot of its state machine and compacts the log with
  `compact(meta)`; a follower whose next index is compacted away is sent a `SNAP`
  message naming the snapshot at the log's base. The core never holds snapshot data:
  the host attaches the data of that snapshot when it sends the message (the
  transport streams it in chunks), passes a received one through `Ready.snapshot`,
  and reports the outcome of a transfer with `report_snapshot`.
- Membership: one change of one node at a time (add voter, add learner, remove,
  promote a learner), taking effect when committed; a leader refuses a change while
  another is uncommitted, before it has committed an entry of its own term, or that
  would promote a learner lagging more than `learner_promote_lag_max` entries. Any two
  configurations that can be in effect at once differ by one voter, so their
  majorities intersect (thesis §4.1).
- Leadership transfer (thesis §3.10) and linearizable reads by ReadIndex (§6.4), or by
  lease when `lease_reads` and check-quorum are on.

Role-specific behaviour is chosen when the role changes (`_step_role`, `_tick_role`),
not by branching on the role in every method.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from atoll.base.errors import invariant
from atoll.raft.errors import ConfigError, NotLeader, ProposalDropped
from atoll.raft.progress import Progress, ProgressState
from atoll.raft.quorum import JointConfig, VoteResult, majority
from atoll.raft.raft_log import RaftLog
from atoll.raft.read_only import ReadOnly
from atoll.raft.types import (
    NONE,
    ConfChange,
    ConfChangeOp,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    PersistedState,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
    SoftState,
)

if TYPE_CHECKING:
    import random

MT = MessageType

LEASE_MARGIN_TICKS = 2
"""How much sooner than a follower's election timeout a leader's lease ends: room for
clock drift between nodes (Raft thesis §6.4.1)."""

CAMPAIGN_TRANSFER = b"transfer"
"""Context of a vote request sent because of a leadership transfer: voters grant it
even inside a leader lease."""


@dataclass(frozen=True)
class RaftConfig:
    id: int
    election_timeout_ticks: int = 10
    heartbeat_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    lease_reads: bool = False
    inflight_batches_max: int = 64
    batch_bytes_max: int = 1 << 20
    apply_bytes_max: int = 4 << 20
    uncommitted_entries_max: int = 10_000
    read_requests_max: int = 4096
    learner_promote_lag_max: int = 1000

    def __post_init__(self) -> None:
        if self.id <= 0:
            raise ConfigError(f"raft node id must be positive, got {self.id}")
        if self.heartbeat_ticks <= 0:
            raise ConfigError("heartbeat_ticks must be positive")
        if self.election_timeout_ticks <= self.heartbeat_ticks:
            raise ConfigError("election_timeout_ticks must exceed heartbeat_ticks")
        if self.lease_reads and not self.check_quorum:
            raise ConfigError("lease_reads needs check_quorum")
        for name in ("inflight_batches_max", "batch_bytes_max", "apply_bytes_max"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")


class Raft:
    def __init__(
        self,
        config: RaftConfig,
        rng: random.Random,
        state: PersistedState | None = None,
        applied: int = 0,
    ) -> None:
        """A node restarted from `state` (what the host loaded from disk; a fresh
        group's first configuration is its base snapshot's `conf`). `applied` is the
        index the host's state machine has applied already."""
        state = state or PersistedState()
        if not state.snapshot.conf.voters:
            # A node that joins later is created with the group's first configuration
            # too (or a snapshot): conf changes replayed from the log apply on top of
            # it, so starting from an empty one would yield a wrong voter set.
            raise ConfigError(f"node {config.id}: the log base has no voters")
        self.config = config
        self.id = config.id
        self._rng = rng
        self.log = RaftLog(state, applied)
        self.term = state.hard_state.term
        self.vote = state.hard_state.vote
        self.lead = NONE
        self.role = Role.FOLLOWER
        self.conf = ConfState()
        self._quorum: JointConfig = majority()
        # (index, configuration in effect from that index on), oldest first.
        self._conf_history: list[tuple[int, ConfState]] = []
        self.prs: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.read_only = ReadOnly(config.read_requests_max)
        self._pending_reads: list[Message] = []  # until the leader commits in its term
        self.pending_conf_index = 0
        self.lead_transferee = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = 0
        self.ticks = 0  # ticks since this core was made: the clock of leases
        # Per voter, the latest tick at which a heartbeat it acknowledged was sent.
        self._lease_acks: dict[int, int] = {}
        self._step_role: Callable[[Message], None] = self._step_follower
        self._tick_role: Callable[[], None] = self._tick_election
        self._set_conf(state.snapshot.index, state.snapshot.conf)
        self._apply_conf_changes(state.snapshot.index, self.log.committed)
        self._prev_hard = HardState(self.term, self.vote, self.log.committed)
        self._prev_soft = SoftState(self.lead, self.role)
        self.become_follower(self.term, NONE)

    # -- public inputs ----------------------------------------------------------------

    def tick(self) -> None:
        self.ticks += 1
        self._tick_role()

    def campaign(self) -> None:
        self.step(Message(MT.HUP, frm=self.id))

    def propose(self, data: bytes) -> int:
        """Append `data` as a new entry; returns its index. Raises `NotLeader` on a
        non-leader and `ProposalDropped` when the leader cannot take it now."""
        return self._propose((Entry(0, 0, EntryType.NORMAL, data),))

    def propose_many(self, datas: Sequence[bytes]) -> int:
        """Append several entries at once (one round of appends to the followers);
        returns the index of the first. Raises as `propose`."""
        if not datas:
            raise ValueError("propose_many needs at least one entry")
        entries = tuple(Entry(0, 0, EntryType.NORMAL, data) for data in datas)
        return self._propose(entries) - len(entries) + 1

    def propose_conf_change(self, change: ConfChange) -> int:
        return self._propose((Entry(0, 0, EntryType.CONF_CHANGE, change.encode()),))

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read; a `ReadState` with this `context` comes out in
        a later Ready (or never, if leadership is lost: the caller times out)."""
        if not context:
            raise ValueError("read_index needs a non-empty context")
        if self.lead == NONE:
            raise NotLeader(self.id, self.term, NONE)
        if self.role is Role.LEADER and self._reads_full():
            raise ProposalDropped(f"node {self.id}: read-index queue full")
        self.step(Message(MT.READ_INDEX, frm=self.id, context=context))

    def transfer_leader(self, target: int) -> None:
        if self.lead == NONE:
            raise NotLeader(self.id, self.term, NONE)
        self.step(Message(MT.TRANSFER_LEADER, frm=target))

    def report_unreachable(self, node: int) -> None:
        self.step(Message(MT.UNREACHABLE, frm=node))

    def report_snapshot(self, node: int, failed: bool) -> None:
        self.step(Message(MT.SNAP_STATUS, frm=node, reject=failed))

    def snapshot_meta(self, index: int) -> SnapshotMeta:
        """The metadata a snapshot of the state machine at `index` must carry."""
        term = self.log.term(index)
        invariant(term is not None, f"node {self.id}: no term for snapshot index {index}")
        assert term is not None
        return SnapshotMeta(index, term, self.conf_at(index))

    def compact(self, meta: SnapshotMeta) -> None:
        """The host saved a snapshot described by `meta` (from `snapshot_meta`); drop
        the log up to it. From now on that snapshot must stay available to send."""
        index = meta.index
        self.log.compact(meta)
        later = [(i, c) for i, c in self._conf_history if i > index]
        self._conf_history = [(index, self.conf_at(index)), *later]

    @property
    def conf_index(self) -> int:
        """The log index at which the configuration in effect took effect (or the log
        base it was carried to): higher for every later configuration."""
        return self._conf_history[-1][0] if self._conf_history else 0

    def conf_at(self, index: int) -> ConfState:
        conf = self._conf_history[0][1]
        for start, candidate in self._conf_history:
            if start <= index:
                conf = candidate
        return conf

    # -- Ready ------------------------------------------------------------------------

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def soft_state(self) -> SoftState:
        return SoftState(self.lead, self.role)

    def has_ready(self) -> bool:
        return bool(
            self.msgs
            or self.read_states
            or self.log.pending_snapshot is not None
            or self.log.unstable_entries()
            or self.log.next_committed_entries(1)
            or self.hard_state() != self._prev_hard
            or self.soft_state() != self._prev_soft
        )

    def ready(self) -> Ready:
        rd = Ready()
        soft = self.soft_state()
        if soft != self._prev_soft:
            rd.soft_state = soft
        hard = self.hard_state()
        if hard != self._prev_hard:
            rd.hard_state = hard
        rd.snapshot = self.log.pending_snapshot
        rd.entries = self.log.unstable_entries()
        rd.committed_entries = self.log.next_committed_entries(self.config.apply_bytes_max)
        rd.messages, self.msgs = self.msgs, []
        rd.read_states, self.read_states = self.read_states, []
        rd.must_sync = bool(
            rd.entries
            or rd.snapshot is not None
            or hard.term != self._prev_hard.term
            or hard.vote != self._prev_hard.vote
        )
        return rd

    def advance(self, rd: Ready) -> None:
        """The host has done everything `rd` asked for."""
        if rd.soft_state is not None:
            self._prev_soft = rd.soft_state
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        if rd.snapshot is not None:
            self.log.snapshot_persisted()
        if rd.entries:
            last = rd.entries[-1]
            self.log.stable_to(last.index, last.term)
        if rd.committed_entries:
            self.log.applied_to(rd.committed_entries[-1].index)
        if self.role is Role.LEADER and (rd.entries or rd.snapshot is not None):
            me = self.prs.get(self.id)
            if me is not None and me.maybe_update(self.log.stable) and self._maybe_commit():
                self._bcast_append()

    # -- step -------------------------------------------------------------------------

    def step(self, m: Message) -> None:
        if m.term == 0 or m.type in (MT.HUP, MT.BEAT, MT.CHECK_QUORUM):
            pass  # local messages carry no term
        elif m.term > self.term:
            if not self._accept_higher_term(m):
                return
        elif m.term < self.term:
            self._reply_to_stale(m)
            return
        if m.type is MT.HUP:
            self._hup(transfer=False)
        elif m.type in (MT.VOTE, MT.PRE_VOTE):
            self._handle_vote_request(m)
        else:
            self._step_role(m)

    def _accept_higher_term(self, m: Message) -> bool:
        """Adopt `m`'s higher term where Raft says to; False if `m` is to be ignored."""
        if m.type in (MT.VOTE, MT.PRE_VOTE):
            forced = m.context == CAMPAIGN_TRANSFER
            in_lease = (
                self.config.check_quorum
                and self.lead != NONE
                and self.election_elapsed < self.config.election_timeout_ticks
            )
            if in_lease and not forced:
                return False  # a leader is alive: do not let this node disturb it
        if m.type is MT.PRE_VOTE or (m.type is MT.PRE_VOTE_RESP and not m.reject):
            return True  # pre-votes are for a future term; they change nothing yet
        leader = m.frm if m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP) else NONE
        self.become_follower(m.term, leader)
        return True

    def _reply_to_stale(self, m: Message) -> None:
        if m.type in (MT.APP, MT.HEARTBEAT) and (self.config.check_quorum or self.config.pre_vote):
            # Tell a leader cut off by a partition that its term is over; without this a
            # node that keeps failing pre-vote could never learn the new term.
            self._send(Message(MT.APP_RESP, to=m.frm))
        elif m.type is MT.PRE_VOTE:
            self._send(Message(MT.PRE_VOTE_RESP, to=m.frm, term=self.term, reject=True))

    def _handle_vote_request(self, m: Message) -> None:
        response = MT.VOTE_RESP if m.type is MT.VOTE else MT.PRE_VOTE_RESP
        can_vote = (
            self.vote == m.frm
            or (self.vote == NONE and self.lead == NONE)
            or (m.type is MT.PRE_VOTE and m.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # A pre-vote answer carries the term asked about, so the candidate counts it.
            self._send(Message(response, to=m.frm, term=m.term))
            if m.type is MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.frm
        else:
            self._send(Message(response, to=m.frm, term=self.term, reject=True))

    # -- role changes -----------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        timeout = self.config.election_timeout_ticks
        self.randomized_election_timeout = timeout + self._rng.randrange(timeout)
        self.lead_transferee = NONE
        self.votes = {}
        self._lease_acks = {}
        self.read_only.reset()
        self._pending_reads = []
        self.pending_conf_index = 0
        last = self.log.last_index()
        for node, pr in self.prs.items():
            self.prs[node] = Progress(last + 1, self.config.inflight_batches_max, pr.is_learner)
            if node == self.id:
                self.prs[node].match = self.log.stable

    def become_follower(self, term: int, lead: int) -> None:
        self._reset(term)
        self.lead = lead
        self.role = Role.FOLLOWER
        self._step_role = self._step_follower
        self._tick_role = self._tick_election

    def _become_pre_candidate(self) -> None:
        # Not a term change: a pre-candidate keeps its term and vote.
        self.votes = {}
        self.lead = NONE
        self.role = Role.PRE_CANDIDATE
        self._step_role = self._step_candidate
        self._tick_role = self._tick_election

    def _become_candidate(self) -> None:
        invariant(self.role is not Role.LEADER, f"node {self.id}: leader -> candidate")
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE
        self._step_role = self._step_candidate
        self._tick_role = self._tick_election

    def _become_leader(self) -> None:
        invariant(self.role is Role.CANDIDATE, f"node {self.id}: {self.role} -> leader")
        self._reset(self.term)
        self.lead = self.id
        self.role = Role.LEADER
        self._step_role = self._step_leader
        self._tick_role = self._tick_heartbeat
        me = self.prs.get(self.id)
        if me is not None:
            me.recent_active = True
            me.become_replicate()
            me.match = self.log.stable
            me.next = self.log.last_index() + 1
        # An empty entry of the new term: committing it commits everything before it,
        # and until it commits no configuration change or read is served.
        self.pending_conf_index = self.log.last_index() + 1
        self._append_entries([Entry(0, 0)])

    # -- elections --------------------------------------------------------------------

    def _promotable(self) -> bool:
        return self.id in self.conf.voters

    def _hup(self, transfer: bool) -> None:
        if self.role is Role.LEADER or not self._promotable():
            return
        if self.config.pre_vote and not transfer:
            self._campaign(pre=True, transfer=False)
        else:
            self._campaign(pre=False, transfer=transfer)

    def _campaign(self, pre: bool, transfer: bool) -> None:
        if pre:
            self._become_pre_candidate()
            kind, vote_term = MT.PRE_VOTE, self.term + 1
        else:
            self._become_candidate()
            kind, vote_term = MT.VOTE, self.term
        if self._poll(self.id, True) is VoteResult.WON:
            self._won_election(pre)
            return
        context = CAMPAIGN_TRANSFER if transfer else b""
        for node in sorted(self.conf.voters):
            if node != self.id:
                self._send(
                    Message(
                        kind,
                        to=node,
                        term=vote_term,
                        index=self.log.last_index(),
                        log_term=self.log.last_term(),
                        context=context,
                    )
                )

    def _poll(self, node: int, granted: bool) -> VoteResult:
        self.votes.setdefault(node, granted)
        return self._quorum.vote_result(self.votes)

    def _won_election(self, pre: bool) -> None:
        if pre:
            self._campaign(pre=False, transfer=False)
        else:
            self._become_leader()
            self._bcast_append()

    # -- ticks ------------------------------------------------------------------------

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self._promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.step(Message(MT.HUP, frm=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_timeout_ticks:
            self.election_elapsed = 0
            if self.config.check_quorum:
                self.step(Message(MT.CHECK_QUORUM, frm=self.id))
            if self.role is Role.LEADER and self.lead_transferee != NONE:
                self.lead_transferee = NONE  # the transfer timed out
        if self.role is not Role.LEADER:
            return
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self.step(Message(MT.BEAT, frm=self.id))

    # -- follower and candidates ------------------------------------------------------

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t in (MT.APP, MT.HEARTBEAT, MT.SNAP):
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_leader_message(m)
        elif t in (MT.TRANSFER_LEADER, MT.READ_INDEX):
            if self.lead != NONE:  # else dropped: the requester times out and retries
                self._send(Message(t, to=self.lead, frm=m.frm, context=m.context), keep_from=True)
        elif t is MT.TIMEOUT_NOW:
            self._hup(transfer=True)
        elif t is MT.READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        if t in (MT.APP, MT.HEARTBEAT, MT.SNAP):
            self.become_follower(m.term, m.frm)
            self._handle_leader_message(m)
            return
        pre = self.role is Role.PRE_CANDIDATE
        if t is (MT.PRE_VOTE_RESP if pre else MT.VOTE_RESP):
            result = self._poll(m.frm, not m.reject)
            if result is VoteResult.WON:
                self._won_election(pre)
            elif result is VoteResult.LOST:
                self.become_follower(self.term, NONE)

    def _handle_leader_message(self, m: Message) -> None:
        if m.type is MT.APP:
            self._handle_append(m)
        elif m.type is MT.HEARTBEAT:
            self._commit_to(m.commit)
            # Echo the heartbeat's send tick: the leader's lease runs from it.
            self._send(Message(MT.HEARTBEAT_RESP, to=m.frm, index=m.index, context=m.context))
        else:
            self._handle_snapshot(m)

    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            self._send(Message(MT.APP_RESP, to=m.frm, index=self.log.committed))
            return
        prev_commit = self.log.committed
        last = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last is not None:
            self._after_commit(prev_commit)
            self._send(Message(MT.APP_RESP, to=m.frm, index=last))
            return
        hint, hint_term = self.log.find_conflict_by_term(
            min(m.index, self.log.last_index()), m.log_term
        )
        self._send(
            Message(
                MT.APP_RESP,
                to=m.frm,
                index=m.index,
                reject=True,
                reject_hint=hint,
                log_term=hint_term,
            )
        )

    def _handle_snapshot(self, m: Message) -> None:
        snapshot = m.snapshot
        invariant(snapshot is not None, f"node {self.id}: snapshot message without snapshot")
        assert snapshot is not None
        meta = snapshot.meta
        if meta.index <= self.log.committed:
            self._send(Message(MT.APP_RESP, to=m.frm, index=self.log.committed))
            return
        if self.log.match_term(meta.index, meta.term):
            # We have the snapshot's last entry: just fast-forward the commit.
            prev = self.log.committed
            self._commit_to(meta.index)
            self._after_commit(prev)
        else:
            self.log.restore(snapshot)
            self._conf_history = []
            self._set_conf(meta.index, meta.conf)
        # Acknowledge the snapshot's index only: a suffix beyond it is not vouched for.
        self._send(Message(MT.APP_RESP, to=m.frm, index=self.log.committed))

    # -- leader -----------------------------------------------------------------------

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t is MT.BEAT:
            self._bcast_heartbeat(self.read_only.last_context())
        elif t is MT.CHECK_QUORUM:
            self._check_quorum()
        elif t is MT.PROP:
            self._leader_propose(m)
        elif t is MT.READ_INDEX:
            self._leader_read_index(m)
        else:
            pr = self.prs.get(m.frm)
            if pr is not None:
                self._step_leader_from_peer(m, pr)

    def _step_leader_from_peer(self, m: Message, pr: Progress) -> None:
        t = m.type
        if t is MT.APP_RESP:
            pr.recent_active = True
            if m.reject:
                self._handle_append_reject(m, pr)
            else:
                self._handle_append_ack(m, pr)
        elif t is MT.HEARTBEAT_RESP:
            pr.recent_active = True
            pr.probe_sent = False
            if m.index > self._lease_acks.get(m.frm, 0):
                self._lease_acks[m.frm] = m.index
            if pr.state is ProgressState.REPLICATE and pr.inflights.full():
                pr.inflights.free_first_one()
            if pr.match < self.log.last_index():
                self._send_append(m.frm)
            if m.context:
                self._handle_read_ack(m.frm, m.context)
        elif t is MT.SNAP_STATUS:
            if pr.state is ProgressState.SNAPSHOT:
                if m.reject:
                    pr.pending_snapshot = 0
                pr.become_probe()
                pr.probe_sent = True  # wait for an append response before probing
        elif t is MT.UNREACHABLE:
            if pr.state is ProgressState.REPLICATE:
                pr.become_probe()
        elif t is MT.TRANSFER_LEADER:
            self._handle_transfer(m.frm, pr)

    def _handle_append_reject(self, m: Message, pr: Progress) -> None:
        probe = m.reject_hint
        if m.log_term > 0:
            probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
        if pr.maybe_decr_to(m.index, probe):
            if pr.state is ProgressState.REPLICATE:
                pr.become_probe()
            self._send_append(m.frm)

    def _handle_append_ack(self, m: Message, pr: Progress) -> None:
        was_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
            pr.become_probe()
            pr.become_replicate()
        elif pr.state is ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            self._bcast_append()
            if m.frm not in self.prs or self.role is not Role.LEADER:
                return  # the commit applied a change that removed the peer, or us
        elif was_paused:
            self._send_append(m.frm)
        while self._send_append(m.frm, send_if_empty=False):
            pass
        if m.frm == self.lead_transferee and pr.match == self.log.last_index():
            self._send(Message(MT.TIMEOUT_NOW, to=m.frm))

    def _leader_propose(self, m: Message) -> None:
        if m.frm != self.id or self._proposal_refusal(m.entries) is not None:
            return  # proposals come only from `propose`, which said why it refused
        for offset, entry in enumerate(m.entries):
            if entry.type is EntryType.CONF_CHANGE:
                self.pending_conf_index = self.log.last_index() + 1 + offset
        self._append_entries(list(m.entries))
        self._bcast_append()

    def _proposal_refusal(self, entries: tuple[Entry, ...]) -> str | None:
        if self.id not in self.prs:
            return f"node {self.id} was removed from the group"
        if self.lead_transferee != NONE:
            return f"node {self.id}: leadership transfer to {self.lead_transferee} in progress"
        if self.log.last_index() - self.log.committed >= self.config.uncommitted_entries_max:
            return f"node {self.id}: too many uncommitted entries"
        changes = [e for e in entries if e.type is EntryType.CONF_CHANGE]
        if len(changes) > 1:
            return "one configuration change at a time"
        for entry in changes:
            refusal = self._conf_change_refusal(ConfChange.decode(entry.data))
            if refusal is not None:
                return refusal
        return None

    def _conf_change_refusal(self, change: ConfChange) -> str | None:
        if self.pending_conf_index > self.log.committed:
            return (
                f"node {self.id}: a configuration change (index {self.pending_conf_index})"
                " or this term's first entry is not committed yet"
            )
        after = self.conf.apply(change)
        if not after.voters:
            return f"removing node {change.node_id} would leave no voters"
        pr = self.prs.get(change.node_id)
        if change.op is ConfChangeOp.ADD_VOTER and pr is not None and pr.is_learner:
            lag = self.log.last_index() - pr.match
            if lag > self.config.learner_promote_lag_max:
                return f"learner {change.node_id} is {lag} entries behind; not promoting yet"
        return None

    def _leader_read_index(self, m: Message) -> None:
        if self._reads_full():
            return  # dropped: the requester times out
        if self.log.term(self.log.committed) != self.term:
            # Until an entry of this term commits, the commit index may be behind what
            # earlier leaders committed: hold the read.
            self._pending_reads.append(m)
            return
        self._start_read(m)

    def _lease_valid(self) -> bool:
        """Whether no other leader can have been elected yet: a majority acknowledged a
        heartbeat sent at tick T, each of them refuses votes for an election timeout
        after receiving it, so none can vote before T + timeout on its own clock."""
        if self.lead_transferee != NONE:
            return False  # a transfer lets the target campaign at once
        acks = dict(self._lease_acks)
        acks[self.id] = self.ticks
        since = self._quorum.committed_index(acks)
        return self.ticks < since + self.config.election_timeout_ticks - LEASE_MARGIN_TICKS

    def _reads_full(self) -> bool:
        held = len(self._pending_reads) + len(self.read_only.pending)
        return held >= self.config.read_requests_max

    def _start_read(self, m: Message) -> None:
        if self.config.lease_reads and self._lease_valid():
            self._answer_read(m.frm, self.log.committed, m.context)
            return
        if self.read_only.full():
            return  # dropped: the requester times out
        if self.read_only.add(self.log.committed, m.frm, m.context):
            self._handle_read_ack(self.id, m.context)
            self._bcast_heartbeat(m.context)

    def _handle_read_ack(self, node: int, context: bytes) -> None:
        acks = self.read_only.ack(node, context)
        if acks is None:
            return
        if self._quorum.vote_result(dict.fromkeys(acks, True)) is not VoteResult.WON:
            return
        for request in self.read_only.release(context):
            self._answer_read(request.requester, request.index, request.context)

    def _answer_read(self, requester: int, index: int, context: bytes) -> None:
        if requester in (self.id, NONE):
            self.read_states.append(ReadState(index, context))
        else:
            self._send(Message(MT.READ_INDEX_RESP, to=requester, index=index, context=context))

    def _handle_transfer(self, target: int, pr: Progress) -> None:
        if pr.is_learner or target == self.id or target == self.lead_transferee:
            return
        self.election_elapsed = 0  # the transfer must finish within an election timeout
        self.lead_transferee = target
        if pr.match == self.log.last_index():
            self._send(Message(MT.TIMEOUT_NOW, to=target))
        else:
            self._send_append(target)

    def _check_quorum(self) -> None:
        active = {node: pr.recent_active or node == self.id for node, pr in self.prs.items()}
        if self._quorum.vote_result(active) is not VoteResult.WON:
            self.become_follower(self.term, NONE)
            return
        for node, pr in self.prs.items():
            if node != self.id:
                pr.recent_active = False

    def _append_entries(self, entries: list[Entry]) -> None:
        last = self.log.last_index()
        stamped = [
            Entry(self.term, last + 1 + offset, entry.type, entry.data)
            for offset, entry in enumerate(entries)
        ]
        self.log.append(stamped)
        # Our own progress moves in `advance`, once the entries are persisted.

    def _maybe_commit(self) -> bool:
        acked = {node: pr.match for node, pr in self.prs.items()}
        prev = self.log.committed
        if not self.log.maybe_commit(self._quorum.committed_index(acked), self.term):
            return False
        self._after_commit(prev)
        if self._pending_reads and self.log.term(self.log.committed) == self.term:
            pending, self._pending_reads = self._pending_reads, []
            for m in pending:
                self._start_read(m)
        return True

    def _send_append(self, to: int, send_if_empty: bool = True) -> bool:
        pr = self.prs[to]
        if to == self.id or pr.is_paused():
            return False
        prev_index = pr.next - 1
        prev_term = self.log.term(prev_index)
        entries = self.log.slice(pr.next, self.log.last_index() + 1, self.config.batch_bytes_max)
        if prev_term is None or entries is None:
            return self._send_snapshot(to, pr)
        if not entries and not send_if_empty:
            return False
        self._send(
            Message(
                MT.APP,
                to=to,
                index=prev_index,
                log_term=prev_term,
                entries=tuple(entries),
                commit=self.log.committed,
            )
        )
        if entries:
            last = entries[-1].index
            if pr.state is ProgressState.REPLICATE:
                pr.optimistic_update(last)
                pr.inflights.add(last)
            elif pr.state is ProgressState.PROBE:
                pr.probe_sent = True
        return True

    def _send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            return False
        base = self.log.base
        self._send(Message(MT.SNAP, to=to, snapshot=Snapshot(base)))
        pr.become_snapshot(base.index)
        return True

    def _bcast_append(self) -> None:
        if self.role is not Role.LEADER:
            return  # a commit just removed this leader
        for node in sorted(self.prs):
            if node != self.id:
                self._send_append(node)

    def _bcast_heartbeat(self, context: bytes) -> None:
        for node in sorted(self.prs):
            if node != self.id:
                commit = min(self.prs[node].match, self.log.committed)
                self._send(
                    Message(MT.HEARTBEAT, to=node, index=self.ticks, commit=commit, context=context)
                )

    # -- configuration ----------------------------------------------------------------

    def _propose(self, entries: tuple[Entry, ...]) -> int:
        if self.role is not Role.LEADER:
            raise NotLeader(self.id, self.term, self.lead)
        refusal = self._proposal_refusal(entries)
        if refusal is not None:
            raise ProposalDropped(refusal)
        self.step(Message(MT.PROP, frm=self.id, entries=entries))
        return self.log.last_index()

    def _commit_to(self, index: int) -> None:
        prev = self.log.committed
        if self.log.commit_to(min(index, self.log.last_index())):
            self._after_commit(prev)

    def _after_commit(self, prev_commit: int) -> None:
        self._apply_conf_changes(prev_commit, self.log.committed)

    def _apply_conf_changes(self, after: int, upto: int) -> None:
        """Configuration changes take effect when committed (every node learns the
        commit index, so every node switches at the same log position)."""
        if upto <= after:
            return
        entries = self.log.slice(after + 1, upto + 1, 1 << 62)
        invariant(entries is not None, f"node {self.id}: committed entries {after + 1}.. compacted")
        for entry in entries or []:
            if entry.type is EntryType.CONF_CHANGE:
                change = ConfChange.decode(entry.data)
                self._set_conf(entry.index, self.conf.apply(change))

    def _set_conf(self, index: int, conf: ConfState) -> None:
        self.conf = conf
        self._quorum = majority(*conf.voters)
        self._conf_history.append((index, conf))
        members = conf.voters | conf.learners
        for node in list(self.prs):
            if node not in members:
                del self.prs[node]
        for node in sorted(members):
            pr = self.prs.get(node)
            if pr is None:
                pr = Progress(self.log.last_index() + 1, self.config.inflight_batches_max, False)
                pr.recent_active = True
                self.prs[node] = pr
            pr.is_learner = node in conf.learners
        if self.role is not Role.LEADER:
            return
        if self.id not in conf.voters:
            self.become_follower(self.term, NONE)  # removed or demoted: step down
            return
        if self.lead_transferee not in (NONE, *conf.voters):
            self.lead_transferee = NONE
        self._maybe_commit()  # a smaller quorum may commit more; the caller broadcasts

    # -- sending ----------------------------------------------------------------------

    def _send(self, m: Message, keep_from: bool = False) -> None:
        invariant(m.type not in (MT.HUP, MT.BEAT, MT.CHECK_QUORUM), f"sending local {m.type}")
        term = m.term
        if term == 0 and m.type not in (MT.PROP, MT.READ_INDEX, MT.TRANSFER_LEADER):
            term = self.term
        frm = m.frm if keep_from else self.id
        self.msgs.append(
            Message(
                m.type,
                to=m.to,
                frm=frm,
                term=term,
                log_term=m.log_term,
                index=m.index,
                entries=m.entries,
                commit=m.commit,
                reject=m.reject,
                reject_hint=m.reject_hint,
                snapshot=m.snapshot,
                context=m.context,
            )
        )
