"""The Raft log as one node's core sees it. Pure: no I/O.

Owns the entries after the log's base (the last snapshot taken or received), the
commit, stable and applied indexes, and the incoming snapshot not yet persisted. The
host persists what `unstable_entries()` returns and reports it back through
`stable_to`; entries are handed out for applying only once they are both committed and
stable here, so a node never applies an entry it could lose in a crash.

Index arithmetic: the base is `(snapshot.index, snapshot.term)`; `entries[i]` has index
`snapshot.index + 1 + i`. Index 0 with term 0 is the empty log's base.
"""

from __future__ import annotations

from collections.abc import Sequence

from atoll.base.errors import invariant
from atoll.raft.types import Entry, PersistedState, Snapshot, SnapshotMeta


class RaftLog:
    __slots__ = (
        "applied",
        "base",
        "committed",
        "entries",
        "pending_snapshot",
        "stable",
    )

    def __init__(self, state: PersistedState, applied: int = 0) -> None:
        self.base: SnapshotMeta = state.snapshot
        self.entries: list[Entry] = list(state.entries)
        for offset, entry in enumerate(self.entries):
            invariant(
                entry.index == self.base.index + 1 + offset,
                f"stored log not contiguous at index {entry.index} (base {self.base.index})",
            )
        self.stable = self.last_index()
        self.committed = max(state.hard_state.commit, self.base.index)
        invariant(
            self.committed <= self.last_index(),
            f"commit {self.committed} beyond last stored index {self.last_index()}",
        )
        self.applied = max(self.base.index, min(applied, self.committed))
        # A snapshot received from the leader and not yet persisted by the host.
        self.pending_snapshot: Snapshot | None = None

    # -- reading ----------------------------------------------------------------------

    def first_index(self) -> int:
        return self.base.index + 1

    def last_index(self) -> int:
        return self.base.index + len(self.entries)

    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.base.term

    def term(self, index: int) -> int | None:
        """The term of the entry at `index`; None if it is compacted away or beyond the
        end."""
        if index == self.base.index:
            return self.base.term
        offset = index - self.base.index - 1
        if 0 <= offset < len(self.entries):
            return self.entries[offset].term
        return None

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a log ending at (last_index, last_term) is at least as up to date as
        ours (Raft §5.4.1)."""
        mine = self.last_term()
        return last_term > mine or (last_term == mine and last_index >= self.last_index())

    def slice(self, lo: int, hi: int, bytes_max: int) -> list[Entry] | None:
        """Entries [lo, hi), cut at `bytes_max` but never empty when the range is not;
        None if `lo` is compacted away."""
        if lo <= self.base.index:
            return None
        start = lo - self.base.index - 1
        stop = min(hi, self.last_index() + 1) - self.base.index - 1
        out: list[Entry] = []
        size = 0
        for entry in self.entries[start:stop]:
            size += entry.size_bytes()
            if out and size > bytes_max:
                break
            out.append(entry)
        return out

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """The index of the first entry that is not already in the log with the same
        term, or 0 if all of them are."""
        for entry in entries:
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest index <= `index` whose term is <= `term`, and that term: where a
        leader whose log has `term` at `index` should probe next (etcd's fast
        back-tracking)."""
        while True:
            found = self.term(index)
            if found is None:
                return index, 0
            if found <= term or index <= self.base.index:
                return index, found
            index -= 1

    def unstable_entries(self) -> list[Entry]:
        start = self.stable - self.base.index
        return self.entries[max(start, 0) :]

    def next_committed_entries(self, bytes_max: int) -> list[Entry]:
        """Committed, stable entries not yet handed out for applying."""
        hi = min(self.committed, self.stable)
        if self.pending_snapshot is not None or hi <= self.applied:
            return []
        return self.slice(self.applied + 1, hi + 1, bytes_max) or []

    # -- changing ---------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        """Put `entries` at their indexes, dropping any conflicting suffix."""
        if not entries:
            return
        first = entries[0].index
        invariant(
            first > self.committed,
            f"append at {first} would overwrite committed index {self.committed}",
        )
        invariant(first <= self.last_index() + 1, f"append at {first} leaves a gap")
        del self.entries[first - self.base.index - 1 :]
        self.entries.extend(entries)
        self.stable = min(self.stable, first - 1)

    def maybe_append(
        self, index: int, log_term: int, committed: int, entries: Sequence[Entry]
    ) -> int | None:
        """Append `entries` following (index, log_term) if our log has that entry; returns
        the index of the last new entry, or None on a mismatch."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            self.append(entries[conflict - index - 1 :])
        self.commit_to(min(committed, last_new))
        return last_new

    def commit_to(self, index: int) -> bool:
        if index <= self.committed:
            return False
        invariant(
            index <= self.last_index(),
            f"commit to {index} beyond last index {self.last_index()}",
        )
        self.committed = index
        return True

    def maybe_commit(self, index: int, term: int) -> bool:
        """Commit up to `index` if it is newer and of `term` (Raft §5.4.2: a leader
        commits only entries of its own term by counting)."""
        return index > self.committed and self.term(index) == term and self.commit_to(index)

    def stable_to(self, index: int, term: int) -> None:
        if self.term(index) == term and index > self.stable:
            self.stable = index

    def applied_to(self, index: int) -> None:
        invariant(
            self.applied <= index <= min(self.committed, self.stable),
            f"applied to {index}: applied {self.applied}, committed {self.committed}",
        )
        self.applied = index

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the whole log by `snapshot` (a follower far behind its leader)."""
        self.base = snapshot.meta
        self.entries = []
        self.committed = self.stable = self.applied = snapshot.meta.index
        self.pending_snapshot = snapshot

    def snapshot_persisted(self) -> None:
        self.pending_snapshot = None

    def compact(self, meta: SnapshotMeta) -> None:
        """Make the snapshot `meta` describes (taken by the host at an applied index)
        the log's base."""
        index = meta.index
        invariant(index <= self.applied, f"compact to {index} beyond applied {self.applied}")
        if index <= self.base.index:
            return
        invariant(self.term(index) == meta.term, f"snapshot term at {index}")
        del self.entries[: index - self.base.index]
        self.base = meta
