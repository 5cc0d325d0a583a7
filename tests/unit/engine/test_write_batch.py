"""WriteBatch behaviour, and the TypeError every engine kind raises for non-bytes keys,
values and bounds (`atoll.engine.api`)."""

from __future__ import annotations

from typing import Any

import pytest

from atoll.engine import Engine, WriteBatch
from atoll.engine.api import OP_DELETE, OP_DELETE_RANGE, OP_PUT

# Look like bytes, or are common mistakes; all must be refused.
NOT_BYTES: list[Any] = ["key", bytearray(b"key"), memoryview(b"key"), None, 7]
NOT_BYTES_IDS = ["str", "bytearray", "memoryview", "None", "int"]
# `end` of a scan may be None (unbounded); everything else must still be refused.
NOT_BYTES_OR_NONE = [bad for bad in NOT_BYTES if bad is not None]
NOT_BYTES_OR_NONE_IDS = [i for i in NOT_BYTES_IDS if i != "None"]


class TestWriteBatch:
    def test_new_batch_is_empty(self) -> None:
        batch = WriteBatch()
        assert len(batch) == 0
        assert batch.ops == []
        assert batch.size_bytes == 0

    def test_ops_are_recorded_in_order_as_tuples(self) -> None:
        batch = WriteBatch()
        batch.put(b"k1", b"v1")
        batch.delete(b"k2")
        batch.delete_range(b"a", b"m")
        batch.put(b"", b"")
        assert batch.ops == [
            (OP_PUT, b"k1", b"v1"),
            (OP_DELETE, b"k2", b""),
            (OP_DELETE_RANGE, b"a", b"m"),
            (OP_PUT, b"", b""),
        ]
        assert len(batch) == 4

    def test_op_codes_are_permanent(self) -> None:
        # Written to the WAL (docs/formats.md): these numbers never change.
        assert (OP_DELETE, OP_PUT, OP_DELETE_RANGE) == (0, 1, 2)

    def test_methods_chain(self) -> None:
        batch = WriteBatch()
        assert batch.put(b"a", b"1").delete(b"b").delete_range(b"c", b"d") is batch
        assert len(batch) == 3

    def test_size_bytes_counts_keys_and_values(self) -> None:
        batch = WriteBatch().put(b"abc", b"12345").delete(b"xy").delete_range(b"a", b"bcd")
        assert batch.size_bytes == (3 + 5) + 2 + (1 + 3)

    def test_clear_empties_the_batch(self) -> None:
        batch = WriteBatch().put(b"a", b"1").delete(b"b")
        batch.clear()
        assert len(batch) == 0
        assert batch.ops == []
        assert batch.size_bytes == 0
        batch.put(b"c", b"3")
        assert batch.ops == [(OP_PUT, b"c", b"3")]

    def test_inverted_and_empty_ranges_are_recorded(self) -> None:
        # Recording is not judging: the engine treats them as no-ops.
        batch = WriteBatch().delete_range(b"z", b"a").delete_range(b"m", b"m")
        assert batch.ops == [(OP_DELETE_RANGE, b"z", b"a"), (OP_DELETE_RANGE, b"m", b"m")]

    def test_large_values_are_kept_by_reference(self) -> None:
        value = b"v" * (1 << 20)
        batch = WriteBatch().put(b"big", value)
        assert batch.ops[0][2] is value

    @pytest.mark.parametrize("bad", NOT_BYTES, ids=NOT_BYTES_IDS)
    def test_put_rejects_non_bytes_key(self, bad: Any) -> None:
        batch = WriteBatch()
        with pytest.raises(TypeError, match="key"):
            batch.put(bad, b"v")
        assert len(batch) == 0 and batch.size_bytes == 0

    @pytest.mark.parametrize("bad", NOT_BYTES, ids=NOT_BYTES_IDS)
    def test_put_rejects_non_bytes_value(self, bad: Any) -> None:
        batch = WriteBatch()
        with pytest.raises(TypeError, match="value"):
            batch.put(b"k", bad)
        assert len(batch) == 0 and batch.size_bytes == 0

    @pytest.mark.parametrize("bad", NOT_BYTES, ids=NOT_BYTES_IDS)
    def test_delete_rejects_non_bytes_key(self, bad: Any) -> None:
        batch = WriteBatch()
        with pytest.raises(TypeError, match="key"):
            batch.delete(bad)
        assert len(batch) == 0

    @pytest.mark.parametrize("bad", NOT_BYTES, ids=NOT_BYTES_IDS)
    def test_delete_range_rejects_non_bytes_bounds(self, bad: Any) -> None:
        batch = WriteBatch()
        with pytest.raises(TypeError, match="start"):
            batch.delete_range(bad, b"z")
        with pytest.raises(TypeError, match="end"):
            batch.delete_range(b"a", bad)
        assert len(batch) == 0

    def test_bytes_subclass_is_rejected(self) -> None:
        class MyBytes(bytes):
            pass

        with pytest.raises(TypeError):
            WriteBatch().put(MyBytes(b"k"), b"v")


class TestEngineRejectsNonBytes:
    """Every kind refuses non-bytes arguments with TypeError and stays unchanged."""

    @pytest.fixture(autouse=True)
    def _seed(self, db: Engine) -> None:
        db.put(b"k", b"v")

    @staticmethod
    def _unchanged(db: Engine) -> None:
        assert list(db.scan()) == [(b"k", b"v")]

    @pytest.mark.parametrize("bad", NOT_BYTES, ids=NOT_BYTES_IDS)
    def test_put(self, db: Engine, bad: Any) -> None:
        with pytest.raises(TypeError):
            db.put(bad, b"v")
        with pytest.raises(TypeError):
            db.put(b"k", bad)
        self._unchanged(db)

    @pytest.mark.parametrize("bad", NOT_BYTES, ids=NOT_BYTES_IDS)
    def test_delete(self, db: Engine, bad: Any) -> None:
        with pytest.raises(TypeError):
            db.delete(bad)
        self._unchanged(db)

    @pytest.mark.parametrize("bad", NOT_BYTES, ids=NOT_BYTES_IDS)
    def test_get(self, db: Engine, bad: Any) -> None:
        with pytest.raises(TypeError):
            db.get(bad)

    @pytest.mark.parametrize("bad", NOT_BYTES, ids=NOT_BYTES_IDS)
    def test_scan_start(self, db: Engine, bad: Any) -> None:
        # list(): the check may come at the call or at the first step.
        with pytest.raises(TypeError):
            list(db.scan(bad))
        with pytest.raises(TypeError):
            list(db.scan(bad, None, True))

    @pytest.mark.parametrize("bad", NOT_BYTES_OR_NONE, ids=NOT_BYTES_OR_NONE_IDS)
    def test_scan_end(self, db: Engine, bad: Any) -> None:
        with pytest.raises(TypeError):
            list(db.scan(b"", bad))
        with pytest.raises(TypeError):
            list(db.scan(b"", bad, True))

    @pytest.mark.parametrize("bad", NOT_BYTES, ids=NOT_BYTES_IDS)
    def test_snapshot_get_and_scan(self, db: Engine, bad: Any) -> None:
        with db.snapshot() as snap:
            with pytest.raises(TypeError):
                snap.get(bad)
            with pytest.raises(TypeError):
                list(snap.scan(bad))
            if bad is not None:
                with pytest.raises(TypeError):
                    list(snap.scan(b"", bad))
            assert snap.get(b"k") == b"v"

    def test_batch_keeps_only_accepted_ops(self, db: Engine) -> None:
        batch = WriteBatch().put(b"a", b"1")
        with pytest.raises(TypeError):
            batch.put(b"b", "2")  # type: ignore[arg-type]
        db.write(batch)
        assert list(db.scan()) == [(b"a", b"1"), (b"k", b"v")]
