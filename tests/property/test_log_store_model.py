"""The Raft log store against a list-per-group model (shared/STYLE.md §9).

Random ready cycles of random stages (a received snapshot among them), compactions
and destroys over a few groups, several to one batch (the same group more than once
too), written with and without sync, discarded now and then; snapshot records as
earlier versions wrote them are put beside the logs, to be deleted by the next base
move; the engine is flushed, compacted and reopened along the way. After every step
each group loads exactly as the model says, and holds a snapshot record exactly when
the model does.

The LSM runs with a 4 KiB memtable so that flushes happen within a few steps.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from atoll.engine import Engine, WriteBatch, open_engine
from atoll.multiraft.errors import LogCompacted
from atoll.multiraft.log_format import U64_MAX, RecordKind, encode_snapshot, record_key
from atoll.multiraft.log_store import LogStore
from atoll.raft.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    PersistedState,
    Ready,
    Snapshot,
    SnapshotMeta,
)

GROUPS = (1, 2, U64_MAX)
OPTIONS: dict[str, Any] = {"memtable_size_bytes": 4096, "background": "thread"}

TERMS = st.integers(0, 5)
DATA = st.one_of(
    st.binary(max_size=8),
    st.builds(lambda n, b: b * n, st.integers(200, 1500), st.binary(min_size=1, max_size=2)),
)
NODE_IDS = st.frozensets(st.integers(1, 5), max_size=3)


@dataclass
class GroupModel:
    hard_state: HardState | None = None
    base: SnapshotMeta | None = None  # None: no base record stored
    entries: list[Entry] = field(default_factory=list)
    old_snapshot: bool = False  # a snapshot record of an earlier version is stored

    @property
    def base_index(self) -> int:
        return self.base.index if self.base is not None else 0

    @property
    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.base_index

    def stored(self) -> bool:
        return bool(
            self.hard_state is not None
            or self.base is not None
            or self.entries
            or self.old_snapshot
        )

    def persisted(self) -> PersistedState:
        return PersistedState(
            self.hard_state or HardState(), self.base or SnapshotMeta(), tuple(self.entries)
        )

    def move_base(self, meta: SnapshotMeta, keep_suffix: bool = True) -> None:
        self.base = meta
        self.entries = [e for e in self.entries if keep_suffix and e.index > meta.index]
        self.old_snapshot = False


Models = dict[int, GroupModel]


def draw_meta(data: st.DataObject, lo: int, hi: int) -> SnapshotMeta:
    return SnapshotMeta(
        index=data.draw(st.integers(lo, hi)),
        term=data.draw(TERMS),
        conf=ConfState(data.draw(NODE_IDS), data.draw(NODE_IDS)),
    )


def draw_entries(data: st.DataObject, first: int) -> list[Entry]:
    count = data.draw(st.integers(1, 4))
    term = data.draw(TERMS)
    types = st.sampled_from(EntryType)
    return [Entry(term, i, data.draw(types), data.draw(DATA)) for i in range(first, first + count)]


def stage_one(data: st.DataObject, store: LogStore, batch: WriteBatch, models: Models) -> None:
    """Draws one operation on one group, stages it into `batch` and applies it to
    `models`."""
    group_id = data.draw(st.sampled_from(GROUPS))
    model = models[group_id]
    op = data.draw(st.sampled_from(["ready", "ready", "ready", "compact", "compact", "destroy"]))
    if op == "ready":
        ready = Ready()
        if data.draw(st.integers(0, 4)) == 0:
            meta = draw_meta(data, model.base_index, model.last_index + 3)
            ready.snapshot = Snapshot(meta, data.draw(DATA))
            model.move_base(meta, keep_suffix=False)  # a received snapshot replaces the log
        if data.draw(st.booleans()):
            first = data.draw(st.integers(model.base_index + 1, model.last_index + 1))
            ready.entries = draw_entries(data, first)
            model.entries = [e for e in model.entries if e.index < first] + ready.entries
        if data.draw(st.booleans()):
            ready.hard_state = HardState(data.draw(TERMS), data.draw(st.integers(0, 3)), 0)
            model.hard_state = ready.hard_state
        store.stage(batch, group_id, ready)
    elif op == "compact":
        meta = draw_meta(data, 0, model.last_index)
        store.compact(batch, group_id, meta)
        if meta.index > model.base_index:
            model.move_base(meta)
    else:
        store.destroy(batch, group_id)
        models[group_id] = GroupModel()


class LogStoreModel(RuleBasedStateMachine):
    """Drives a LogStore over an engine of `kind`, and the models, in lockstep."""

    kind = ""
    persistent = True

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix=f"atoll-logstore-{self.kind}-")
        self.path = f"{self.directory}/db"
        self.engine = self._open()
        self.store = LogStore(self.engine)
        self.models: Models = {g: GroupModel() for g in GROUPS}

    def _open(self) -> Engine:
        return open_engine(self.path, kind=self.kind, **(OPTIONS if self.kind == "lsm" else {}))

    def teardown(self) -> None:
        try:
            self.engine.close()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    @rule(data=st.data(), count=st.integers(1, 4), sync=st.booleans())
    def ready_cycle(self, data: st.DataObject, count: int, sync: bool) -> None:
        batch = WriteBatch()
        for _ in range(count):
            stage_one(data, self.store, batch, self.models)
        self.store.write(batch, sync=sync)

    @rule(data=st.data(), count=st.integers(1, 3))
    def discarded_cycle(self, data: st.DataObject, count: int) -> None:
        batch = WriteBatch()
        scratch = copy.deepcopy(self.models)
        for _ in range(count):
            stage_one(data, self.store, batch, scratch)
        self.store.discard(batch)

    @rule(data=st.data(), group_id=st.sampled_from(GROUPS))
    def put_old_snapshot_record(self, data: st.DataObject, group_id: int) -> None:
        """As an earlier version's `save_snapshot` left it (any metadata: it is never
        read, only deleted)."""
        meta = draw_meta(data, 0, 30)
        self.engine.put(*encode_snapshot(group_id, Snapshot(meta, data.draw(DATA))))
        self.models[group_id].old_snapshot = True

    @rule(group_id=st.sampled_from(GROUPS), lo=st.integers(0, 30), span=st.integers(0, 10))
    def read_entries(self, group_id: int, lo: int, span: int) -> None:
        model = self.models[group_id]
        if lo <= model.base_index and span > 0:
            try:
                self.store.entries(group_id, lo, lo + span)
            except LogCompacted:
                return
            raise AssertionError(f"entries from {lo} read below the base {model.base_index}")
        expected = [e for e in model.entries if lo <= e.index < lo + span]
        assert self.store.entries(group_id, lo, lo + span) == expected

    @rule()
    def flush_and_compact_engine(self) -> None:
        self.engine.flush()
        self.engine.compact_range()

    @precondition(lambda self: self.persistent)
    @rule()
    def reopen(self) -> None:
        self.engine.close()
        self.engine = self._open()
        self.store = LogStore(self.engine)

    @invariant()
    def groups_load_as_modelled(self) -> None:
        for group_id, model in self.models.items():
            assert self.store.load(group_id) == model.persisted(), group_id
            stored = self.engine.get(record_key(group_id, RecordKind.SNAPSHOT)) is not None
            assert stored == model.old_snapshot, group_id
        assert self.store.groups() == [g for g in GROUPS if self.models[g].stored()]


class MemoryLogStoreModel(LogStoreModel):
    kind = "memory"
    persistent = False  # nothing survives close, by design


class LsmLogStoreModel(LogStoreModel):
    kind = "lsm"


class LmdbLogStoreModel(LogStoreModel):
    kind = "lmdb"


MODEL_SETTINGS = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TestMemoryLogStoreModel = MemoryLogStoreModel.TestCase
TestMemoryLogStoreModel.settings = MODEL_SETTINGS
TestLsmLogStoreModel = LsmLogStoreModel.TestCase
TestLsmLogStoreModel.settings = MODEL_SETTINGS
TestLmdbLogStoreModel = LmdbLogStoreModel.TestCase
TestLmdbLogStoreModel.settings = MODEL_SETTINGS
