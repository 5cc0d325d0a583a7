"""The decisions of `atoll dev` (atoll.server.dev): the dev directory's layout, the
port plan, node configs, validating an existing directory, the option checks, the
port reuse check and the cluster.json document. Pure: no files, sockets or processes
(the shell in `atoll.server.dev` carries the decisions out).

A dev directory (default `./.atoll`) holds:

    node-<id>/config.toml   the node's config (`atoll.server.config`), written once
    node-<id>/data/         the node's data_dir
    node-<id>/dev-<i>/      the node's devices (shard directories), 2 per node unless
                            --devices-per-node
    node-<id>/node.log      the node's stdout and stderr, appended to on every run
    cluster.json            {"access_key", "secret_key", "nodes": [{"id", "pid",
                            "kv", "rpc", "s3"}, ...]}: written atomically once the
                            cluster serves KV and S3, removed when it stops

Every node runs an S3 gateway: node 1's on `--s3-port` (default 9000; 0 picks a free
port), the others' on free ports, all saved in the configs. A cluster keeps its node
count, devices and ports across restarts.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from atoll.base.errors import AtollError, invariant
from atoll.server.config import NodeConfig

HOST = "127.0.0.1"
NODES_DEFAULT = 3
NODES_MAX = 15

# Written into new configs; an existing cluster keeps whatever its configs say.
TICK_INTERVAL_MS = 100
ELECTION_TIMEOUT_TICKS = 10

CONFIG_FILE = "config.toml"
DATA_DIR = "data"
LOG_FILE = "node.log"
CLUSTER_FILE = "cluster.json"
SETTINGS_FILE = "settings.toml"
CONTROL_SOCKET = "control.sock"
NODE_DIR_PREFIX = "node-"
DEVICE_DIR_PREFIX = "dev-"
DEVICES_PER_NODE = 2  # the default of --devices-per-node
DEVICES_PER_NODE_MAX = 16
S3_PORT_DEFAULT = 9000  # node 1's gateway, unless --s3-port
S3_REGION = "us-east-1"  # the gateway's region (atoll.gateway.http's default)
ACCESS_KEY_ENV = "ATOLL_ACCESS_KEY"
SECRET_KEY_ENV = "ATOLL_SECRET_KEY"
ACCESS_KEY_BYTES_MAX = 128
SECRET_KEY_CHARS_MIN = 8


class DevError(AtollError):
    """`atoll dev` cannot start or run the cluster: a bad or inconsistent dev
    directory, ports taken, or a cluster that did not come up."""


@dataclass(frozen=True)
class DevNode:
    """One node of a dev cluster: its id, its advertised addresses (`s3_address`
    "" for a node without a gateway, as in a cluster made before gateways existed),
    how many devices it has, and whether it is one of the initial members (meta and
    KV replicas) or a node added later (`atoll dev add-node`), which joins through
    the first member and stores data only (its `kv_address` is configured but not
    served)."""

    node_id: int
    rpc_address: str
    kv_address: str
    s3_address: str = ""
    devices: int = DEVICES_PER_NODE
    member: bool = True


# -- pure: paths, the plan, configs, cluster.json -----------------------------------------


def node_dir(root: Path, node_id: int) -> Path:
    return root / f"{NODE_DIR_PREFIX}{node_id}"


def config_path(root: Path, node_id: int) -> Path:
    return node_dir(root, node_id) / CONFIG_FILE


def data_dir(root: Path, node_id: int) -> Path:
    return node_dir(root, node_id) / DATA_DIR


def log_path(root: Path, node_id: int) -> Path:
    return node_dir(root, node_id) / LOG_FILE


def split_address(address: str) -> tuple[str, int]:
    """`"127.0.0.1:7101"` -> `("127.0.0.1", 7101)`; DevError unless host:port."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DevError(f"expected host:port, got {address!r}")
    return host, int(port)


def check_node_count(existing: int | None, requested: int | None, root: Path) -> int:
    """The node count to run: `requested` (default `NODES_DEFAULT`) for a new cluster;
    an existing cluster (`existing` members) keeps its own, and asking for another
    count is an error rather than a silent change of membership."""
    if existing is None:
        count = NODES_DEFAULT if requested is None else requested
        if not 1 <= count <= NODES_MAX:
            raise DevError(f"--nodes must be between 1 and {NODES_MAX}, not {count}")
        return count
    if requested is not None and requested != existing:
        raise DevError(
            f"{root} holds a {existing}-node cluster; it cannot be restarted with"
            f" --nodes {requested} (membership changes are not supported). Omit --nodes,"
            f" or use another --dir"
        )
    return existing


def check_devices_per_node(existing: int | None, requested: int | None, root: Path) -> int:
    """Devices per node: `requested` (default `DEVICES_PER_NODE`) for a new cluster;
    an existing cluster keeps the devices its configs list."""
    if existing is None:
        count = DEVICES_PER_NODE if requested is None else requested
        if not 1 <= count <= DEVICES_PER_NODE_MAX:
            raise DevError(
                f"--devices-per-node must be between 1 and {DEVICES_PER_NODE_MAX}, not {count}"
            )
        return count
    if requested is not None and requested != existing:
        raise DevError(
            f"{root} holds a cluster with {existing} devices per node; it cannot be"
            f" restarted with --devices-per-node {requested}. Omit --devices-per-node, or"
            f" use another --dir"
        )
    return existing


def check_s3_port(existing: int | None, requested: int | None, root: Path) -> int:
    """Node 1's S3 port: `requested` (default `S3_PORT_DEFAULT`; 0 = any free port)
    for a new cluster (`existing` None). An existing cluster keeps the port its config
    saved (`existing`, 0 if it has no gateway); asking for another one is an error,
    and 0 asks for none in particular."""
    if existing is None:
        return S3_PORT_DEFAULT if requested is None else requested
    if requested and existing and requested != existing:
        raise DevError(
            f"{root} holds a cluster whose node 1 serves S3 on port {existing}; it cannot"
            f" be restarted with --s3-port {requested}. Omit --s3-port, or use another --dir"
        )
    return existing


def plan_nodes(
    node_count: int,
    ports: Sequence[int],
    devices: int = DEVICES_PER_NODE,
    host: str = HOST,
) -> tuple[DevNode, ...]:
    """Nodes 1..node_count, each with `devices` devices: node i listens for rpc on
    `ports[i - 1]`, for kv on `ports[node_count + i - 1]` and for S3 on
    `ports[2 * node_count + i - 1]`."""
    invariant(
        len(ports) == 3 * node_count and len(set(ports)) == len(ports),
        f"plan_nodes needs {3 * node_count} distinct ports, got {list(ports)}",
    )
    n = node_count
    return tuple(
        DevNode(
            i + 1,
            f"{host}:{ports[i]}",
            f"{host}:{ports[n + i]}",
            f"{host}:{ports[2 * n + i]}",
            devices,
        )
        for i in range(n)
    )


def plan_added_node(nodes: Sequence[DevNode], ports: Sequence[int], host: str = HOST) -> DevNode:
    """The node `atoll dev add-node` adds: the next id, rpc, kv and S3 on the three
    `ports`, as many devices as the first node."""
    invariant(len(set(ports)) == 3, f"plan_added_node needs 3 distinct ports, got {ports}")
    return DevNode(
        max(n.node_id for n in nodes) + 1,
        f"{host}:{ports[0]}",
        f"{host}:{ports[1]}",
        f"{host}:{ports[2]}",
        nodes[0].devices,
        member=False,
    )


def render_settings(settings: Sequence[tuple[str, str]]) -> str:
    """The dev directory's settings file: the `--set` keys of its creation, one
    `key = value` line each, which nodes added later get too."""
    head = "# `atoll dev --set` keys of this cluster, for nodes added later.\n"
    return head + "".join(f"{key} = {value}\n" for key, value in settings)


def parse_settings(text: str) -> list[tuple[str, str]]:
    """The settings file's keys (`render_settings`); DevError on a line that is not
    one."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            out.append(parse_setting(line.replace(" = ", "=", 1)))
        except ValueError as err:
            raise DevError(f"{SETTINGS_FILE}: {err}") from err
    return out


def plan_ports(node_count: int, s3_port: int, free: Sequence[int]) -> list[int]:
    """The ports of `plan_nodes` from `3 * node_count + 1` distinct `free` ones (one
    spare, in case the kernel handed out `s3_port` itself): node 1's S3 port is
    `s3_port` unless 0 (then a free one too)."""
    invariant(
        len(free) == len(set(free)) == 3 * node_count + 1,
        f"plan_ports needs {3 * node_count + 1} distinct free ports, got {list(free)}",
    )
    ports = [port for port in free if port != s3_port][: 3 * node_count]
    if s3_port:
        ports[2 * node_count] = s3_port
    return ports


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped (TOML
    1.0 §String; `\\uXXXX` covers every control character)."""
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def device_dir(root: Path, node_id: int, index: int) -> Path:
    return node_dir(root, node_id) / f"{DEVICE_DIR_PREFIX}{index}"


def credentials_from_env(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The root credentials asked for by `ATOLL_ACCESS_KEY` and `ATOLL_SECRET_KEY`
    (both or neither), or None: then the cluster generates them. DevError for an
    access key that is empty or over 128 characters, a secret under 8, or either with
    whitespace or characters outside printable ASCII."""
    access = environ.get(ACCESS_KEY_ENV, "")
    secret = environ.get(SECRET_KEY_ENV, "")
    if not access and not secret:
        return None
    if not access or not secret:
        raise DevError(f"set both {ACCESS_KEY_ENV} and {SECRET_KEY_ENV}, or neither")
    if len(access) > ACCESS_KEY_BYTES_MAX:
        raise DevError(
            f"{ACCESS_KEY_ENV} has {len(access)} characters, over {ACCESS_KEY_BYTES_MAX}"
        )
    if len(secret) < SECRET_KEY_CHARS_MIN:
        raise DevError(f"{SECRET_KEY_ENV} must have {SECRET_KEY_CHARS_MIN} characters or more")
    for name, value in ((ACCESS_KEY_ENV, access), (SECRET_KEY_ENV, secret)):
        if not all("!" <= ch <= "~" for ch in value):
            raise DevError(f"{name} may hold printable ASCII only, without spaces")
    return access, secret


SETTING_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
RESERVED_SETTINGS = frozenset(
    {"node_id", "data_dir", "rpc_address", "kv_address", "s3_address", "join"}
)


def parse_setting(text: str) -> tuple[str, str]:
    """`KEY=VALUE` of `atoll dev --set`: a node config key (not one `atoll dev`
    chooses itself) and a TOML value (`5`, `true`, `"text"`). ValueError otherwise."""
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not SETTING_KEY.fullmatch(key) or key in RESERVED_SETTINGS:
        raise ValueError(f"{text!r}: expected KEY=VALUE with a node config key")
    try:
        parsed = tomllib.loads(f"v = {value}")
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{text!r}: {value!r} is not a TOML value: {err}") from err
    if isinstance(parsed["v"], (dict, list)):
        raise ValueError(f"{text!r}: only a number, a boolean or a string")
    return key, value


def render_config(
    root: Path,
    node: DevNode,
    members: Sequence[DevNode],
    credentials: tuple[str, str] | None = None,
    settings: Sequence[tuple[str, str]] = (),
) -> str:
    """The TOML config of `node` in the dev directory `root` (the format read by
    `atoll.server.config`): its S3 address, its `node.devices` device directories
    beside its data, and, on the first node, the bootstrap spec that sizes the
    default pools from every node's devices (with the root `credentials`, if
    given). `settings` are more top-level keys for every node (`parse_setting`)."""
    lines = [
        "# Written by `atoll dev`; reused as it is when `atoll dev` runs again here.",
        f"node_id = {node.node_id}",
        f"data_dir = {toml_string(str(data_dir(root, node.node_id)))}",
        f"rpc_address = {toml_string(node.rpc_address)}",
        f"kv_address = {toml_string(node.kv_address)}",
    ]
    if node.s3_address:
        lines.append(f"s3_address = {toml_string(node.s3_address)}")
    lines += [
        f"tick_interval_ms = {TICK_INTERVAL_MS}",
        f"election_timeout_ticks = {ELECTION_TIMEOUT_TICKS}",
    ]
    lines += [f"{key} = {value}" for key, value in settings]
    if not node.member:
        lines.append(f"join = {toml_string(members[0].rpc_address)}")
    for index in range(node.devices):
        path = device_dir(root, node.node_id, index)
        lines += ["", "[[devices]]", f"path = {toml_string(str(path))}"]
    if not node.member:
        return "\n".join(lines) + "\n"
    if node.node_id == min(m.node_id for m in members):
        lines += [
            "",
            "[bootstrap]",
            f"hosts = {len(members)}",
            f"devices_per_host = {node.devices}",
        ]
        if credentials is not None:
            lines += [
                f"root_access_key = {toml_string(credentials[0])}",
                f"root_secret_key = {toml_string(credentials[1])}",
            ]
    for member in members:
        lines += [
            "",
            "[[nodes]]",
            f"id = {member.node_id}",
            f"rpc = {toml_string(member.rpc_address)}",
            f"kv = {toml_string(member.kv_address)}",
        ]
    return "\n".join(lines) + "\n"


def cluster_from_configs(
    root: Path, configs: Mapping[str, NodeConfig | None]
) -> tuple[DevNode, ...]:
    """The members of the cluster whose configs were found in `root`, keyed by node
    directory name (None: a node directory without a config), each with the S3
    address and device count of its own config. DevError unless they describe one
    cluster laid out as `atoll dev` lays it out."""
    missing = sorted(name for name, config in configs.items() if config is None)
    if missing:
        raise DevError(
            f"{root}: {', '.join(missing)} hold no {CONFIG_FILE}; remove {root} to start"
            f" a new cluster (its data is lost)"
        )
    found = {name: config for name, config in configs.items() if config is not None}
    invariant(bool(found), f"cluster_from_configs({root}) given no configs")
    joiners = {name: config for name, config in found.items() if config.join}
    found = {name: config for name, config in found.items() if not config.join}
    if not found:
        raise DevError(f"{root}: every config joins another node; no member is left")
    members = _members(found[min(found)])
    for name, config in sorted(found.items()):
        where = root / name / CONFIG_FILE
        if name != f"{NODE_DIR_PREFIX}{config.node_id}":
            raise DevError(f"{where}: node_id is {config.node_id}, but it lies in {name}")
        if _members(config) != members:
            raise DevError(
                f"{where}: lists members {_members(config)}, {min(found)} lists {members}"
            )
        own = next(m for m in members if m.node_id == config.node_id)
        if (config.rpc_address, config.kv_address) != (own.rpc_address, own.kv_address):
            raise DevError(f"{where}: rpc_address/kv_address differ from its [[nodes]] entry")
        expected = data_dir(root, config.node_id)
        if config.data_dir != expected:
            raise DevError(
                f"{where}: data_dir is {config.data_dir}, not {expected} (was the directory"
                f" moved?); atoll dev keeps each node's data beside its config"
            )
    ids = sorted(config.node_id for config in found.values())
    if ids != [m.node_id for m in members]:
        raise DevError(
            f"{root}: the members are nodes {[m.node_id for m in members]}, but configs"
            f" exist for nodes {ids}; remove {root} to start a new cluster"
        )
    own_config = {config.node_id: config for config in found.values()}
    added = []
    for name, config in sorted(joiners.items()):
        if name != f"{NODE_DIR_PREFIX}{config.node_id}" or config.node_id in own_config:
            raise DevError(f"{root / name / CONFIG_FILE}: node_id {config.node_id} does not fit")
        added.append(
            DevNode(
                config.node_id,
                config.rpc_address,
                config.kv_address,
                config.s3_address,
                len(config.devices),
                member=False,
            )
        )
    nodes = [
        replace(
            m,
            s3_address=own_config[m.node_id].s3_address,
            devices=len(own_config[m.node_id].devices),
        )
        for m in members
    ]
    return tuple(sorted([*nodes, *added], key=lambda n: n.node_id))


def _members(config: NodeConfig) -> tuple[DevNode, ...]:
    return tuple(
        sorted((DevNode(m.id, m.rpc, m.kv) for m in config.nodes), key=lambda n: n.node_id)
    )


def port_conflicts(nodes: Sequence[DevNode], is_free: Callable[[str], bool]) -> list[str]:
    """The addresses of `nodes` that `is_free` says cannot be bound, each as
    "node N kind address", in node order (rpc before kv)."""
    return [
        f"node {node.node_id} {kind} {address}"
        for node in nodes
        for kind, address in (
            ("rpc", node.rpc_address),
            ("kv", node.kv_address),
            ("s3", node.s3_address),
        )
        if address and not is_free(address)
    ]


def cluster_document(
    nodes: Sequence[DevNode],
    pids: Mapping[int, int | None],
    credentials: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The content of cluster.json: every node with its process id (null while
    `atoll dev stop-node` has it stopped), its addresses (its S3 endpoint as a URL, if
    it has a gateway), whether it is an initial member (the KV API is served by the
    members only), and the root credentials once known."""
    document: dict[str, Any] = {}
    if credentials is not None:
        document["access_key"], document["secret_key"] = credentials
    return document | {
        "nodes": [
            {
                "id": node.node_id,
                "pid": pids[node.node_id],
                "kv": node.kv_address,
                "rpc": node.rpc_address,
                "member": node.member,
            }
            | ({"s3": s3_endpoint(node.s3_address)} if node.s3_address else {})
            for node in nodes
        ]
    }


def s3_endpoint(address: str) -> str:
    """`127.0.0.1:9000` -> `http://127.0.0.1:9000`."""
    return f"http://{address}"


def aws_cli_example(endpoint: str, credentials: tuple[str, str]) -> str:
    """A command line that lists the buckets with the AWS CLI, ready to paste into a
    POSIX shell (the keys quoted if they need it)."""
    access, secret = credentials
    return (
        f"AWS_ACCESS_KEY_ID={shlex.quote(access)} AWS_SECRET_ACCESS_KEY={shlex.quote(secret)}"
        f" AWS_DEFAULT_REGION={S3_REGION} aws --endpoint-url {endpoint} s3 ls"
    )


def render_cluster_json(
    nodes: Sequence[DevNode],
    pids: Mapping[int, int | None],
    credentials: tuple[str, str] | None = None,
) -> str:
    return json.dumps(cluster_document(nodes, pids, credentials), indent=2) + "\n"


def kv_endpoints(text: str, source: str, kind: str = "kv") -> list[str]:
    """The `kind` ("kv" or "rpc") addresses listed in a cluster.json's `text`;
    DevError naming `source` if it is not one."""
    try:
        document = json.loads(text)
        endpoints = [
            str(node[kind])
            for node in document["nodes"]
            if kind != "kv" or node.get("member", True)
        ]
        for endpoint in endpoints:
            split_address(endpoint)
    except (ValueError, KeyError, TypeError, DevError) as err:
        raise DevError(f"{source}: not a cluster file written by atoll dev ({err})") from err
    if not endpoints:
        raise DevError(f"{source}: lists no nodes")
    return endpoints


def describe_exit(returncode: int) -> str:
    """`0` -> "exit code 0"; `-9` -> "signal SIGKILL" (asyncio's convention)."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"
