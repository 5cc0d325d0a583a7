"""`atoll dev`'s shell (atoll.server.dev) without processes: reading a dev directory,
replacing files atomically, the supervisor's S3 probe over fake gateways, and when a
cluster map is ready for writes."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from atoll.meta.cluster_map import (
    DEVICE_IN,
    NODE_UP,
    ClusterMap,
    DeviceRecord,
    NodeRecord,
    PgTable,
    PoolRecord,
    placement_digest,
)
from atoll.server import dev, dev_plan
from atoll.server.dev_plan import DevNode

ROOT = Path("/abs/dev root")


def planned(count: int = 3) -> tuple[DevNode, ...]:
    ports = [7001 + i for i in range(count)] + [7101 + i for i in range(count)]
    return dev_plan.plan_nodes(count, ports + [9000 + i for i in range(count)])


def test_read_cluster_reads_the_configs_written_in_a_directory(tmp_path: Path) -> None:
    assert dev.read_cluster(tmp_path) is None
    nodes = planned()
    for node in nodes:
        dev_plan.node_dir(tmp_path, node.node_id).mkdir()
        dev.write_atomically(
            dev_plan.config_path(tmp_path, node.node_id),
            dev_plan.render_config(tmp_path, node, nodes),
        )
    assert dev.read_cluster(tmp_path) == nodes
    assert [p.name for p in dev_plan.node_dir(tmp_path, 1).iterdir()] == ["config.toml"]


def test_write_atomically_replaces_the_whole_file_and_leaves_no_temporary(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cluster.json"
    dev.write_atomically(path, "old\n")
    dev.write_atomically(path, "new\n")
    assert path.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["cluster.json"]


def test_the_cluster_serves_s3_once_every_gateway_answers_list_buckets_with_200() -> None:
    nodes = (*planned(2), DevNode(3, "127.0.0.1:7003", "127.0.0.1:7103"))  # 3: no gateway
    answers = {"127.0.0.1:9000": [503, 200], "127.0.0.1:9001": [200, 200]}
    asked: list[tuple[str, tuple[str, str]]] = []

    async def s3_probe(address: str, credentials: tuple[str, str]) -> int:
        asked.append((address, credentials))
        return answers[address].pop(0)

    def ignore(text: str) -> None:
        pass

    supervisor = dev.Supervisor(ROOT, nodes, ignore, ignore, s3_probe=s3_probe)

    async def probe_twice() -> tuple[bool, bool]:
        return await supervisor._s3_serves(("AK", "secret12")), await supervisor._s3_serves(
            ("AK", "secret12")
        )

    assert asyncio.run(probe_twice()) == (False, True)
    assert "node 1's S3 gateway at 127.0.0.1:9000 answered" in str(supervisor.last_probe_error)
    assert "HTTP 503" in str(supervisor.last_probe_error)
    assert asked == [
        ("127.0.0.1:9000", ("AK", "secret12")),
        ("127.0.0.1:9000", ("AK", "secret12")),
        ("127.0.0.1:9001", ("AK", "secret12")),
    ]


def _map(nodes_with_devices: tuple[int, ...], *, placed: bool) -> ClusterMap:
    """Nodes 1..3 (all up), two devices for each node of `nodes_with_devices`, and a
    2+1 pool whose PG table is placed over those devices or missing."""
    nodes = {
        i: NodeRecord(i, f"127.0.0.1:{7000 + i}", "", "", "", NODE_UP, True) for i in (1, 2, 3)
    }
    devices = {
        node * 10 + d: DeviceRecord(node * 10 + d, node, f"/d{node}{d}", 1 << 30, DEVICE_IN)
        for node in nodes_with_devices
        for d in (1, 2)
    }
    pool = PoolRecord(1, "standard", 2, 1, 4, "device", "STANDARD")
    m = ClusterMap(epoch=9, nodes=nodes, devices=devices, pools={1: pool})
    if placed:
        table = PgTable(1, 9, placement_digest(m, pool), ((11, 21, 31),) * 4)
        m = dataclasses.replace(m, pg_tables={1: table})
    return m


def test_the_cluster_serves_once_every_node_s_devices_are_in_final_pg_tables() -> None:
    nodes = planned(3)
    # Node 3 has not registered its devices: the tables will be placed again with them.
    assert dev.unplaced(_map((1, 2), placed=True), nodes) == (
        "node(s) [3] have no device in the cluster map yet"
    )
    # Every node's devices are there, but the table was placed before (or not at all).
    assert dev.unplaced(_map((1, 2, 3), placed=False), nodes) == (
        "the PG tables of pool(s) standard are about to be placed again"
    )
    assert dev.unplaced(_map((1, 2, 3), placed=True), nodes) is None
    # A node planned without devices is not waited for.
    no_devices = (*nodes[:2], dataclasses.replace(nodes[2], devices=0))
    assert dev.unplaced(_map((1, 2), placed=True), no_devices) is None
