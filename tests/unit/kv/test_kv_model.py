"""KvStateMachine against a dict model (shared/STYLE.md §9), on the memory and LSM
engines: random puts, deletes, range deletes, transactions and no-ops applied in
batches that are written or lost (a crash), log replays, history compactions,
reopens and snapshot round trips; after every step the region's gets, scans, events
and metadata must equal the model's.

The model is written from the semantics in src/atoll/kv/state_machine.py and
docs/formats/kv.md, not from the code: plain dicts and lists, no overlay, no engine.
Key alphabet and numbers are small so that compares, overwrites and deletes hit.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from atoll.engine import Engine, WriteBatch, open_engine
from atoll.kv import (
    Compacted,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    DeleteRange,
    DeleteRangeResult,
    DeleteResult,
    Event,
    EventKind,
    Get,
    GetResult,
    KeyMeta,
    KeyValue,
    KvStateMachine,
    Noop,
    NoopResult,
    Put,
    PutResult,
    Skipped,
    Txn,
    TxnResult,
    decode,
    encode,
)
from atoll.kv.command import Command, TxnOp
from atoll.kv.results import ApplyResult, OpResult

REGION = 3
LSM_OPTIONS = {"memtable_size_bytes": 4096, "background": "thread"}

KEYS = st.sampled_from([b"", b"a", b"a/1", b"a/2", b"b", b"ba", b"c", b"\xff"])
PREFIXES = st.sampled_from([b"", b"a", b"a/", b"b", b"z"])
VALUES = st.one_of(
    st.sampled_from([b"", b"x", b"y"]),
    st.binary(max_size=6),
    st.binary(min_size=1, max_size=2).map(lambda b: b * 700),  # pushes the LSM to flush
)
EQUALITY = st.sampled_from([CompareOp.EQUAL, CompareOp.NOT_EQUAL])
COMPARES = st.one_of(
    st.builds(Compare.value, KEYS, EQUALITY, VALUES),
    st.builds(Compare.version, KEYS, st.sampled_from(CompareOp), st.integers(0, 4)),
    st.builds(Compare.mod_revision, KEYS, st.sampled_from(CompareOp), st.integers(0, 40)),
    st.builds(
        lambda k, op, flag: Compare(k, CompareTarget.EXISTS, op, flag),
        KEYS,
        EQUALITY,
        st.booleans(),
    ),
)
WRITES = st.one_of(
    st.builds(Put, KEYS, VALUES),
    st.builds(Delete, KEYS),
    st.builds(DeleteRange, KEYS, st.none() | KEYS),
)
TXN_OPS = st.one_of(WRITES, st.builds(Get, KEYS))
COMMANDS = st.one_of(
    WRITES,
    WRITES,
    st.builds(
        Txn,
        st.lists(COMPARES, max_size=3),
        st.lists(TXN_OPS, max_size=3),
        st.lists(TXN_OPS, max_size=3),
    ),
    st.just(Noop()),
)
# b"" is an entry that is not a KV command (a leader's empty entry).
ENTRIES = st.lists(st.one_of(COMMANDS.map(encode), st.just(b"")), min_size=1, max_size=6)


@dataclass
class Model:
    """The region as plain data: key -> (value, meta), the event list, the counters."""

    data: dict[bytes, tuple[bytes, KeyMeta]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    applied_index: int = 0
    revision: int = 0
    compact_revision: int = 0

    def apply(self, index: int, entry: bytes) -> ApplyResult:
        if index <= self.applied_index:
            return Skipped(index)
        changes_before = len(self.events)
        command: Command = decode(entry) if entry else Noop()
        result = self._command(index, command)
        self.applied_index = index
        if len(self.events) > changes_before:
            self.revision = index
        return result

    def _command(self, index: int, command: Command) -> ApplyResult:
        if isinstance(command, Noop):
            return NoopResult()
        if isinstance(command, Txn):
            ok = all(self._holds(c) for c in command.compares)
            ops = command.success if ok else command.failure
            return TxnResult(ok, tuple(self._op(index, op) for op in ops))
        result = self._op(index, command)
        assert not isinstance(result, GetResult)  # a Get is never a command of its own
        return result

    def _op(self, index: int, op: TxnOp) -> OpResult:
        if isinstance(op, Get):
            found = self.data.get(op.key)
            return GetResult(None, None) if found is None else GetResult(*found)
        if isinstance(op, Put):
            old = self.data.get(op.key)
            if old is None:
                meta, prev = KeyMeta(index, index, 1), 0
            else:
                meta, prev = (
                    KeyMeta(old[1].create_revision, index, old[1].version + 1),
                    old[1].mod_revision,
                )
            self.data[op.key] = (op.value, meta)
            self._event(index, EventKind.PUT, op.key, op.value, meta)
            return PutResult(prev, old)
        if isinstance(op, Delete):
            before = self.data.get(op.key)
            return DeleteResult(self._delete(index, op.key), before)
        doomed = sorted(k for k in self.data if k >= op.start and (op.end is None or k < op.end))
        for key in doomed:
            self._delete(index, key)
        return DeleteRangeResult(len(doomed))

    def _delete(self, index: int, key: bytes) -> bool:
        if self.data.pop(key, None) is None:
            return False
        self._event(index, EventKind.DELETE, key, b"", KeyMeta(0, index, 0))
        return True

    def _event(self, index: int, kind: EventKind, key: bytes, value: bytes, meta: KeyMeta) -> None:
        sequence = sum(1 for e in self.events if e.revision == index)
        self.events.append(Event(index, sequence, kind, key, value, meta))

    def _holds(self, c: Compare) -> bool:
        found = self.data.get(c.key)
        equal_wanted = c.op is CompareOp.EQUAL
        if c.target is CompareTarget.VALUE:
            return (found is not None and found[0] == c.operand) == equal_wanted
        if c.target is CompareTarget.EXISTS:
            return ((found is not None) == c.operand) == equal_wanted
        meta = found[1] if found else KeyMeta(0, 0, 0)
        actual = meta.version if c.target is CompareTarget.VERSION else meta.mod_revision
        assert isinstance(c.operand, int)
        return {
            CompareOp.EQUAL: actual == c.operand,
            CompareOp.NOT_EQUAL: actual != c.operand,
            CompareOp.GREATER: actual > c.operand,
            CompareOp.LESS: actual < c.operand,
        }[c.op]

    def compact(self, revision: int) -> None:
        if revision > self.compact_revision:
            self.compact_revision = revision
            self.events = [e for e in self.events if e.revision >= revision]

    def scan(self, start: bytes, end: bytes | None, limit: int, reverse: bool) -> list[KeyValue]:
        found = [
            KeyValue(k, v, m)
            for k, (v, m) in sorted(self.data.items())
            if k >= start and (end is None or k < end)
        ]
        return (found[::-1] if reverse else found)[:limit]

    def query(self, revision: int, sequence: int, prefix: bytes, limit: int) -> list[Event]:
        if revision < self.compact_revision:
            raise Compacted(compact_revision=self.compact_revision, requested_revision=revision)
        return [
            e
            for e in self.events
            if (e.revision, e.sequence) >= (revision, sequence) and e.key.startswith(prefix)
        ][:limit]


class KvModel(RuleBasedStateMachine):
    """One region on an engine of `kind`, driven in lockstep with a `Model`."""

    kind = ""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix=f"atoll-kv-model-{self.kind}-")
        self.engine = self._open()
        self.sm = KvStateMachine(self.engine, REGION)
        self.model = Model()  # the written state
        self.log: list[bytes] = []  # committed entries; entry i is at index i + 1
        self.first_results: dict[int, ApplyResult] = {}

    def _open(self) -> Engine:
        options = LSM_OPTIONS if self.kind == "lsm" else {}
        return open_engine(f"{self.directory}/db", kind=self.kind, **options)

    def teardown(self) -> None:
        try:
            self.engine.close()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- writes --------------------------------------------------------------------

    @rule(entries=ENTRIES, written=st.sampled_from([True, True, True, False]))
    def commit_and_apply(self, entries: list[bytes], written: bool) -> None:
        """Commit `entries` to the log, then apply every entry past the applied index
        (earlier lost ones first) into one batch, and write it or lose it."""
        self.log += entries
        pending = copy.deepcopy(self.model)
        batch = WriteBatch()
        for index in range(self.model.applied_index + 1, len(self.log) + 1):
            result = self.sm.apply(index, self.log[index - 1], batch)
            assert result == pending.apply(index, self.log[index - 1])
            # Applying is deterministic: a replay answers as the first apply did.
            assert self.first_results.setdefault(index, result) == result
        if written:
            self.engine.write(batch)
            self.sm.batch_written()
            self.model = pending
        else:
            self.sm.batch_discarded()

    @precondition(lambda self: self.model.applied_index > 0)
    @rule(data=st.data())
    def replay_applied(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(1, self.model.applied_index))
        batch = WriteBatch()
        assert self.sm.apply(index, self.log[index - 1], batch) == Skipped(index)
        assert len(batch) == 0

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        revision = data.draw(st.integers(1, self.model.applied_index + 1))
        self.sm.compact_history(revision)
        self.model.compact(revision)

    @rule()
    def crash(self) -> None:
        """A new process over the same data (the memory engine cannot reopen, so it
        only gets a new state machine)."""
        if self.kind != "memory":
            self.engine.close()
            self.engine = self._open()
        self.sm = KvStateMachine(self.engine, REGION)

    @rule(chunk_bytes=st.sampled_from([1, 100, 5000, None]))
    def snapshot_round_trip(self, chunk_bytes: int | None) -> None:
        """Ship the region to a fresh engine, as chunks or (None) in one piece."""
        with self.engine.snapshot() as snapshot:
            if chunk_bytes is None:
                shipped: list[bytes] | bytes = self.sm.snapshot_data(snapshot)
            else:
                shipped = list(self.sm.snapshot_chunks(snapshot, chunk_bytes))
        target_engine = open_engine("", kind="memory")
        try:
            target = KvStateMachine(target_engine, REGION)
            target.restore(shipped)
            assert target.applied_index() == self.model.applied_index
            assert target.scan() == self.sm.scan()
            assert target.revision() == self.model.revision
            assert target.compact_revision() == self.model.applied_index + 1
        finally:
            target_engine.close()

    # -- reads -----------------------------------------------------------------------

    @rule(key=KEYS)
    def get(self, key: bytes) -> None:
        assert self.sm.get(key) == self.model.data.get(key)

    @rule(
        start=KEYS,
        end=st.none() | KEYS,
        limit=st.sampled_from([1, 2, 5, 10_000]),
        reverse=st.booleans(),
    )
    def scan(self, start: bytes, end: bytes | None, limit: int, reverse: bool) -> None:
        assert self.sm.scan(start, end, limit, reverse) == self.model.scan(
            start, end, limit, reverse
        )

    @rule(
        revision=st.integers(1, 45),
        sequence=st.integers(0, 3),
        prefix=PREFIXES,
        limit=st.sampled_from([1, 3, 10_000]),
    )
    def events(self, revision: int, sequence: int, prefix: bytes, limit: int) -> None:
        try:
            expected = self.model.query(revision, sequence, prefix, limit)
        except Compacted as err:
            with pytest.raises(Compacted) as caught:
                self.sm.events(revision, prefix, limit, sequence)
            assert caught.value.compact_revision == err.compact_revision
        else:
            assert self.sm.events(revision, prefix, limit, sequence) == expected

    @invariant()
    def metadata_matches(self) -> None:
        assert self.sm.applied_index() == self.model.applied_index
        assert self.sm.revision() == self.model.revision
        assert self.sm.compact_revision() == self.model.compact_revision
        assert not self.sm.restore_pending()


MODEL_SETTINGS = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class MemoryKvModel(KvModel):
    kind = "memory"


class LsmKvModel(KvModel):
    kind = "lsm"


TestMemoryKvModel = MemoryKvModel.TestCase
TestMemoryKvModel.settings = MODEL_SETTINGS
# A few seconds: real files, flushes and compactions in every example.
TestLsmKvModel = pytest.mark.slow(LsmKvModel.TestCase)
TestLsmKvModel.settings = settings(MODEL_SETTINGS, max_examples=30)
