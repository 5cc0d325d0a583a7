"""`atoll dev`: a local cluster of real node processes on 127.0.0.1, for development
and for trying Atoll (shared/DESIGN.md §1). Does I/O: files, sockets (only to pick and
check ports), child processes, signals and the terminal.

A dev directory (default `./.atoll`) holds:

    node-<id>/config.toml   the node's config (`atoll.server.config`), written once
    node-<id>/data/         the node's data_dir
    node-<id>/dev-<i>/      the node's devices (shard directories), 2 per node
    node-<id>/node.log      the node's stdout and stderr, appended to on every run
    cluster.json            {"access_key", "secret_key", "nodes": [{"id", "pid",
                            "kv", "rpc"}, ...]}: written atomically once the cluster
                            serves, removed when it stops

The root credentials are the cluster's (stored in its map): `ATOLL_ACCESS_KEY` and
`ATOLL_SECRET_KEY` choose them on the first start, else the cluster generates them;
either way they are printed and kept across restarts.

Running again on the same directory restarts the same cluster (same node ids, same
ports, same data) from its configs. The supervisor starts every node as
`python -m atoll.cli server --config FILE`, waits until a write through the KV client
reads back, and then only watches: a node that exits is reported, not restarted, and
the others keep running. Ctrl-C or SIGTERM stops every node (SIGTERM, then SIGKILL
after `STOP_TIMEOUT_S`).

The decisions (the port plan, config rendering, validating existing configs, the port
reuse check, the cluster.json document) are plain functions above the `# -- shell`
line; `Supervisor` and `main` below it carry them out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from atoll.base.errors import AtollError, invariant
from atoll.server.config import NodeConfig, load

HOST = "127.0.0.1"
NODES_DEFAULT = 3
NODES_MAX = 15

# Written into new configs; an existing cluster keeps whatever its configs say.
TICK_INTERVAL_MS = 100
ELECTION_TIMEOUT_TICKS = 10

SERVE_TIMEOUT_S = 60.0  # from the first start to a probe write that reads back
PROBE_ATTEMPT_TIMEOUT_S = 5.0  # one probe: connect, put, get
PROBE_RETRY_INTERVAL_S = 0.25  # between failed probes (an election may be running)
STOP_TIMEOUT_S = 10.0  # from SIGTERM to exit, before SIGKILL
KILL_TIMEOUT_S = 5.0  # from SIGKILL to the exit being reaped
LOG_TAIL_LINES = 5  # of a node that failed at start, shown in the error
LOG_TAIL_BYTES_MAX = 8192

# Under \x00atoll/, a prefix kept for the system; left in place after the probe.
PROBE_KEY = b"\x00atoll/dev/probe"

CONFIG_FILE = "config.toml"
DATA_DIR = "data"
LOG_FILE = "node.log"
CLUSTER_FILE = "cluster.json"
NODE_DIR_PREFIX = "node-"
DEVICE_DIR_PREFIX = "dev-"
DEVICES_PER_NODE = 2
ACCESS_KEY_ENV = "ATOLL_ACCESS_KEY"
SECRET_KEY_ENV = "ATOLL_SECRET_KEY"
ACCESS_KEY_BYTES_MAX = 128
SECRET_KEY_CHARS_MIN = 8


class DevError(AtollError):
    """`atoll dev` cannot start or run the cluster: a bad or inconsistent dev
    directory, ports taken, or a cluster that did not come up."""


@dataclass(frozen=True)
class DevNode:
    """One member of a dev cluster: its id and its two advertised addresses."""

    node_id: int
    rpc_address: str
    kv_address: str


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


def plan_nodes(node_count: int, ports: Sequence[int], host: str = HOST) -> tuple[DevNode, ...]:
    """Nodes 1..node_count: node i listens for rpc on `ports[i - 1]` and for kv on
    `ports[node_count + i - 1]`."""
    invariant(
        len(ports) == 2 * node_count and len(set(ports)) == len(ports),
        f"plan_nodes needs {2 * node_count} distinct ports, got {list(ports)}",
    )
    return tuple(
        DevNode(i + 1, f"{host}:{ports[i]}", f"{host}:{ports[node_count + i]}")
        for i in range(node_count)
    )


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


def render_config(
    root: Path,
    node: DevNode,
    members: Sequence[DevNode],
    credentials: tuple[str, str] | None = None,
) -> str:
    """The TOML config of `node` in the dev directory `root` (the format read by
    `atoll.server.config`): `DEVICES_PER_NODE` device directories beside its data,
    and, on the first node, the bootstrap spec that sizes the default pools from
    every node's devices (with the root `credentials`, if given)."""
    lines = [
        "# Written by `atoll dev`; reused as it is when `atoll dev` runs again here.",
        f"node_id = {node.node_id}",
        f"data_dir = {toml_string(str(data_dir(root, node.node_id)))}",
        f"rpc_address = {toml_string(node.rpc_address)}",
        f"kv_address = {toml_string(node.kv_address)}",
        f"tick_interval_ms = {TICK_INTERVAL_MS}",
        f"election_timeout_ticks = {ELECTION_TIMEOUT_TICKS}",
    ]
    for index in range(DEVICES_PER_NODE):
        path = device_dir(root, node.node_id, index)
        lines += ["", "[[devices]]", f"path = {toml_string(str(path))}"]
    if node.node_id == min(m.node_id for m in members):
        lines += [
            "",
            "[bootstrap]",
            f"hosts = {len(members)}",
            f"devices_per_host = {DEVICES_PER_NODE}",
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
    directory name (None: a node directory without a config). DevError unless they
    describe one cluster laid out as `atoll dev` lays it out."""
    missing = sorted(name for name, config in configs.items() if config is None)
    if missing:
        raise DevError(
            f"{root}: {', '.join(missing)} hold no {CONFIG_FILE}; remove {root} to start"
            f" a new cluster (its data is lost)"
        )
    found = {name: config for name, config in configs.items() if config is not None}
    invariant(bool(found), f"cluster_from_configs({root}) given no configs")
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
    return members


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
        for kind, address in (("rpc", node.rpc_address), ("kv", node.kv_address))
        if not is_free(address)
    ]


def cluster_document(
    nodes: Sequence[DevNode],
    pids: Mapping[int, int],
    credentials: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The content of cluster.json: every node with its process id and addresses, and
    the root credentials once known."""
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
            }
            for node in nodes
        ]
    }


def render_cluster_json(
    nodes: Sequence[DevNode],
    pids: Mapping[int, int],
    credentials: tuple[str, str] | None = None,
) -> str:
    return json.dumps(cluster_document(nodes, pids, credentials), indent=2) + "\n"


def kv_endpoints(text: str, source: str, kind: str = "kv") -> list[str]:
    """The `kind` ("kv" or "rpc") addresses listed in a cluster.json's `text`;
    DevError naming `source` if it is not one."""
    try:
        document = json.loads(text)
        endpoints = [str(node[kind]) for node in document["nodes"]]
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


# -- shell: files, ports, processes --------------------------------------------------------


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a reader (or a crash) sees the old file or
    the new one, never a part: write a temporary file, fsync it, rename it over
    `path`, fsync the directory."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_cluster(root: Path) -> tuple[DevNode, ...] | None:
    """The members of the cluster already in `root`, or None if it holds none."""
    node_dirs = [p for p in root.glob(f"{NODE_DIR_PREFIX}*") if p.is_dir()]
    if not node_dirs:
        return None
    configs = {
        p.name: load(p / CONFIG_FILE) if (p / CONFIG_FILE).exists() else None for p in node_dirs
    }
    return cluster_from_configs(root, configs)


def pick_free_ports(count: int, host: str = HOST) -> list[int]:
    """`count` distinct ports that were free a moment ago: all bound to port 0 at
    once (so the kernel hands out distinct ones), read, then closed."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(address: str) -> bool:
    """Whether a server could listen on `address` now. SO_REUSEADDR as the node's
    servers set it: a TIME_WAIT left by the last run is no obstacle, a listener is."""
    host, port = split_address(address)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def prepare(
    root: Path, requested_nodes: int | None, credentials: tuple[str, str] | None = None
) -> tuple[tuple[DevNode, ...], bool]:
    """Set up `root` for a run: read the cluster already there, or plan a new one on
    free ports and write its configs (the first node's with the root `credentials`,
    if given: an existing cluster keeps its own). Returns the members and whether
    they are new. DevError if an existing cluster's ports are taken."""
    root.mkdir(parents=True, exist_ok=True)
    existing = read_cluster(root)
    count = check_node_count(None if existing is None else len(existing), requested_nodes, root)
    if existing is not None:
        taken = port_conflicts(existing, port_is_free)
        if taken:
            raise DevError(
                f"{root} holds a cluster whose ports are taken: {', '.join(taken)}. Stop"
                f" whatever listens there (another `atoll dev --dir {root}`?) and run"
                f" again, or remove {root} to start a new cluster on new ports"
            )
        # No supervisor holds the ports, so a cluster.json left here is stale: its
        # pids are dead or, worse, reused by other processes.
        (root / CLUSTER_FILE).unlink(missing_ok=True)
        return existing, False
    nodes = plan_nodes(count, pick_free_ports(2 * count))
    for node in nodes:
        node_dir(root, node.node_id).mkdir(exist_ok=True)
        write_atomically(
            config_path(root, node.node_id), render_config(root, node, nodes, credentials)
        )
    return nodes, True


def node_command(config: Path) -> list[str]:
    """The command line of one node process (`atoll server --config FILE`)."""
    return [sys.executable, "-m", "atoll.cli", "server", "--config", str(config)]


async def map_credentials(rpc_addresses: Sequence[str]) -> tuple[str, str] | None:
    """The root credentials in the cluster map, or None before the bootstrap."""
    from atoll.meta.client import MetaClient

    client = MetaClient(rpc_addresses)
    try:
        m = await client.read_map()
    finally:
        await client.close()
    return None if m.root is None else (m.root.access_key, m.root.secret_key)


async def client_probe(endpoints: Sequence[str], value: bytes) -> None:
    """Put `value` under `PROBE_KEY` through the KV client and read it back."""
    from atoll.kv import Client  # grpc loads only when a dev cluster starts

    client = await Client.connect(endpoints, request_timeout_s=PROBE_ATTEMPT_TIMEOUT_S)
    try:
        await client.put(PROBE_KEY, value)
        got = await client.get(PROBE_KEY)
    finally:
        await client.close()
    if got != value:
        raise DevError(f"probe key {PROBE_KEY!r} read back {got!r}, not {value!r}")


Probe = Callable[[Sequence[str], bytes], Awaitable[None]]
CredentialsProbe = Callable[[Sequence[str]], Awaitable["tuple[str, str] | None"]]
Echo = Callable[[str], None]


@dataclass
class _Child:
    node: DevNode
    process: asyncio.subprocess.Process
    exited: asyncio.Task[int]
    log: Path


class Supervisor:
    """Starts the nodes of `nodes`, waits until the cluster serves, writes
    cluster.json, reports nodes that exit, and stops them all when `stop` is set.
    `command` and `probe` are parameters so that a test can run fake nodes."""

    def __init__(
        self,
        root: Path,
        nodes: Sequence[DevNode],
        out: Echo,
        err: Echo,
        command: Callable[[Path], Sequence[str]] = node_command,
        probe: Probe = client_probe,
        credentials: CredentialsProbe = map_credentials,
    ) -> None:
        self.root = root
        self.nodes = tuple(nodes)
        self.out = out
        self.err = err
        self.command = command
        self.probe = probe
        self.credentials_probe = credentials
        self.credentials: tuple[str, str] | None = None
        self.children: list[_Child] = []
        self.faults = 0
        self.last_probe_error: Exception | None = None
        self._wrote_cluster_file = False

    async def run(self, stop: asyncio.Event) -> int:
        """0 if the cluster ran and every node stopped cleanly when asked; 1 after any
        fault (a node that exited by itself, failed to start or had to be killed)."""
        try:
            await self._start_all()
            if await self._wait_until_serving(stop):
                self._announce()
                await self._supervise(stop)
        except DevError as error:
            self.err(f"atoll dev: {error}")
            self.faults += 1
        finally:
            await self._stop_all()
            if self._wrote_cluster_file:
                (self.root / CLUSTER_FILE).unlink(missing_ok=True)
        return 0 if self.faults == 0 else 1

    async def _start_all(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for node in self.nodes:
            log = log_path(self.root, node.node_id)
            with _open_log(log, node.node_id) as file:
                process = await asyncio.create_subprocess_exec(
                    *self.command(config_path(self.root, node.node_id)),
                    stdin=subprocess.DEVNULL,
                    stdout=file,
                    stderr=subprocess.STDOUT,
                    env=env,
                    # Ctrl-C reaches only the supervisor, which stops the nodes itself.
                    start_new_session=True,
                )
            self.children.append(_Child(node, process, asyncio.create_task(process.wait()), log))

    async def _wait_until_serving(self, stop: asyncio.Event) -> bool:
        """True once a probe succeeds; False if `stop` is set first. DevError if a
        node exits first or `SERVE_TIMEOUT_S` passes."""
        self.out(
            f"atoll dev: starting {_count(self.nodes)} in {self.root};"
            f" waiting up to {SERVE_TIMEOUT_S:g} s for the cluster to serve"
        )
        prober = asyncio.create_task(self._probe_until_serving())
        stopper = asyncio.create_task(stop.wait())
        exits = {child.exited: child for child in self.children}
        try:
            done, _ = await asyncio.wait(
                {prober, stopper, *exits},
                timeout=SERVE_TIMEOUT_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for task in (prober, stopper):
                task.cancel()
            await asyncio.wait({prober, stopper})
        for exited, child in exits.items():
            if exited in done:
                raise DevError(
                    f"node {child.node.node_id} exited ({describe_exit(exited.result())})"
                    f" before the cluster served; see {child.log}, which ends:\n"
                    + _log_tail(child.log)
                )
        if prober in done:
            prober.result()  # a bug in the prober surfaces here
            return True
        if stopper in done:
            return False
        logs = ", ".join(str(child.log) for child in self.children)
        raise DevError(
            f"the cluster did not serve within {SERVE_TIMEOUT_S:g} s (last probe error:"
            f" {self.last_probe_error!r}); see the node logs: {logs}"
        )

    async def _probe_until_serving(self) -> None:
        """Probe until one succeeds; bounded by the caller's `SERVE_TIMEOUT_S`."""
        endpoints = [node.kv_address for node in self.nodes]
        value = os.urandom(8).hex().encode()
        while True:
            try:
                async with asyncio.timeout(PROBE_ATTEMPT_TIMEOUT_S):
                    await self.probe(endpoints, value)
                    # Serving means the cluster map is bootstrapped too: its root
                    # credentials are printed and written into cluster.json.
                    self.credentials = await self.credentials_probe(
                        [node.rpc_address for node in self.nodes]
                    )
                if self.credentials is not None:
                    return
                self.last_probe_error = DevError("the cluster map is not bootstrapped yet")
            except Exception as error:  # any failure means "not yet"; reported on timeout
                self.last_probe_error = error
            await asyncio.sleep(PROBE_RETRY_INTERVAL_S)

    def _announce(self) -> None:
        pids = {child.node.node_id: child.process.pid for child in self.children}
        cluster_file = self.root / CLUSTER_FILE
        write_atomically(cluster_file, render_cluster_json(self.nodes, pids, self.credentials))
        self._wrote_cluster_file = True
        self.out(f"atoll dev: {_count(self.nodes)} serving")
        for child in self.children:
            node = child.node
            self.out(
                f"  node {node.node_id}: kv {node.kv_address}  rpc {node.rpc_address}"
                f"  pid {child.process.pid}  log {child.log}"
            )
        self.out(f"endpoints: {','.join(node.kv_address for node in self.nodes)}")
        if self.credentials is not None:
            access, secret = self.credentials
            self.out(f"root credentials: access key {access}  secret key {secret}")
        self.out(f"cluster file: {cluster_file}")
        self.out("Ctrl-C stops the cluster.")

    async def _supervise(self, stop: asyncio.Event) -> None:
        """Report every node that exits (not restarting it) until `stop` is set or no
        node is left."""
        stopper = asyncio.create_task(stop.wait())
        running = {child.exited: child for child in self.children}
        try:
            while running:
                done, _ = await asyncio.wait(
                    {stopper, *running}, return_when=asyncio.FIRST_COMPLETED
                )
                for exited in [task for task in running if task in done]:
                    child = running.pop(exited)
                    self.faults += 1
                    self.err(
                        f"atoll dev: node {child.node.node_id} exited"
                        f" ({describe_exit(exited.result())}); not restarting it;"
                        f" see {child.log}"
                    )
                if stopper in done:
                    return
            self.err("atoll dev: every node has exited")
        finally:
            stopper.cancel()
            await asyncio.wait({stopper})

    async def _stop_all(self) -> None:
        """SIGTERM every running node, wait `STOP_TIMEOUT_S`, SIGKILL the rest."""
        running = [child for child in self.children if not child.exited.done()]
        if not running:
            return
        self.out(f"atoll dev: stopping {_count(running)}")
        for child in running:
            _signal(child.process, signal.SIGTERM)
        await asyncio.wait([child.exited for child in running], timeout=STOP_TIMEOUT_S)
        late = [child for child in running if not child.exited.done()]
        for child in late:
            self.faults += 1
            self.err(
                f"atoll dev: node {child.node.node_id} did not stop within"
                f" {STOP_TIMEOUT_S:g} s of SIGTERM; killing it; see {child.log}"
            )
            _signal(child.process, signal.SIGKILL)
        if late:
            await asyncio.wait([child.exited for child in late], timeout=KILL_TIMEOUT_S)
        for child in running:
            if not child.exited.done():
                self.err(
                    f"atoll dev: node {child.node.node_id} (pid {child.process.pid}) has"
                    f" not exited {KILL_TIMEOUT_S:g} s after SIGKILL"
                )
            elif child not in late and child.exited.result() != 0:
                self.faults += 1
                self.err(
                    f"atoll dev: node {child.node.node_id} stopped with"
                    f" {describe_exit(child.exited.result())}; see {child.log}"
                )


def _log_tail(path: Path) -> str:
    """The last `LOG_TAIL_LINES` lines of a node's log, indented, for an error."""
    try:
        with open(path, "rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - LOG_TAIL_BYTES_MAX))
            tail = file.read().decode("utf-8", "replace").splitlines()[-LOG_TAIL_LINES:]
    except OSError as err:
        return f"    (cannot read it: {err})"
    return "\n".join(f"    {line}" for line in tail)


def _count(nodes: Sequence[object]) -> str:
    return "1 node" if len(nodes) == 1 else f"{len(nodes)} nodes"


def _signal(process: asyncio.subprocess.Process, signum: signal.Signals) -> None:
    # It may have exited since the check; its exit task reports that.
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)


def _open_log(path: Path, node_id: int) -> BinaryIO:
    """The node's log, opened for appending with a line marking this start. (A small
    blocking open on the loop, before any node runs; nothing else waits on it.)"""
    file = open(path, "ab")  # noqa: SIM115 -- the caller closes it after the spawn
    file.write(f"--- atoll dev: starting node {node_id} ---\n".encode())
    file.flush()
    return file


async def _run(supervisor: Supervisor) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        return await supervisor.run(stop)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def main(root: Path, requested_nodes: int | None, out: Echo, err: Echo) -> int:
    """Run a dev cluster in `root` until Ctrl-C or SIGTERM; the exit status (see
    `Supervisor.run`). DevError (or ConfigFileError) if it cannot start."""
    root = root.resolve()
    credentials = credentials_from_env(os.environ)
    nodes, new = prepare(root, requested_nodes, credentials)
    if not new:
        out(f"atoll dev: restarting the {len(nodes)}-node cluster in {root}")
        if credentials is not None:
            out(f"atoll dev: {ACCESS_KEY_ENV}/{SECRET_KEY_ENV} ignored: the cluster keeps its own")
    return asyncio.run(_run(Supervisor(root, nodes, out, err)))
