"""Atoll's Raft consensus core (shared/DESIGN.md §6). Pure: no I/O, no clock, no
global random; the multi-raft host (`atoll.multiraft`) drives it.

`Raft` is one node's state machine (`core.py`); its inputs and outputs are the plain
records of `types.py`; `quorum`, `progress`, `raft_log` and `read_only` are its parts.
"""

from atoll.raft.core import CAMPAIGN_TRANSFER, Raft, RaftConfig
from atoll.raft.errors import ConfigError, NotLeader, ProposalDropped, RaftError
from atoll.raft.quorum import JointConfig, MajorityConfig, VoteResult, majority
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

__all__ = [
    "CAMPAIGN_TRANSFER",
    "NONE",
    "ConfChange",
    "ConfChangeOp",
    "ConfState",
    "ConfigError",
    "Entry",
    "EntryType",
    "HardState",
    "JointConfig",
    "MajorityConfig",
    "Message",
    "MessageType",
    "NotLeader",
    "PersistedState",
    "ProposalDropped",
    "Raft",
    "RaftConfig",
    "RaftError",
    "ReadState",
    "Ready",
    "Role",
    "Snapshot",
    "SnapshotMeta",
    "SoftState",
    "VoteResult",
    "majority",
]
