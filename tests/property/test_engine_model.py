"""Each engine kind against a dict model, over random puts, deletes, batches with range
deletes, reads, scans, snapshots, flushes, compactions and reopens (shared/STYLE.md §9).

The key alphabet is small so that overwrites and deletes hit existing keys, and the
LSM runs with a 4 KiB memtable (every kind gets the same options) so that flushes and
compactions happen within a few steps; some values are large to force them.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from atoll.engine import Engine, Snapshot, WriteBatch, open_engine

Model = dict[bytes, bytes]

OPTIONS: dict[str, Any] = {"memtable_size_bytes": 4096}

KEYS = st.one_of(
    st.sampled_from([b"", b"\x00", b"a", b"a\x00", b"ab", b"b", b"ba", b"bb", b"c", b"\xff"]),
    st.binary(max_size=3),
)
VALUES = st.one_of(
    st.binary(max_size=12),
    st.builds(lambda n, b: b * n, st.integers(200, 3000), st.binary(min_size=1, max_size=2)),
)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), KEYS, VALUES),
        st.tuples(st.just("delete"), KEYS, st.just(b"")),
        st.tuples(st.just("delete_range"), KEYS, KEYS),
    ),
    max_size=8,
)
ENDS = st.one_of(st.none(), KEYS)


def model_scan(
    model: Model, start: bytes, end: bytes | None, reverse: bool
) -> list[tuple[bytes, bytes]]:
    items = sorted((k, v) for k, v in model.items() if k >= start and (end is None or k < end))
    return items[::-1] if reverse else items


class EngineModel(RuleBasedStateMachine):
    """Drives one engine of `kind` and a dict in lockstep; subclasses pick the kind."""

    kind = ""
    persistent = True

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix=f"atoll-model-{self.kind}-")
        self.path = f"{self.directory}/db"
        self.engine: Engine = open_engine(self.path, kind=self.kind, **OPTIONS)
        self.model: Model = {}
        self.snapshots: list[tuple[Snapshot, Model]] = []

    def teardown(self) -> None:
        try:
            for snapshot, _ in self.snapshots:
                snapshot.close()
            self.engine.close()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- writes --------------------------------------------------------------------

    @rule(key=KEYS, value=VALUES, sync=st.booleans())
    def put(self, key: bytes, value: bytes, sync: bool) -> None:
        self.engine.put(key, value, sync=sync)
        self.model[key] = value

    @rule(key=KEYS)
    def delete(self, key: bytes) -> None:
        self.engine.delete(key)
        self.model.pop(key, None)

    @rule(ops=OPS, sync=st.booleans())
    def write_batch(self, ops: list[tuple[str, bytes, bytes]], sync: bool) -> None:
        batch = WriteBatch()
        for name, key, value in ops:
            if name == "put":
                batch.put(key, value)
                self.model[key] = value
            elif name == "delete":
                batch.delete(key)
                self.model.pop(key, None)
            else:
                batch.delete_range(key, value)
                for doomed in [k for k in self.model if key <= k < value]:
                    del self.model[doomed]
        self.engine.write(batch, sync=sync)

    # -- reads -----------------------------------------------------------------------

    @rule(key=KEYS)
    def get(self, key: bytes) -> None:
        assert self.engine.get(key) == self.model.get(key)

    @rule(start=KEYS, end=ENDS, reverse=st.booleans())
    def scan(self, start: bytes, end: bytes | None, reverse: bool) -> None:
        expected = model_scan(self.model, start, end, reverse)
        assert list(self.engine.scan(start, end, reverse)) == expected

    @rule(key=KEYS, value=VALUES, reverse=st.booleans())
    def scan_while_writing(self, key: bytes, value: bytes, reverse: bool) -> None:
        """An iterator keeps the state of its `scan()` call across later writes."""
        expected = model_scan(self.model, b"", None, reverse)
        iterator = self.engine.scan(reverse=reverse)
        head = [item for _, item in zip(range(2), iterator, strict=False)]
        self.put(key, value, sync=False)
        self.write_batch([("delete_range", b"a", b"b")], sync=False)
        assert head + list(iterator) == expected

    # -- snapshots -----------------------------------------------------------------

    @precondition(lambda self: len(self.snapshots) < 4)
    @rule()
    def take_snapshot(self) -> None:
        self.snapshots.append((self.engine.snapshot(), dict(self.model)))

    @precondition(lambda self: self.snapshots)
    @rule(index=st.integers(0, 3), key=KEYS, start=KEYS, end=ENDS, reverse=st.booleans())
    def check_snapshot(
        self, index: int, key: bytes, start: bytes, end: bytes | None, reverse: bool
    ) -> None:
        snapshot, frozen = self.snapshots[index % len(self.snapshots)]
        assert snapshot.get(key) == frozen.get(key)
        assert list(snapshot.scan(start, end, reverse)) == model_scan(frozen, start, end, reverse)
        assert list(snapshot.scan()) == model_scan(frozen, b"", None, False)

    @precondition(lambda self: self.snapshots)
    @rule(index=st.integers(0, 3))
    def release_snapshot(self, index: int) -> None:
        snapshot, _ = self.snapshots.pop(index % len(self.snapshots))
        snapshot.close()

    # -- maintenance and lifecycle --------------------------------------------------

    @rule()
    def flush(self) -> None:
        self.engine.flush()

    @rule(start=st.one_of(st.none(), KEYS), end=ENDS)
    def compact_range(self, start: bytes | None, end: bytes | None) -> None:
        self.engine.compact_range(start, end)

    @precondition(lambda self: self.persistent)
    @rule()
    def reopen(self) -> None:
        for snapshot, _ in self.snapshots:
            snapshot.close()
        self.snapshots.clear()
        self.engine.close()
        self.engine = open_engine(self.path, kind=self.kind, **OPTIONS)

    @invariant()
    def contents_match(self) -> None:
        assert list(self.engine.scan()) == model_scan(self.model, b"", None, False)


class MemoryModel(EngineModel):
    kind = "memory"
    persistent = False  # nothing survives close, by design


class LmdbModel(EngineModel):
    kind = "lmdb"


class LsmModel(EngineModel):
    kind = "lsm"


MODEL_SETTINGS = settings(
    max_examples=40,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TestMemoryModel = MemoryModel.TestCase
TestMemoryModel.settings = MODEL_SETTINGS
TestLmdbModel = LmdbModel.TestCase
TestLmdbModel.settings = MODEL_SETTINGS
TestLsmModel = LsmModel.TestCase
TestLsmModel.settings = MODEL_SETTINGS
