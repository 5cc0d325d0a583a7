"""`atoll dev`'s shell (atoll.server.dev) without processes: reading a dev directory,
replacing files atomically, and the supervisor's S3 probe over fake gateways."""

from __future__ import annotations

import asyncio
from pathlib import Path

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
