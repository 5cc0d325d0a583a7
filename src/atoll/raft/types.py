"""The plain data the Raft core takes and returns. Pure: no I/O.

Owns the log entry, the hard state, snapshot metadata, the message (one type for every
input to `Raft.step`, local events included, as in etcd/raft's `raftpb.Message`), and
the `Ready` batch the host carries out. The wire form of these records is the protobuf
schema in `proto/atoll/raft.proto` (docs/rpc.md); here they are frozen dataclasses so
the core and the simulator never share a mutable record by accident.

Node ids are positive integers; 0 means "none" (no vote, no known leader).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

NONE = 0
"""The node id that means "nobody" (no vote cast, no leader known)."""


class EntryType(enum.IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


class ConfChangeOp(enum.IntEnum):
    ADD_VOTER = 0  # also promotes a learner
    REMOVE_NODE = 1
    ADD_LEARNER = 2  # also demotes a voter


@dataclass(frozen=True, slots=True)
class ConfChange:
    op: ConfChangeOp
    node_id: int

    def encode(self) -> bytes:
        return bytes([int(self.op)]) + self.node_id.to_bytes(8, "big")

    @staticmethod
    def decode(data: bytes) -> ConfChange:
        if len(data) != 9:
            raise ValueError(f"conf change: {len(data)} bytes, expected 9")
        return ConfChange(ConfChangeOp(data[0]), int.from_bytes(data[1:9], "big"))


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""

    def size_bytes(self) -> int:
        return len(self.data) + 24


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be on disk before a message that depends on it is sent."""

    term: int = 0
    vote: int = NONE
    commit: int = 0


@dataclass(frozen=True, slots=True)
class ConfState:
    voters: frozenset[int] = frozenset()
    learners: frozenset[int] = frozenset()

    def apply(self, cc: ConfChange) -> ConfState:
        voters, learners = set(self.voters), set(self.learners)
        voters.discard(cc.node_id)
        learners.discard(cc.node_id)
        if cc.op is ConfChangeOp.ADD_VOTER:
            voters.add(cc.node_id)
        elif cc.op is ConfChangeOp.ADD_LEARNER:
            learners.add(cc.node_id)
        return ConfState(frozenset(voters), frozenset(learners))


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int = 0
    term: int = 0
    conf: ConfState = ConfState()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A state-machine image as of `meta.index`. `data` is opaque to the core."""

    meta: SnapshotMeta = SnapshotMeta()
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class PersistedState:
    """What a host loads from disk to restart a core: the hard state, the base of the
    log (the last snapshot's metadata; index 0 for a fresh group) and the stored
    entries after it, contiguous from `snapshot.index + 1`."""

    hard_state: HardState = HardState()
    snapshot: SnapshotMeta = SnapshotMeta()
    entries: tuple[Entry, ...] = ()


class MessageType(enum.IntEnum):
    # Local inputs (never sent between nodes).
    HUP = 0  # campaign now (election timeout or a forced campaign)
    BEAT = 1  # leader: send heartbeats now
    PROP = 2  # a proposal; a follower forwards it to the leader
    UNREACHABLE = 3  # the host could not deliver to `frm`
    SNAP_STATUS = 4  # the host finished (reject=False) or failed to send a snapshot to `frm`
    CHECK_QUORUM = 5  # leader: check that a quorum was active this election timeout
    # Between nodes.
    APP = 10
    APP_RESP = 11
    VOTE = 12
    VOTE_RESP = 13
    PRE_VOTE = 14
    PRE_VOTE_RESP = 15
    SNAP = 16
    HEARTBEAT = 17
    HEARTBEAT_RESP = 18
    TRANSFER_LEADER = 19  # ask the leader to hand leadership over to `frm`
    TIMEOUT_NOW = 20
    READ_INDEX = 21
    READ_INDEX_RESP = 22


LOCAL_MESSAGES = frozenset(
    {
        MessageType.HUP,
        MessageType.BEAT,
        MessageType.UNREACHABLE,
        MessageType.SNAP_STATUS,
        MessageType.CHECK_QUORUM,
    }
)

RESPONSE_TYPES = {
    MessageType.VOTE: MessageType.VOTE_RESP,
    MessageType.PRE_VOTE: MessageType.PRE_VOTE_RESP,
}


SEND_BEFORE_PERSIST = frozenset(
    {
        MessageType.APP,
        MessageType.HEARTBEAT,
        MessageType.HEARTBEAT_RESP,
        MessageType.SNAP,
        MessageType.TIMEOUT_NOW,
        MessageType.READ_INDEX,
        MessageType.READ_INDEX_RESP,
        MessageType.TRANSFER_LEADER,
    }
)
"""Message types that promise nothing about the sender's durable state, so a host may
send them before the Ready's writes are persisted: a leader's appends (it counts its
own copy only once persisted, so a crash merely shortens its log), heartbeats, reads
and transfers. Votes, vote requests (the candidate's own vote must be durable) and
append acknowledgements must wait for the persist step."""


@dataclass(frozen=True, slots=True)
class Message:
    type: MessageType
    to: int = NONE
    frm: int = NONE
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    snapshot: Snapshot | None = None
    context: bytes = b""


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state the host may want to watch (not persisted)."""

    leader: int = NONE
    role: Role = Role.FOLLOWER


@dataclass(frozen=True, slots=True)
class ReadState:
    """A read request (`context`) may be served once the state machine has applied
    `index`."""

    index: int
    context: bytes


@dataclass(slots=True)
class Ready:
    """Everything the host must do, in this order:

    1. **persist**: if `snapshot` is set, store it and make it the log's base, dropping
       the whole stored log (entries after it may be a divergent tail); then, if `entries` is
       non-empty, delete every stored entry at index >= `entries[0].index` and store
       `entries`; then store `hard_state` if set. If `must_sync`, fsync before step 2.
    2. **send** `messages` (each already addressed; sending may fail silently: Raft
       retries). Those of a type in `SEND_BEFORE_PERSIST` may go before step 1.
    3. **apply** `snapshot` to the state machine if set, then `committed_entries` in
       order; serve `read_states` once `applied` covers their index.
    4. **advance**: call `Raft.advance(ready)`; only then ask for the next Ready.

    Between `ready()` and `advance()` the host does not call into the core: inputs
    that arrive meanwhile wait for the next cycle.

    A `SNAP` message in `messages` names the snapshot at the sender's log base with
    empty `data`: the host attaches that snapshot's data when it sends it.

    Messages that depend on durable state (votes, append acknowledgements) are only
    produced here, after the state they depend on is in `entries`/`hard_state`, so
    following the order is what makes them safe.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    committed_entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    must_sync: bool = False

    def is_empty(self) -> bool:
        return (
            self.soft_state is None
            and self.hard_state is None
            and not self.entries
            and self.snapshot is None
            and not self.committed_entries
            and not self.messages
            and not self.read_states
        )
