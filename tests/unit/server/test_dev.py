"""`atoll dev`'s decisions (atoll.server.dev): the port plan, config rendering read back
through tomllib and `atoll.server.config`, validating an existing dev directory, the
port reuse check and the cluster.json document. No processes, no sockets."""

from __future__ import annotations

import json
import signal
import tomllib
from pathlib import Path

import pytest

from atoll.base.errors import InvariantError
from atoll.server import dev
from atoll.server.config import NodeConfig, parse
from atoll.server.dev import DevError, DevNode

ROOT = Path("/abs/dev root")
PORTS = [7001, 7002, 7003, 7101, 7102, 7103]


def planned(count: int = 3) -> tuple[DevNode, ...]:
    return dev.plan_nodes(count, PORTS[:count] + PORTS[3 : 3 + count])


def configs_of(root: Path, nodes: tuple[DevNode, ...]) -> dict[str, NodeConfig | None]:
    return {
        f"node-{node.node_id}": parse(tomllib.loads(dev.render_config(root, node, nodes)))
        for node in nodes
    }


# -- the plan and the configs --------------------------------------------------------------


def test_plan_gives_ids_from_one_and_each_node_its_own_rpc_and_kv_port() -> None:
    assert planned() == (
        DevNode(1, "127.0.0.1:7001", "127.0.0.1:7101"),
        DevNode(2, "127.0.0.1:7002", "127.0.0.1:7102"),
        DevNode(3, "127.0.0.1:7003", "127.0.0.1:7103"),
    )


@pytest.mark.parametrize("ports", [[7001, 7002, 7003], [7001, 7001, 7002, 7003]])
def test_plan_needs_two_distinct_ports_per_node(ports: list[int]) -> None:
    with pytest.raises(InvariantError):
        dev.plan_nodes(2, ports)


def test_config_round_trips_through_tomllib_and_the_node_config_parser() -> None:
    nodes = planned()
    config = parse(tomllib.loads(dev.render_config(ROOT, nodes[1], nodes)))
    assert config.node_id == 2
    assert config.data_dir == ROOT / "node-2" / "data"
    assert config.rpc_address == "127.0.0.1:7002"
    assert config.kv_address == "127.0.0.1:7102"
    assert config.tick_interval_ms == dev.TICK_INTERVAL_MS
    assert config.election_timeout_ticks == dev.ELECTION_TIMEOUT_TICKS
    assert [(m.id, m.rpc, m.kv) for m in config.nodes] == [
        (n.node_id, n.rpc_address, n.kv_address) for n in nodes
    ]
    assert [d.path for d in config.devices] == [
        ROOT / "node-2" / f"dev-{i}" for i in range(dev.DEVICES_PER_NODE)
    ]
    assert config.bootstrap is None  # only the first node creates the cluster
    first = parse(tomllib.loads(dev.render_config(ROOT, nodes[0], nodes)))
    assert first.bootstrap is not None
    assert (first.bootstrap.hosts, first.bootstrap.devices_per_host) == (
        len(nodes),
        dev.DEVICES_PER_NODE,
    )


@pytest.mark.parametrize(
    "text", ["plain", 'quo"te', "back\\slash", "tab\tnew\nline", "\x00\x1f\x7f", "é 😀 ☃", ""]
)
def test_toml_string_reads_back_as_the_same_text(text: str) -> None:
    assert tomllib.loads(f"x = {dev.toml_string(text)}")["x"] == text


def test_a_data_dir_with_awkward_characters_survives_the_config() -> None:
    root = Path('/tmp/we"ird\\dir\tname')
    nodes = planned(1)
    config = parse(tomllib.loads(dev.render_config(root, nodes[0], nodes)))
    assert config.data_dir == root / "node-1" / "data"


# -- an existing dev directory -------------------------------------------------------------


def test_rendered_configs_read_back_as_the_planned_cluster() -> None:
    nodes = planned()
    assert dev.cluster_from_configs(ROOT, configs_of(ROOT, nodes)) == nodes


def test_a_node_directory_without_its_config_is_refused() -> None:
    configs = configs_of(ROOT, planned())
    configs["node-2"] = None
    with pytest.raises(DevError, match=r"node-2 hold no config\.toml"):
        dev.cluster_from_configs(ROOT, configs)


def test_a_member_without_a_config_is_refused() -> None:
    configs = configs_of(ROOT, planned())
    del configs["node-3"]
    with pytest.raises(DevError, match=r"configs exist for nodes \[1, 2\]"):
        dev.cluster_from_configs(ROOT, configs)


def test_a_config_in_another_node_s_directory_is_refused() -> None:
    configs = configs_of(ROOT, planned())
    configs["node-1"], configs["node-2"] = configs["node-2"], configs["node-1"]
    with pytest.raises(DevError, match="node_id is 2, but it lies in node-1"):
        dev.cluster_from_configs(ROOT, configs)


def test_configs_that_disagree_on_the_members_are_refused() -> None:
    nodes = planned()
    configs = configs_of(ROOT, nodes)
    other = (nodes[0], nodes[1], DevNode(3, "127.0.0.1:9003", "127.0.0.1:9103"))
    configs["node-3"] = parse(tomllib.loads(dev.render_config(ROOT, other[2], other)))
    with pytest.raises(DevError, match="lists members"):
        dev.cluster_from_configs(ROOT, configs)


def test_a_moved_directory_is_refused_rather_than_using_the_old_data_dir() -> None:
    nodes = planned()
    with pytest.raises(DevError, match="was the directory moved"):
        dev.cluster_from_configs(Path("/elsewhere"), configs_of(ROOT, nodes))


def test_read_cluster_reads_the_configs_written_in_a_directory(tmp_path: Path) -> None:
    assert dev.read_cluster(tmp_path) is None
    nodes = planned()
    for node in nodes:
        dev.node_dir(tmp_path, node.node_id).mkdir()
        dev.write_atomically(
            dev.config_path(tmp_path, node.node_id), dev.render_config(tmp_path, node, nodes)
        )
    assert dev.read_cluster(tmp_path) == nodes
    assert [p.name for p in dev.node_dir(tmp_path, 1).iterdir()] == ["config.toml"]


# -- node count and port reuse -------------------------------------------------------------


@pytest.mark.parametrize(
    ("existing", "requested", "count"),
    [(None, None, dev.NODES_DEFAULT), (None, 5, 5), (3, None, 3), (3, 3, 3), (1, None, 1)],
)
def test_node_count(existing: int | None, requested: int | None, count: int) -> None:
    assert dev.check_node_count(existing, requested, ROOT) == count


def test_an_existing_cluster_keeps_its_size() -> None:
    with pytest.raises(DevError, match="holds a 3-node cluster"):
        dev.check_node_count(3, 5, ROOT)


@pytest.mark.parametrize("requested", [0, dev.NODES_MAX + 1])
def test_a_new_cluster_size_is_bounded(requested: int) -> None:
    with pytest.raises(DevError, match="--nodes must be between"):
        dev.check_node_count(None, requested, ROOT)


def test_ports_all_free_mean_no_conflict() -> None:
    assert dev.port_conflicts(planned(), lambda address: True) == []


def test_each_taken_port_is_named_with_its_node_and_kind() -> None:
    taken = {"127.0.0.1:7002", "127.0.0.1:7103"}
    assert dev.port_conflicts(planned(), lambda address: address not in taken) == [
        "node 2 rpc 127.0.0.1:7002",
        "node 3 kv 127.0.0.1:7103",
    ]


# -- cluster.json ---------------------------------------------------------------------------


def test_cluster_json_lists_every_node_with_its_pid_and_addresses() -> None:
    text = dev.render_cluster_json(planned(2), {1: 4242, 2: 4343})
    assert json.loads(text) == {
        "nodes": [
            {"id": 1, "pid": 4242, "kv": "127.0.0.1:7101", "rpc": "127.0.0.1:7001"},
            {"id": 2, "pid": 4343, "kv": "127.0.0.1:7102", "rpc": "127.0.0.1:7002"},
        ]
    }
    assert dev.kv_endpoints(text, "cluster.json") == ["127.0.0.1:7101", "127.0.0.1:7102"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("not json", "not a cluster file"),
        ("{}", "not a cluster file"),
        ('{"nodes": [{"id": 1}]}', "not a cluster file"),
        ('{"nodes": [{"kv": "no-port"}]}', "expected host:port"),
        ('{"nodes": []}', "lists no nodes"),
    ],
)
def test_kv_endpoints_refuses_what_is_not_a_cluster_file(text: str, match: str) -> None:
    with pytest.raises(DevError, match=match):
        dev.kv_endpoints(text, "x/cluster.json")


def test_write_atomically_replaces_the_whole_file_and_leaves_no_temporary(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cluster.json"
    dev.write_atomically(path, "old\n")
    dev.write_atomically(path, "new\n")
    assert path.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["cluster.json"]


# -- small helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "split"), [("127.0.0.1:7101", ("127.0.0.1", 7101)), ("::1:80", ("::1", 80))]
)
def test_split_address(address: str, split: tuple[str, int]) -> None:
    assert dev.split_address(address) == split


@pytest.mark.parametrize("address", ["7101", ":7101", "host:", "host:port", "host:0", "h:65536"])
def test_split_address_refuses_what_is_not_host_port(address: str) -> None:
    with pytest.raises(DevError):
        dev.split_address(address)


def test_describe_exit() -> None:
    assert dev.describe_exit(0) == "exit code 0"
    assert dev.describe_exit(3) == "exit code 3"
    assert dev.describe_exit(-signal.SIGKILL) == "signal SIGKILL"


# -- root credentials ----------------------------------------------------------------------


def test_credentials_from_the_environment_both_or_neither() -> None:
    assert dev.credentials_from_env({}) is None
    good = {dev.ACCESS_KEY_ENV: "AKTEST", dev.SECRET_KEY_ENV: "s3cr3t-key"}
    assert dev.credentials_from_env(good) == ("AKTEST", "s3cr3t-key")
    bad = [
        ({dev.ACCESS_KEY_ENV: "AK"}, "both"),
        ({dev.SECRET_KEY_ENV: "s3cr3t-key"}, "both"),
        ({dev.ACCESS_KEY_ENV: "A" * 129, dev.SECRET_KEY_ENV: "s3cr3t-key"}, "over 128"),
        ({dev.ACCESS_KEY_ENV: "AK", dev.SECRET_KEY_ENV: "short"}, "8 characters"),
        ({dev.ACCESS_KEY_ENV: "A K", dev.SECRET_KEY_ENV: "s3cr3t-key"}, "printable"),
        ({dev.ACCESS_KEY_ENV: "AK", dev.SECRET_KEY_ENV: "s3cr3t-kéy"}, "printable"),
    ]
    for environ, match in bad:
        with pytest.raises(DevError, match=match):
            dev.credentials_from_env(environ)


def test_credentials_go_into_the_first_node_s_bootstrap_and_the_cluster_file() -> None:
    nodes = planned()
    first = parse(tomllib.loads(dev.render_config(ROOT, nodes[0], nodes, ("AK", 'se"cret\\x'))))
    assert first.bootstrap is not None
    assert (first.bootstrap.root_access_key, first.bootstrap.root_secret_key) == (
        "AK",
        'se"cret\\x',
    )
    other = parse(tomllib.loads(dev.render_config(ROOT, nodes[1], nodes, ("AK", "secret12"))))
    assert other.bootstrap is None
    document = json.loads(dev.render_cluster_json(nodes[:1], {1: 7}, ("AK", "secret12")))
    assert (document["access_key"], document["secret_key"]) == ("AK", "secret12")
    assert "access_key" not in json.loads(dev.render_cluster_json(nodes[:1], {1: 7}))
