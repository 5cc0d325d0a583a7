"""`atoll dev`'s decisions (atoll.server.dev_plan): the port plan, config rendering read
back through tomllib and `atoll.server.config`, validating an existing dev directory,
the option checks, the port reuse check, the cluster.json document and the printed AWS
CLI example. No files, processes or sockets."""

from __future__ import annotations

import json
import shlex
import signal
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from atoll.base.errors import InvariantError
from atoll.server import dev_plan
from atoll.server.config import NodeConfig, parse
from atoll.server.dev_plan import DevError, DevNode

ROOT = Path("/abs/dev root")
PORTS = [7001, 7002, 7003, 7101, 7102, 7103, 9000, 9002, 9003]


def planned(count: int = 3, devices: int = dev_plan.DEVICES_PER_NODE) -> tuple[DevNode, ...]:
    return dev_plan.plan_nodes(
        count, PORTS[:count] + PORTS[3 : 3 + count] + PORTS[6 : 6 + count], devices
    )


def configs_of(root: Path, nodes: tuple[DevNode, ...]) -> dict[str, NodeConfig | None]:
    return {
        f"node-{node.node_id}": parse(tomllib.loads(dev_plan.render_config(root, node, nodes)))
        for node in nodes
    }


# -- the plan and the configs --------------------------------------------------------------


def test_plan_gives_ids_from_one_and_each_node_its_own_rpc_kv_and_s3_port() -> None:
    assert planned() == (
        DevNode(1, "127.0.0.1:7001", "127.0.0.1:7101", "127.0.0.1:9000", 2),
        DevNode(2, "127.0.0.1:7002", "127.0.0.1:7102", "127.0.0.1:9002", 2),
        DevNode(3, "127.0.0.1:7003", "127.0.0.1:7103", "127.0.0.1:9003", 2),
    )


@pytest.mark.parametrize(
    "ports", [[7001, 7002, 7003, 7004, 7005], [7001, 7001, 7002, 7003, 7004, 7005]]
)
def test_plan_needs_three_distinct_ports_per_node(ports: list[int]) -> None:
    with pytest.raises(InvariantError):
        dev_plan.plan_nodes(2, ports)


def test_node_1_s3_port_is_the_requested_one_unless_0() -> None:
    free = [40001, 40002, 40003, 40004, 40005, 40006, 40007]
    assert dev_plan.plan_ports(2, 9000, free) == [40001, 40002, 40003, 40004, 9000, 40006]
    assert dev_plan.plan_ports(2, 0, free) == free[:6]
    # The kernel may hand out the requested port itself: the spare replaces it.
    assert dev_plan.plan_ports(2, 40002, free) == [40001, 40003, 40004, 40005, 40002, 40007]
    nodes = dev_plan.plan_nodes(2, dev_plan.plan_ports(2, 9000, free))
    assert [n.s3_address for n in nodes] == ["127.0.0.1:9000", "127.0.0.1:40006"]


def test_config_round_trips_through_tomllib_and_the_node_config_parser() -> None:
    nodes = planned()
    config = parse(tomllib.loads(dev_plan.render_config(ROOT, nodes[1], nodes)))
    assert config.node_id == 2
    assert config.data_dir == ROOT / "node-2" / "data"
    assert config.rpc_address == "127.0.0.1:7002"
    assert config.kv_address == "127.0.0.1:7102"
    assert config.s3_address == "127.0.0.1:9002"
    assert config.tick_interval_ms == dev_plan.TICK_INTERVAL_MS
    assert config.election_timeout_ticks == dev_plan.ELECTION_TIMEOUT_TICKS
    assert [(m.id, m.rpc, m.kv) for m in config.nodes] == [
        (n.node_id, n.rpc_address, n.kv_address) for n in nodes
    ]
    assert [d.path for d in config.devices] == [
        ROOT / "node-2" / f"dev-{i}" for i in range(dev_plan.DEVICES_PER_NODE)
    ]
    assert config.bootstrap is None  # only the first node creates the cluster
    first = parse(tomllib.loads(dev_plan.render_config(ROOT, nodes[0], nodes)))
    assert first.bootstrap is not None
    assert (first.bootstrap.hosts, first.bootstrap.devices_per_host) == (
        len(nodes),
        dev_plan.DEVICES_PER_NODE,
    )


@pytest.mark.parametrize(
    "text", ["plain", 'quo"te', "back\\slash", "tab\tnew\nline", "\x00\x1f\x7f", "é 😀 ☃", ""]
)
def test_toml_string_reads_back_as_the_same_text(text: str) -> None:
    assert tomllib.loads(f"x = {dev_plan.toml_string(text)}")["x"] == text


def test_a_data_dir_with_awkward_characters_survives_the_config() -> None:
    root = Path('/tmp/we"ird\\dir\tname')
    nodes = planned(1)
    config = parse(tomllib.loads(dev_plan.render_config(root, nodes[0], nodes)))
    assert config.data_dir == root / "node-1" / "data"


# -- an existing dev directory -------------------------------------------------------------


def test_rendered_configs_read_back_as_the_planned_cluster() -> None:
    nodes = planned()
    assert dev_plan.cluster_from_configs(ROOT, configs_of(ROOT, nodes)) == nodes


def test_a_node_directory_without_its_config_is_refused() -> None:
    configs = configs_of(ROOT, planned())
    configs["node-2"] = None
    with pytest.raises(DevError, match=r"node-2 hold no config\.toml"):
        dev_plan.cluster_from_configs(ROOT, configs)


def test_a_member_without_a_config_is_refused() -> None:
    configs = configs_of(ROOT, planned())
    del configs["node-3"]
    with pytest.raises(DevError, match=r"configs exist for nodes \[1, 2\]"):
        dev_plan.cluster_from_configs(ROOT, configs)


def test_a_config_in_another_node_s_directory_is_refused() -> None:
    configs = configs_of(ROOT, planned())
    configs["node-1"], configs["node-2"] = configs["node-2"], configs["node-1"]
    with pytest.raises(DevError, match="node_id is 2, but it lies in node-1"):
        dev_plan.cluster_from_configs(ROOT, configs)


def test_devices_per_node_go_into_every_config_and_the_bootstrap_and_read_back() -> None:
    nodes = planned(devices=4)
    configs = configs_of(ROOT, nodes)
    for name, config in configs.items():
        assert config is not None
        assert [d.path for d in config.devices] == [ROOT / name / f"dev-{i}" for i in range(4)]
    first = configs["node-1"]
    assert first is not None and first.bootstrap is not None
    assert first.bootstrap.devices_per_host == 4
    assert [n.devices for n in dev_plan.cluster_from_configs(ROOT, configs)] == [4, 4, 4]


def test_a_cluster_made_before_gateways_reads_back_without_s3() -> None:
    old = tuple(DevNode(n.node_id, n.rpc_address, n.kv_address) for n in planned())
    text = dev_plan.render_config(ROOT, old[0], old)
    assert "s3_address" not in text
    read = dev_plan.cluster_from_configs(
        ROOT, configs_of(ROOT, tuple(replace(n, s3_address="") for n in old))
    )
    assert [n.s3_address for n in read] == ["", "", ""]
    assert dev_plan.port_conflicts(read, lambda address: address != "") == []


def test_configs_that_disagree_on_the_members_are_refused() -> None:
    nodes = planned()
    configs = configs_of(ROOT, nodes)
    other = (nodes[0], nodes[1], DevNode(3, "127.0.0.1:9003", "127.0.0.1:9103", "127.0.0.1:9203"))
    configs["node-3"] = parse(tomllib.loads(dev_plan.render_config(ROOT, other[2], other)))
    with pytest.raises(DevError, match="lists members"):
        dev_plan.cluster_from_configs(ROOT, configs)


def test_a_moved_directory_is_refused_rather_than_using_the_old_data_dir() -> None:
    nodes = planned()
    with pytest.raises(DevError, match="was the directory moved"):
        dev_plan.cluster_from_configs(Path("/elsewhere"), configs_of(ROOT, nodes))


# -- node count and port reuse -------------------------------------------------------------


@pytest.mark.parametrize(
    ("existing", "requested", "count"),
    [(None, None, dev_plan.NODES_DEFAULT), (None, 5, 5), (3, None, 3), (3, 3, 3), (1, None, 1)],
)
def test_node_count(existing: int | None, requested: int | None, count: int) -> None:
    assert dev_plan.check_node_count(existing, requested, ROOT) == count


def test_an_existing_cluster_keeps_its_size() -> None:
    with pytest.raises(DevError, match="holds a 3-node cluster"):
        dev_plan.check_node_count(3, 5, ROOT)


@pytest.mark.parametrize("requested", [0, dev_plan.NODES_MAX + 1])
def test_a_new_cluster_size_is_bounded(requested: int) -> None:
    with pytest.raises(DevError, match="--nodes must be between"):
        dev_plan.check_node_count(None, requested, ROOT)


@pytest.mark.parametrize(
    ("existing", "requested", "count"),
    [(None, None, dev_plan.DEVICES_PER_NODE), (None, 4, 4), (3, None, 3), (3, 3, 3)],
)
def test_devices_per_node(existing: int | None, requested: int | None, count: int) -> None:
    assert dev_plan.check_devices_per_node(existing, requested, ROOT) == count


def test_devices_per_node_are_bounded_and_kept_by_an_existing_cluster() -> None:
    for requested in (0, dev_plan.DEVICES_PER_NODE_MAX + 1):
        with pytest.raises(DevError, match="--devices-per-node must be between"):
            dev_plan.check_devices_per_node(None, requested, ROOT)
    with pytest.raises(DevError, match="with 2 devices per node"):
        dev_plan.check_devices_per_node(2, 3, ROOT)


@pytest.mark.parametrize(
    ("existing", "requested", "port"),
    [
        (None, None, dev_plan.S3_PORT_DEFAULT),
        (None, 0, 0),  # any free port
        (None, 9100, 9100),
        (9000, None, 9000),
        (9000, 9000, 9000),
        (41234, 0, 41234),  # made with --s3-port 0: keeps the port it got
        (0, 9000, 0),  # made before gateways: none to keep
    ],
)
def test_s3_port(existing: int | None, requested: int | None, port: int) -> None:
    assert dev_plan.check_s3_port(existing, requested, ROOT) == port


def test_an_existing_cluster_keeps_its_s3_port() -> None:
    with pytest.raises(DevError, match="serves S3 on port 9000"):
        dev_plan.check_s3_port(9000, 9100, ROOT)


def test_ports_all_free_mean_no_conflict() -> None:
    assert dev_plan.port_conflicts(planned(), lambda address: True) == []


def test_each_taken_port_is_named_with_its_node_and_kind() -> None:
    taken = {"127.0.0.1:7002", "127.0.0.1:7103", "127.0.0.1:9000"}
    assert dev_plan.port_conflicts(planned(), lambda address: address not in taken) == [
        "node 1 s3 127.0.0.1:9000",
        "node 2 rpc 127.0.0.1:7002",
        "node 3 kv 127.0.0.1:7103",
    ]


# -- cluster.json ---------------------------------------------------------------------------


def test_cluster_json_lists_every_node_with_its_pid_and_addresses() -> None:
    text = dev_plan.render_cluster_json(planned(2), {1: 4242, 2: 4343})
    assert json.loads(text) == {
        "nodes": [
            {
                "id": 1,
                "pid": 4242,
                "kv": "127.0.0.1:7101",
                "rpc": "127.0.0.1:7001",
                "member": True,
                "s3": "http://127.0.0.1:9000",
            },
            {
                "id": 2,
                "pid": 4343,
                "kv": "127.0.0.1:7102",
                "rpc": "127.0.0.1:7002",
                "member": True,
                "s3": "http://127.0.0.1:9002",
            },
        ]
    }
    assert dev_plan.kv_endpoints(text, "cluster.json") == ["127.0.0.1:7101", "127.0.0.1:7102"]


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
        dev_plan.kv_endpoints(text, "x/cluster.json")


# -- small helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "split"), [("127.0.0.1:7101", ("127.0.0.1", 7101)), ("::1:80", ("::1", 80))]
)
def test_split_address(address: str, split: tuple[str, int]) -> None:
    assert dev_plan.split_address(address) == split


@pytest.mark.parametrize("address", ["7101", ":7101", "host:", "host:port", "host:0", "h:65536"])
def test_split_address_refuses_what_is_not_host_port(address: str) -> None:
    with pytest.raises(DevError):
        dev_plan.split_address(address)


def test_describe_exit() -> None:
    assert dev_plan.describe_exit(0) == "exit code 0"
    assert dev_plan.describe_exit(3) == "exit code 3"
    assert dev_plan.describe_exit(-signal.SIGKILL) == "signal SIGKILL"


# -- root credentials ----------------------------------------------------------------------


def test_credentials_from_the_environment_both_or_neither() -> None:
    assert dev_plan.credentials_from_env({}) is None
    good = {dev_plan.ACCESS_KEY_ENV: "AKTEST", dev_plan.SECRET_KEY_ENV: "s3cr3t-key"}
    assert dev_plan.credentials_from_env(good) == ("AKTEST", "s3cr3t-key")
    bad = [
        ({dev_plan.ACCESS_KEY_ENV: "AK"}, "both"),
        ({dev_plan.SECRET_KEY_ENV: "s3cr3t-key"}, "both"),
        ({dev_plan.ACCESS_KEY_ENV: "A" * 129, dev_plan.SECRET_KEY_ENV: "s3cr3t-key"}, "over 128"),
        ({dev_plan.ACCESS_KEY_ENV: "AK", dev_plan.SECRET_KEY_ENV: "short"}, "8 characters"),
        ({dev_plan.ACCESS_KEY_ENV: "A K", dev_plan.SECRET_KEY_ENV: "s3cr3t-key"}, "printable"),
        ({dev_plan.ACCESS_KEY_ENV: "AK", dev_plan.SECRET_KEY_ENV: "s3cr3t-kéy"}, "printable"),
    ]
    for environ, match in bad:
        with pytest.raises(DevError, match=match):
            dev_plan.credentials_from_env(environ)


def test_credentials_go_into_the_first_node_s_bootstrap_and_the_cluster_file() -> None:
    nodes = planned()
    first = parse(
        tomllib.loads(dev_plan.render_config(ROOT, nodes[0], nodes, ("AK", 'se"cret\\x')))
    )
    assert first.bootstrap is not None
    assert (first.bootstrap.root_access_key, first.bootstrap.root_secret_key) == (
        "AK",
        'se"cret\\x',
    )
    other = parse(tomllib.loads(dev_plan.render_config(ROOT, nodes[1], nodes, ("AK", "secret12"))))
    assert other.bootstrap is None
    document = json.loads(dev_plan.render_cluster_json(nodes[:1], {1: 7}, ("AK", "secret12")))
    assert (document["access_key"], document["secret_key"]) == ("AK", "secret12")
    assert "access_key" not in json.loads(dev_plan.render_cluster_json(nodes[:1], {1: 7}))


def test_the_aws_cli_example_is_one_shell_line_with_the_keys_quoted_when_needed() -> None:
    line = dev_plan.aws_cli_example("http://127.0.0.1:9000", ("AKID", "pl41n-secret"))
    assert line == (
        "AWS_ACCESS_KEY_ID=AKID AWS_SECRET_ACCESS_KEY=pl41n-secret AWS_DEFAULT_REGION=us-east-1"
        " aws --endpoint-url http://127.0.0.1:9000 s3 ls"
    )
    odd = dev_plan.aws_cli_example("http://127.0.0.1:9000", ("AK", "$ec'ret`x"))
    assert shlex.split(odd)[:2] == ["AWS_ACCESS_KEY_ID=AK", "AWS_SECRET_ACCESS_KEY=$ec'ret`x"]


# -- nodes added to a running cluster (`atoll dev add-node`) ---------------------------------


def test_an_added_node_joins_through_the_first_member_with_the_cluster_s_settings() -> None:
    members = planned(3)
    node = dev_plan.plan_added_node(members, [8001, 8002, 8003])
    assert (node.node_id, node.member, node.devices) == (4, False, members[0].devices)
    settings = dev_plan.parse_settings(dev_plan.render_settings([("down_after_s", "5")]))
    assert settings == [("down_after_s", "5")]
    text = dev_plan.render_config(ROOT, node, members, None, settings)
    config = parse(tomllib.loads(text), "added")
    assert config.join == members[0].rpc_address and not config.nodes
    assert config.down_after_s == 5.0 and len(config.devices) == node.devices
    assert "[bootstrap]" not in text


def test_a_restarted_dev_dir_knows_its_added_nodes_and_lists_only_members_for_kv() -> None:
    members = planned(3)
    added = dev_plan.plan_added_node(members, [8001, 8002, 8003])
    configs = {
        f"node-{n.node_id}": parse(
            tomllib.loads(dev_plan.render_config(ROOT, n, members)), f"node {n.node_id}"
        )
        for n in (*members, added)
    }
    nodes = dev_plan.cluster_from_configs(ROOT, configs)
    assert [(n.node_id, n.member) for n in nodes] == [(1, True), (2, True), (3, True), (4, False)]
    text = dev_plan.render_cluster_json(nodes, {1: 1, 2: 2, 3: None, 4: 4})
    assert json.loads(text)["nodes"][2]["pid"] is None
    assert dev_plan.kv_endpoints(text, "cluster.json") == [m.kv_address for m in members]
    assert len(dev_plan.kv_endpoints(text, "cluster.json", kind="rpc")) == 4


def test_settings_are_node_config_keys_with_toml_values() -> None:
    assert dev_plan.parse_setting("out_after_s=6") == ("out_after_s", "6")
    assert dev_plan.parse_setting('zone = "a"') == ("zone", '"a"')
    for bad in ("node_id=3", "x", "down_after_s=[1]", "Bad-Key=1", "down_after_s=not toml"):
        with pytest.raises(ValueError):
            dev_plan.parse_setting(bad)
