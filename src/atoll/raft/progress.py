"""What a leader knows of each follower's log: match and next index, the replication
state (probe, replicate, snapshot) and the window of append batches in flight. Pure:
no I/O. As in etcd/raft's `tracker` package (Raft thesis §3.5 and §10.2.1).

- **probe**: the leader does not know where the follower's log ends; it sends one
  append at a time and waits for the answer (or a heartbeat response) before the next.
- **replicate**: the follower is keeping up; the leader streams append batches
  optimistically, at most `inflight_batches_max` unacknowledged at once.
- **snapshot**: the follower needs a snapshot; nothing else is sent until the host
  reports the transfer finished or failed.
"""

from __future__ import annotations

import enum
from collections import deque

from atoll.base.errors import invariant


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """The last index of each append batch sent and not yet acknowledged, oldest
    first; at most `capacity` of them."""

    __slots__ = ("capacity", "indexes")

    def __init__(self, capacity: int) -> None:
        invariant(capacity > 0, "inflight capacity must be positive")
        self.capacity = capacity
        self.indexes: deque[int] = deque()

    def full(self) -> bool:
        return len(self.indexes) >= self.capacity

    def add(self, index: int) -> None:
        invariant(not self.full(), "inflights overflow")
        self.indexes.append(index)

    def free_le(self, index: int) -> None:
        while self.indexes and self.indexes[0] <= index:
            self.indexes.popleft()

    def free_first_one(self) -> None:
        if self.indexes:
            self.indexes.popleft()

    def reset(self) -> None:
        self.indexes.clear()


class Progress:
    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "next",
        "pending_snapshot",
        "probe_sent",
        "recent_active",
        "state",
    )

    def __init__(self, next_index: int, inflight_batches_max: int, is_learner: bool) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.recent_active = False
        self.is_learner = is_learner
        self.inflights = Inflights(inflight_batches_max)

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, index: int) -> bool:
        """The follower acknowledged entries up to `index`; False if that is old news."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def optimistic_update(self, index: int) -> None:
        self.next = index + 1

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected an append at `rejected`; move `next` back to probe at
        `match_hint + 1`. False if the rejection is stale."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def describe(self) -> str:
        text = f"{self.state.value} match={self.match} next={self.next}"
        if self.is_learner:
            text += " learner"
        if self.state is ProgressState.SNAPSHOT:
            text += f" pending_snapshot={self.pending_snapshot}"
        if self.inflights.indexes:
            text += f" inflight={len(self.inflights.indexes)}"
        return text
