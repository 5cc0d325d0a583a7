"""A simulated disk for one Raft node, within the fault model (shared/STYLE.md §9).
Pure: no I/O.

Writes land in order. Until a sync, they are unsynced: a crash keeps everything synced
plus a random prefix of the unsynced writes (what an append-only log on a real disk
keeps after a power cut: a torn tail, never a hole). The stored state is what the host
would load to restart its core.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from atoll.raft import Entry, HardState, PersistedState, Ready, Snapshot

if TYPE_CHECKING:
    import random


@dataclass
class DiskState:
    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot = field(default_factory=Snapshot)
    entries: list[Entry] = field(default_factory=list)

    def persisted(self) -> PersistedState:
        """What a host loads from this state to restart a core."""
        return PersistedState(self.hard_state, self.snapshot.meta, tuple(self.entries))

    def copy(self) -> DiskState:
        return DiskState(self.hard_state, self.snapshot, list(self.entries))

    def apply(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            # A snapshot from the leader replaces the whole log: entries after it may
            # be a divergent tail (the core dropped them too).
            self.snapshot = rd.snapshot
            self.entries = []
        if rd.entries:
            first = rd.entries[0].index
            base = self.snapshot.meta.index
            keep = first - base - 1
            self.entries = self.entries[: max(keep, 0)] + list(rd.entries)
        if rd.hard_state is not None:
            self.hard_state = rd.hard_state

    def set_snapshot(self, snapshot: Snapshot) -> None:
        index = snapshot.meta.index
        self.entries = [e for e in self.entries if e.index > index]
        self.snapshot = snapshot


@dataclass
class SimDisk:
    synced: DiskState = field(default_factory=DiskState)
    unsynced: list[Ready] = field(default_factory=list)
    writes: int = 0
    syncs: int = 0
    lost_writes: int = 0

    def write(self, rd: Ready) -> None:
        self.writes += 1
        self.unsynced.append(rd)

    def sync(self) -> None:
        self.syncs += 1
        for rd in self.unsynced:
            self.synced.apply(rd)
        self.unsynced.clear()

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """A snapshot is written to its own file and synced before the log is cut."""
        self.sync()
        self.synced.set_snapshot(snapshot)

    def crash(self, rng: random.Random) -> None:
        kept = rng.randint(0, len(self.unsynced))
        self.lost_writes += len(self.unsynced) - kept
        for rd in self.unsynced[:kept]:
            self.synced.apply(rd)
        self.unsynced.clear()

    def current(self) -> DiskState:
        """What a read would see now (synced plus unsynced writes)."""
        state = self.synced.copy()
        for rd in self.unsynced:
            state.apply(rd)
        return state

    def load(self) -> PersistedState:
        return self.synced.persisted()
