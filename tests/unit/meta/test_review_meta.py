"""Review findings on the cluster map's commands, state machine and service (issue 4 §1).
Each test shows one defect; it fails until the defect is fixed."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from atoll.engine import WriteBatch, open_engine
from atoll.meta import commands as commands_module
from atoll.meta.cluster_map import (
    NODE_DRAINING,
    ClusterMap,
    Credentials,
    PoolRecord,
    canonical_json,
    placement_devices,
)
from atoll.meta.commands import (
    COMMAND_MAGIC,
    Bootstrap,
    RegisterDevice,
    RegisterNode,
    SetNodeState,
    _envelope,
    apply_command,
    decode_command,
    decode_map,
    encode_command,
    encode_map,
)
from atoll.meta.errors import MapFormatError
from atoll.meta.service import META_GROUP_ID, MetaConfig, MetaService
from atoll.meta.state_machine import MetaStateMachine
from atoll.multiraft.host import HostConfig, RaftHost
from atoll.raft import ConfState

BOOT = Bootstrap(
    "c1", 1, Credentials("a", "s"), (PoolRecord(0, "standard", 1, 0, 4, "host", "STANDARD"),), (1,)
)


def booted() -> ClusterMap:
    m, _ = apply_command(ClusterMap(), BOOT)
    for node in (1, 2):
        m, _ = apply_command(m, RegisterNode(node, f"127.0.0.1:{node}", "", "", "", node == 1))
        m, _ = apply_command(m, RegisterDevice(node, "/d0", 1 << 30))
    return m


# -- 1. meta.admin accepts commands whose fields have the wrong JSON types -------------


@pytest.mark.parametrize(
    "body",
    [
        # unhashable ids: apply_command raises TypeError on every replica
        {"kind": "set_node_state", "node_id": [1], "state": "down", "expect": ""},
        {"kind": "set_device_state", "device_id": {"x": 1}, "state": "failed"},
        {"kind": "create_bucket", "name": ["b"], "pool": "standard", "owner": "o", "created_ms": 1},
        {"kind": "delete_bucket", "name": ["b"]},
        # accepted and stored, but the map it makes can never be decoded again
        {"kind": "create_bucket", "name": "b", "pool": "standard", "owner": "o", "created_ms": "x"},
    ],
)
def test_commands_with_wrongly_typed_fields_are_refused_at_decode(body: dict[str, Any]) -> None:
    """`_admin` decodes an operator's bytes and proposes them as they are. The generic
    `cls(**body)` in `decode_command` coerces nothing, so a command with a list where an
    int or str belongs is committed; applying it raises TypeError in every replica's
    apply thread (or stores a map `decode_map` rejects): the meta group stops on every
    member, and again on every restart as the entry is replayed."""
    data = _envelope(COMMAND_MAGIC, canonical_json(body))
    try:
        command = decode_command(data)
    except MapFormatError:
        return  # refused before it reaches Raft: the fix
    # Accepted: this is what every replica would do with it once committed.
    try:
        m, _ = apply_command(booted(), command)
        decode_map(encode_map(m))
    except (TypeError, MapFormatError) as err:
        pytest.fail(f"{command!r} decodes, and once committed breaks every replica: {err!r}")
    pytest.fail(f"{command!r} decodes with wrongly typed fields")


# -- 2. a committed map may be too large to be read back ------------------------------


def test_a_map_the_state_machine_stores_can_be_loaded_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`decode_map` refuses bodies over BODY_BYTES_MAX (64 MiB) but `encode_map` and
    `apply` never check it: a map grown past the limit (large PG tables: a 65,536-PG
    32-wide pool is ~10 MiB of JSON, and `CreatePool` accepts several) is committed and
    written, then cannot be loaded on restart, restored from a snapshot, or read from
    the watch stream. Shown with the limit lowered to 2 KiB."""
    monkeypatch.setattr(commands_module, "BODY_BYTES_MAX", 2048)
    engine = open_engine(str(tmp_path / "e"), kind="lmdb")
    sm = MetaStateMachine(engine, 0)
    batch = WriteBatch()
    entries = [encode_command(BOOT)] + [
        encode_command(RegisterNode(i, f"10.0.0.{i}:7000", "", "zone-a", "rack-1", False))
        for i in range(1, 40)
    ]
    for index, data in enumerate(entries, start=1):
        sm.apply(index, data, batch)
    engine.write(batch, sync=True)
    sm.batch_written()
    engine.close()
    engine = open_engine(str(tmp_path / "e"), kind="lmdb")
    try:
        MetaStateMachine(engine, 0)  # a restart: raises MapFormatError today
    finally:
        engine.close()


# -- 3. a joiner may take over a member's record --------------------------------------


def test_a_node_id_collision_does_not_rewrite_a_member() -> None:
    """`_register_node` overwrites whatever record has the id: a misconfigured joiner
    with node_id = 1 replaces member 1's rpc address and clears its `member` flag (the
    real member's next join flips it back: the record flaps). A member's record should
    only be rewritten by a RegisterNode with member=True (or by an operator)."""
    m = booted()
    assert m.nodes[1].member
    m2, result = apply_command(m, RegisterNode(1, "10.9.9.9:7000", "", "", "", False))
    assert not result.ok, f"node 1 rewritten: {m2.nodes[1]}"


# -- 4. draining changes nothing ------------------------------------------------------


def test_a_draining_node_gives_up_its_shards() -> None:
    """`in_service` only excludes nodes that are `out`, so a node set to `draining` (an
    operator asking for its data to be moved off) keeps all its PGs and keeps taking
    new ones: the state has no effect at all on placement."""
    m = booted()
    m, result = apply_command(m, SetNodeState(2, NODE_DRAINING))
    assert result.ok
    assert all(d.node_id != 2 for d in placement_devices(m))


# -- 5. the watch stream can sit on a new map for watch_keepalive_s --------------------


def test_watch_sends_a_map_applied_while_the_previous_one_was_being_sent(
    tmp_path: Path,
) -> None:
    """`_watch_stream` used to read `self.map`, yield it, and only then take
    `sm.applied_index()` as the index to wait past. A map applied while the consumer
    held the previous one (the yield is a suspension point; the host also applies on
    its executor thread, so `applied_index()` can even be a pending index whose map is
    not yet current) was counted as already seen: the watcher got it only after
    `watch_keepalive_s` or the next change. Here with a real single-node Raft host and
    the real meta state machine."""

    async def body() -> None:
        engine = open_engine(str(tmp_path / "e"), kind="lmdb")
        host = RaftHost(
            HostConfig(node_id=1, tick_interval_s=0.01, election_timeout_ticks=5),
            engine,
            {1: "127.0.0.1:1"},
            random.Random(1),
        )
        sm = MetaStateMachine(engine, META_GROUP_ID)
        host.add_group(META_GROUP_ID, sm, ConfState(frozenset({1})))
        await host.start()
        service = MetaService(
            host, sm, {1: "127.0.0.1:1"}, MetaConfig(watch_keepalive_s=30.0), clock=lambda: 0.0
        )
        try:
            # The new leader's empty entry applied: this node leads.
            await asyncio.wait_for(host.wait_applied(META_GROUP_ID, 0), 10.0)
            await service.propose(BOOT)
            stream = service._watch_stream(0)
            _, first = await anext(stream)
            assert first is not None and decode_map(bytes(first)).epoch == 1
            # Applied while the first map was on its way to the watcher.
            await service.propose(RegisterNode(1, "127.0.0.1:1", "", "", "", True))
            _, second = await asyncio.wait_for(anext(stream), 5.0)
            assert second is not None and decode_map(bytes(second)).epoch == 2
            await stream.aclose()
        finally:
            await host.stop()
            engine.close()

    asyncio.run(body())
