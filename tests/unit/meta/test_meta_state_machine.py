"""The meta state machine over real engines (src/atoll/meta/state_machine.py): the
host contract (stage, write, batch_written), replay after a reopen, snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest

from atoll.engine import WriteBatch, open_engine
from atoll.meta.cluster_map import ClusterMap, Credentials, PoolRecord
from atoll.meta.commands import Bootstrap, RegisterDevice, RegisterNode, encode_command
from atoll.meta.errors import MapFormatError
from atoll.meta.state_machine import MetaStateMachine

BOOT = Bootstrap(
    "c1", 1, Credentials("a", "s"), (PoolRecord(0, "standard", 1, 0, 4, "host", "STANDARD"),), (1,)
)
ENTRIES = [
    encode_command(BOOT),
    b"",  # a leader's empty entry
    encode_command(RegisterNode(1, "127.0.0.1:1", "", "", "", True)),
    encode_command(RegisterDevice(1, "/d0", 1 << 30)),
]


@pytest.mark.parametrize("kind", ["lmdb", "lsm"])
def test_apply_write_reopen_and_replay(tmp_path: Path, kind: str) -> None:
    engine = open_engine(str(tmp_path / "e"), kind=kind)
    sm = MetaStateMachine(engine, 0)
    batch = WriteBatch()
    results = [sm.apply(i, data, batch) for i, data in enumerate(ENTRIES, start=1)]
    assert results[1] is None and all(r is not None and r.ok for r in (results[0], *results[2:]))
    assert sm.current == ClusterMap() and sm.applied_index() == 4  # staged, not yet current
    engine.write(batch, sync=True)
    sm.batch_written()
    m = sm.current
    assert (m.cluster_id, m.epoch, sorted(m.devices)) == ("c1", 3, [1])
    engine.close()

    engine = open_engine(str(tmp_path / "e"), kind=kind)
    again = MetaStateMachine(engine, 0)
    assert again.current == m and again.applied_index() == 4
    # The host replays the log from the start after a crash: nothing changes.
    batch = WriteBatch()
    assert [again.apply(i, d, batch) for i, d in enumerate(ENTRIES, start=1)] == [None] * 4
    engine.close()


def test_discarded_batch_is_forgotten(tmp_path: Path) -> None:
    engine = open_engine(str(tmp_path / "e"), kind="lmdb")
    sm = MetaStateMachine(engine, 0)
    sm.apply(1, ENTRIES[0], WriteBatch())
    sm.batch_discarded()
    assert sm.applied_index() == 0 and sm.current == ClusterMap()
    result = sm.apply(1, ENTRIES[0], WriteBatch())
    assert result is not None and result.ok
    engine.close()


def test_snapshot_restores_into_another_engine(tmp_path: Path) -> None:
    source = open_engine(str(tmp_path / "a"), kind="lmdb")
    sm = MetaStateMachine(source, 0)
    batch = WriteBatch()
    for i, data in enumerate(ENTRIES, start=1):
        sm.apply(i, data, batch)
    source.write(batch, sync=True)
    sm.batch_written()
    with source.snapshot() as view:
        data = sm.snapshot_data(view)
    target = open_engine(str(tmp_path / "b"), kind="lmdb")
    other = MetaStateMachine(target, 0)
    other.restore(data)
    assert other.current == sm.current and other.applied_index() == 4
    assert MetaStateMachine(target, 0).current == sm.current  # written through
    with pytest.raises(MapFormatError):
        other.restore(data[:8] + b"\xff" + data[9:])
    source.close()
    target.close()
