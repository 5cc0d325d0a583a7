"""`atoll dev`: a local cluster of real node processes on 127.0.0.1, for development
and for trying Atoll (shared/DESIGN.md §1). Does I/O: files, sockets (to pick and
check ports, and to probe the cluster), child processes, signals and the terminal.
The decisions (the dev directory's layout, the port plan, configs, cluster.json) are
in `atoll.server.dev_plan`.

The root credentials are the cluster's (stored in its map): `ATOLL_ACCESS_KEY` and
`ATOLL_SECRET_KEY` choose them on the first start, else the cluster generates them;
either way they are printed and kept across restarts.

Running again on the same directory restarts the same cluster (same node ids, same
ports, same data) from its configs. The supervisor starts every node as
`python -m atoll.cli server --config FILE`, waits until a write through the KV client
reads back, every node's devices are in PG tables that are final (`unplaced`) and
every S3 gateway answers a signed ListBuckets, and then only watches:
a node that exits is reported, not restarted, and the others keep running. Ctrl-C or
SIGTERM stops every node (SIGTERM, then SIGKILL after `STOP_TIMEOUT_S`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from atoll.server.config import load
from atoll.server.dev_plan import (
    ACCESS_KEY_ENV,
    CLUSTER_FILE,
    CONFIG_FILE,
    CONTROL_SOCKET,
    HOST,
    NODE_DIR_PREFIX,
    S3_REGION,
    SECRET_KEY_ENV,
    SETTINGS_FILE,
    DevError,
    DevNode,
    aws_cli_example,
    check_devices_per_node,
    check_node_count,
    check_s3_port,
    cluster_from_configs,
    config_path,
    credentials_from_env,
    describe_exit,
    kv_endpoints,
    log_path,
    node_dir,
    parse_settings,
    plan_added_node,
    plan_nodes,
    plan_ports,
    port_conflicts,
    render_cluster_json,
    render_config,
    render_settings,
    s3_endpoint,
    split_address,
)

if TYPE_CHECKING:  # the meta modules load only when a dev cluster starts
    from atoll.meta.cluster_map import ClusterMap

# Re-exported: callers (the CLI, tests) reach these through `atoll.server.dev`.
__all__ = [
    "CLUSTER_FILE",
    "DevError",
    "DevNode",
    "Supervisor",
    "kv_endpoints",
    "main",
    "pick_free_ports",
    "prepare",
    "s3_list_buckets_status",
    "split_address",
]

SERVE_TIMEOUT_S = 60.0  # from the first start to a probe write that reads back
PROBE_ATTEMPT_TIMEOUT_S = 5.0  # one probe: connect, put, get
PROBE_RETRY_INTERVAL_S = 0.25  # between failed probes (an election may be running)
S3_PROBE_TIMEOUT_S = 5.0  # one signed ListBuckets to one gateway
STOP_TIMEOUT_S = 10.0  # from SIGTERM to exit, before SIGKILL
CONTROL_READ_TIMEOUT_S = 10.0  # a control request's line
CONTROL_REPLY_TIMEOUT_S = SERVE_TIMEOUT_S + 30.0  # what `atoll dev stop-node` & co wait
KILL_TIMEOUT_S = 5.0  # from SIGKILL to the exit being reaped
LOG_TAIL_LINES = 5  # of a node that failed at start, shown in the error
LOG_TAIL_BYTES_MAX = 8192

# Under \x00atoll/, a prefix kept for the system; left in place after the probe.
PROBE_KEY = b"\x00atoll/dev/probe"


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
    root: Path,
    requested_nodes: int | None,
    credentials: tuple[str, str] | None = None,
    requested_devices: int | None = None,
    requested_s3_port: int | None = None,
    settings: Sequence[tuple[str, str]] = (),
) -> tuple[tuple[DevNode, ...], bool]:
    """Set up `root` for a run: read the cluster already there, or plan a new one on
    free ports (node 1's S3 port as requested) and write its configs (the first
    node's with the root `credentials`, if given: an existing cluster keeps its
    own). Returns the members and whether they are new. DevError, before anything is
    written or started, if the ports the cluster needs are taken."""
    root.mkdir(parents=True, exist_ok=True)
    existing = read_cluster(root)
    count = check_node_count(None if existing is None else len(existing), requested_nodes, root)
    devices = check_devices_per_node(
        None if existing is None else existing[0].devices, requested_devices, root
    )
    s3_port = check_s3_port(
        None if existing is None else _port_of(existing[0].s3_address), requested_s3_port, root
    )
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
    if s3_port and not port_is_free(f"{HOST}:{s3_port}"):
        raise DevError(
            f"the S3 port {HOST}:{s3_port} is in use (another `atoll dev`, or another"
            f" S3 server?); choose another with --s3-port PORT, or --s3-port 0 for any free one"
        )
    nodes = plan_nodes(count, plan_ports(count, s3_port, pick_free_ports(3 * count + 1)), devices)
    write_atomically(root / SETTINGS_FILE, render_settings(settings))
    for node in nodes:
        node_dir(root, node.node_id).mkdir(exist_ok=True)
        write_atomically(
            config_path(root, node.node_id),
            render_config(root, node, nodes, credentials, settings),
        )
    return nodes, True


def _port_of(address: str) -> int:
    return split_address(address)[1] if address else 0


def node_command(config: Path) -> list[str]:
    """The command line of one node process (`atoll server --config FILE`)."""
    return [sys.executable, "-m", "atoll.cli", "server", "--config", str(config)]


def unplaced(m: ClusterMap, nodes: Sequence[DevNode]) -> str | None:
    """Why writes may still be refused with the map `m`, or None: a node with devices
    that has none in the map yet (its devices join the PG tables when it registers),
    or a pool whose PG table the meta leader is about to place again over the devices
    as they are now. A write routed with the table in between is refused by the
    devices that have the new one: a fresh cluster's first PUTs failed with 503."""
    waiting = [n.node_id for n in nodes if n.devices and not m.devices_of(n.node_id)]
    if waiting:
        return f"node(s) {waiting} have no device in the cluster map yet"
    stale = m.stale_pools()
    if stale:
        names = ", ".join(pool.name for pool in stale)
        return f"the PG tables of pool(s) {names} are about to be placed again"
    return None


@dataclass(frozen=True)
class MapState:
    """What the supervisor waits for in the cluster map: the root credentials (None
    before the bootstrap) and, once there are some, `unplaced`'s reason (None: ready)."""

    credentials: tuple[str, str] | None
    unplaced: str | None


async def map_state(rpc_addresses: Sequence[str], nodes: Sequence[DevNode]) -> MapState:
    """`MapState` of the cluster map as the meta group has it (one read)."""
    from atoll.meta.client import MetaClient

    client = MetaClient(rpc_addresses)
    try:
        m = await client.read_map()
    finally:
        await client.close()
    if m.root is None:
        return MapState(None, None)
    return MapState((m.root.access_key, m.root.secret_key), unplaced(m, nodes))


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


async def s3_list_buckets_status(
    address: str, credentials: tuple[str, str], timeout_s: float = S3_PROBE_TIMEOUT_S
) -> int:
    """The HTTP status of a ListBuckets signed with `credentials` (SigV4), sent to the
    S3 gateway at `address` (host:port). Raises what aiohttp raises when the gateway
    does not answer (refused, timed out)."""
    import aiohttp  # loads only when a dev cluster starts

    from atoll.gateway.sigv4 import Headers, Request, sign_request

    signed = sign_request(
        Request("GET", "/", (), Headers([("host", address)])),
        access_key=credentials[0],
        secret_key=credentials[1],
        region=S3_REGION,
        now_s=time.time(),
        payload_hash=hashlib.sha256(b"").hexdigest(),
    )
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
        session.get(f"http://{address}/", headers=dict(signed.headers)) as response,
    ):
        await response.read()
        return response.status


Probe = Callable[[Sequence[str], bytes], Awaitable[None]]
MapProbe = Callable[[Sequence[str], Sequence[DevNode]], Awaitable[MapState]]
S3Probe = Callable[[str, "tuple[str, str]"], Awaitable[int]]
Echo = Callable[[str], None]


@dataclass
class _Child:
    node: DevNode
    process: asyncio.subprocess.Process
    exited: asyncio.Task[int]
    log: Path


class Supervisor:
    """Starts the nodes of `nodes`, waits until the cluster serves (KV and every S3
    gateway), writes cluster.json, reports nodes that exit, and stops them all when
    `stop` is set. `command` and the probes are parameters so that a test can run
    fake nodes."""

    def __init__(
        self,
        root: Path,
        nodes: Sequence[DevNode],
        out: Echo,
        err: Echo,
        command: Callable[[Path], Sequence[str]] = node_command,
        probe: Probe = client_probe,
        map_probe: MapProbe = map_state,
        s3_probe: S3Probe = s3_list_buckets_status,
    ) -> None:
        self.root = root
        self.nodes = list(nodes)
        self.out = out
        self.err = err
        self.command = command
        self.probe = probe
        self.map_probe = map_probe
        self.s3_probe = s3_probe
        self.credentials: tuple[str, str] | None = None
        self.children: list[_Child] = []
        self.faults = 0
        self.last_probe_error: Exception | None = None
        self._wrote_cluster_file = False
        self._stop_requested: set[int] = set()  # nodes `stop-node` is stopping
        self._children_changed = asyncio.Event()
        self._control_lock = asyncio.Lock()

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
        for node in self.nodes:
            await self._spawn(node)

    async def _spawn(self, node: DevNode) -> _Child:
        log = log_path(self.root, node.node_id)
        with _open_log(log, node.node_id) as file:
            process = await asyncio.create_subprocess_exec(
                *self.command(config_path(self.root, node.node_id)),
                stdin=subprocess.DEVNULL,
                stdout=file,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                # Ctrl-C reaches only the supervisor, which stops the nodes itself.
                start_new_session=True,
            )
        child = _Child(node, process, asyncio.create_task(process.wait()), log)
        self.children.append(child)
        self._children_changed.set()
        return child

    def _running(self, node_id: int) -> _Child | None:
        for child in self.children:
            if child.node.node_id == node_id and not child.exited.done():
                return child
        return None

    def _write_cluster_file(self) -> None:
        pids: dict[int, int | None] = {}
        for node in self.nodes:
            child = self._running(node.node_id)
            pids[node.node_id] = None if child is None else child.process.pid
        write_atomically(
            self.root / CLUSTER_FILE, render_cluster_json(self.nodes, pids, self.credentials)
        )
        self._wrote_cluster_file = True

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
        endpoints = [node.kv_address for node in self.nodes if node.member]
        value = os.urandom(8).hex().encode()
        while True:
            try:
                async with asyncio.timeout(PROBE_ATTEMPT_TIMEOUT_S):
                    await self.probe(endpoints, value)
                    # Serving means the cluster map is bootstrapped too (its root
                    # credentials are printed and written into cluster.json), and every
                    # node's devices are in PG tables that are final.
                    state = await self.map_probe(
                        [node.rpc_address for node in self.nodes if node.member], self.nodes
                    )
                self.credentials = state.credentials
                if self.credentials is None:
                    self.last_probe_error = DevError("the cluster map is not bootstrapped yet")
                elif state.unplaced is not None:
                    self.last_probe_error = DevError(state.unplaced)
                elif await self._s3_serves(self.credentials):
                    return
            except Exception as error:  # any failure means "not yet"; reported on timeout
                self.last_probe_error = error
            await asyncio.sleep(PROBE_RETRY_INTERVAL_S)

    async def _s3_serves(self, credentials: tuple[str, str]) -> bool:
        """Whether every node's S3 gateway answers a signed ListBuckets with 200 (a
        gateway that has not bound its port yet raises, which means "not yet")."""
        for node in self.nodes:
            if not node.s3_address:
                continue
            async with asyncio.timeout(S3_PROBE_TIMEOUT_S):
                status = await self.s3_probe(node.s3_address, credentials)
            if status != 200:
                self.last_probe_error = DevError(
                    f"node {node.node_id}'s S3 gateway at {node.s3_address} answered a"
                    f" signed ListBuckets with HTTP {status}"
                )
                return False
        return True

    def _announce(self) -> None:
        cluster_file = self.root / CLUSTER_FILE
        self._write_cluster_file()
        self.out(f"atoll dev: {_count(self.nodes)} serving")
        for child in self.children:
            node = child.node
            s3 = f"  s3 {s3_endpoint(node.s3_address)}" if node.s3_address else ""
            self.out(
                f"  node {node.node_id}: kv {node.kv_address}  rpc {node.rpc_address}{s3}"
                f"  pid {child.process.pid}  log {child.log}"
            )
        members = [node for node in self.nodes if node.member]
        self.out(f"endpoints: {','.join(node.kv_address for node in members)}")
        gateways = [node for node in self.nodes if node.s3_address]
        if gateways:
            self.out(f"S3 endpoint: {s3_endpoint(gateways[0].s3_address)}")
        else:
            self.out(
                "no S3 gateway: the configs in this directory predate them; remove it to"
                " start a new cluster with gateways"
            )
        if self.credentials is not None:
            access, secret = self.credentials
            self.out(f"root credentials: access key {access}  secret key {secret}")
            if gateways:
                self.out("try:")
                endpoint = s3_endpoint(gateways[0].s3_address)
                self.out(f"  {aws_cli_example(endpoint, self.credentials)}")
        self.out(f"cluster file: {cluster_file}")
        self.out("Ctrl-C stops the cluster.")

    async def _supervise(self, stop: asyncio.Event) -> None:
        """Report every node that exits (not restarting it) until `stop` is set or no
        node is left; meanwhile serve the control socket (`stop-node`, `start-node`,
        `add-node`). A node stopped through it is not a fault."""
        stopper = asyncio.create_task(stop.wait())
        control = await self._serve_control()
        watched: dict[asyncio.Task[int], _Child] = {}
        seen: set[int] = set()
        try:
            while True:
                for child in self.children:
                    if id(child) not in seen:
                        seen.add(id(child))
                        watched[child.exited] = child
                if not watched:
                    self.err("atoll dev: every node has exited")
                    return
                self._children_changed.clear()
                changed = asyncio.create_task(self._children_changed.wait())
                try:
                    done, _ = await asyncio.wait(
                        {stopper, changed, *watched}, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    changed.cancel()
                for exited in [task for task in watched if task in done]:
                    child = watched.pop(exited)
                    if child.node.node_id in self._stop_requested:
                        continue
                    self.faults += 1
                    self.err(
                        f"atoll dev: node {child.node.node_id} exited"
                        f" ({describe_exit(exited.result())}); not restarting it;"
                        f" see {child.log}"
                    )
                if stopper in done:
                    return
        finally:
            stopper.cancel()
            await asyncio.wait({stopper})
            control.close()
            await control.wait_closed()
            (self.root / CONTROL_SOCKET).unlink(missing_ok=True)

    # -- the control socket ----------------------------------------------------------------

    async def _serve_control(self) -> asyncio.Server:
        path = self.root / CONTROL_SOCKET
        path.unlink(missing_ok=True)
        return await asyncio.start_unix_server(self._control, path=str(path))

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request (a JSON line `{"op": ..., "node": N}`), one reply (a JSON line
        `{"ok": bool, "message": str}`); requests run one at a time."""
        try:
            line = await asyncio.wait_for(reader.readline(), CONTROL_READ_TIMEOUT_S)
            async with self._control_lock:
                message = await self._control_op(json.loads(line))
            reply = {"ok": True, "message": message}
        except (DevError, ValueError, KeyError, TypeError, TimeoutError) as err:
            reply = {"ok": False, "message": str(err) or type(err).__name__}
        try:
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except OSError:
            pass  # the asker left
        finally:
            writer.close()

    async def _control_op(self, request: dict[str, object]) -> str:
        op = request["op"]
        if op == "add-node":
            return await self._add_node()
        node_id = int(str(request["node"]))
        if op == "stop-node":
            return await self._stop_node(node_id)
        if op == "start-node":
            return await self._start_node(node_id)
        raise DevError(f"unknown control request {op!r}")

    def _node(self, node_id: int) -> DevNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise DevError(f"no node {node_id} in this cluster")

    async def _stop_node(self, node_id: int) -> str:
        self._node(node_id)
        child = self._running(node_id)
        if child is None:
            raise DevError(f"node {node_id} is not running")
        self._stop_requested.add(node_id)
        _signal(child.process, signal.SIGTERM)
        done, _ = await asyncio.wait({child.exited}, timeout=STOP_TIMEOUT_S)
        if not done:
            _signal(child.process, signal.SIGKILL)
            await asyncio.wait({child.exited}, timeout=KILL_TIMEOUT_S)
        self._write_cluster_file()
        how = describe_exit(child.exited.result()) if child.exited.done() else "not reaped"
        return f"node {node_id} stopped ({how})"

    async def _start_node(self, node_id: int) -> str:
        node = self._node(node_id)
        if self._running(node_id) is not None:
            raise DevError(f"node {node_id} is running already")
        self._stop_requested.discard(node_id)
        child = await self._spawn(node)
        await self._until_node_serves(child)
        self._write_cluster_file()
        return f"node {node_id} started (pid {child.process.pid})"

    async def _add_node(self) -> str:
        members = [node for node in self.nodes if node.member]
        node = plan_added_node(self.nodes, pick_free_ports(3))
        node_dir(self.root, node.node_id).mkdir(exist_ok=True)
        settings_file = self.root / SETTINGS_FILE
        settings = parse_settings(settings_file.read_text()) if settings_file.exists() else []
        write_atomically(
            config_path(self.root, node.node_id),
            render_config(self.root, node, members, None, settings),
        )
        self.nodes.append(node)
        child = await self._spawn(node)
        await self._until_node_serves(child)
        self._write_cluster_file()
        return (
            f"node {node.node_id} added (pid {child.process.pid}): rpc {node.rpc_address}"
            f"  s3 {s3_endpoint(node.s3_address)}  log {child.log}"
        )

    async def _until_node_serves(self, child: _Child) -> None:
        """Until the node's S3 gateway answers a signed ListBuckets (it has joined the
        cluster); DevError if it exits first or `SERVE_TIMEOUT_S` passes."""
        node = child.node
        deadline = time.monotonic() + SERVE_TIMEOUT_S
        while time.monotonic() < deadline:
            if child.exited.done():
                raise DevError(
                    f"node {node.node_id} exited ({describe_exit(child.exited.result())});"
                    f" see {child.log}, which ends:\n" + _log_tail(child.log)
                )
            try:
                if node.s3_address and self.credentials is not None:
                    async with asyncio.timeout(S3_PROBE_TIMEOUT_S):
                        status = await self.s3_probe(node.s3_address, self.credentials)
                    if status == 200:
                        return
            except Exception as error:  # any failure means "not yet"; reported on timeout
                self.last_probe_error = error
            await asyncio.sleep(PROBE_RETRY_INTERVAL_S)
        raise DevError(
            f"node {node.node_id} did not serve within {SERVE_TIMEOUT_S:g} s"
            f" (last probe error: {self.last_probe_error!r}); see {child.log}"
        )

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


def control(root: Path, op: str, node_id: int | None = None) -> str:
    """Send one request (`stop-node`, `start-node`, `add-node`) to the `atoll dev`
    running in `root` through its control socket and wait for the outcome: its
    message, or DevError with the reason it refused (or that none runs there)."""
    path = root.resolve() / CONTROL_SOCKET
    if not path.exists():
        raise DevError(f"no `atoll dev` runs in {root} (no {path})")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(CONTROL_REPLY_TIMEOUT_S)
        try:
            sock.connect(str(path))
            sock.sendall(json.dumps({"op": op, "node": node_id}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError as err:
            raise DevError(f"cannot reach the `atoll dev` of {root} at {path}: {err}") from err
    try:
        reply = json.loads(data)
        ok, message = bool(reply["ok"]), str(reply["message"])
    except (ValueError, KeyError, TypeError) as err:
        raise DevError(f"`atoll dev` in {root} answered {data[:200]!r}") from err
    if not ok:
        raise DevError(message)
    return message


def main(
    root: Path,
    requested_nodes: int | None,
    out: Echo,
    err: Echo,
    requested_devices: int | None = None,
    requested_s3_port: int | None = None,
    settings: Sequence[tuple[str, str]] = (),
) -> int:
    """Run a dev cluster in `root` until Ctrl-C or SIGTERM; the exit status (see
    `Supervisor.run`). DevError (or ConfigFileError) if it cannot start."""
    root = root.resolve()
    credentials = credentials_from_env(os.environ)
    nodes, new = prepare(
        root, requested_nodes, credentials, requested_devices, requested_s3_port, settings
    )
    if not new:
        if settings:
            out("atoll dev: --set ignored: the cluster keeps the configs it has")
        out(f"atoll dev: restarting the {len(nodes)}-node cluster in {root}")
        if credentials is not None:
            out(f"atoll dev: {ACCESS_KEY_ENV}/{SECRET_KEY_ENV} ignored: the cluster keeps its own")
    return asyncio.run(_run(Supervisor(root, nodes, out, err)))
