"""A cluster of real Atoll node processes on 127.0.0.1 for integration tests: start,
kill -9, SIGSTOP/SIGCONT, restart with the same data, find the leader, and (with
`s3=True`) wait for the nodes' S3 gateways.

Each node runs `python -c "from atoll.server.node import main; main(CONFIG)"` with its
own TOML config and data directory under the test's temporary directory; its output
goes to `node-<id>.log` there.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from atoll.proto import kv_pb2, kv_pb2_grpc
from atoll.server.dev import pick_free_ports, s3_list_buckets_status

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
TICK_INTERVAL_MS = 50
ELECTION_TIMEOUT_TICKS = 10  # 0.5 s
S3_START_TIMEOUT_S = 60.0  # from start_all to a gateway answering ListBuckets
S3_POLL_INTERVAL_S = 0.1
# The root credentials a bootstrapping test cluster is created with, so tests can sign.
ROOT_ACCESS_KEY = "atoll-test-root"
ROOT_SECRET_KEY = "atoll-test-root-secret-key"


@dataclass
class Node:
    id: int
    rpc: str
    kv: str
    config: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    stopped: bool = False
    s3: str = ""  # host:port of its S3 gateway, "" without one


@dataclass
class Cluster:
    root: Path
    size: int = 3
    compact_after_entries: int = 10_000
    kv_gateway_processes: int = 1
    # The cluster map (atoll.meta): devices per node, whether node 1 bootstraps the
    # cluster (sizing default pools from size x devices_per_node), and its timers.
    devices_per_node: int = 0
    bootstrap: bool = False
    heartbeat_interval_s: float = 1.0
    down_after_s: float = 30.0
    # An S3 gateway on every node (`Node.s3`); with `bootstrap`, the root credentials
    # are ROOT_ACCESS_KEY / ROOT_SECRET_KEY.
    s3: bool = False
    # The gateways' stripe size (`stripe_bytes`); 0: the node's default.
    stripe_bytes: int = 0
    nodes: dict[int, Node] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ports = pick_free_ports(3 * self.size)
        for i in range(1, self.size + 1):
            self.nodes[i] = Node(
                i,
                f"127.0.0.1:{ports[3 * i - 3]}",
                f"127.0.0.1:{ports[3 * i - 2]}",
                self.root / f"node-{i}.toml",
                self.root / f"node-{i}.log",
                s3=f"127.0.0.1:{ports[3 * i - 1]}" if self.s3 else "",
            )
        members = "".join(
            f'[[nodes]]\nid = {n.id}\nrpc = "{n.rpc}"\nkv = "{n.kv}"\n' for n in self.nodes.values()
        )
        for n in self.nodes.values():
            extra = members
            if self.bootstrap and n.id == 1:
                extra += (
                    f"[bootstrap]\nhosts = {self.size}\n"
                    f"devices_per_host = {self.devices_per_node}\n"
                    f'root_access_key = "{ROOT_ACCESS_KEY}"\n'
                    f'root_secret_key = "{ROOT_SECRET_KEY}"\n'
                )
            self._write_config(n, extra)

    def _write_config(self, n: Node, tables: str, top: str = "") -> None:
        """`top` holds top-level keys; `tables` TOML tables, written last."""
        devices = "".join(
            f'[[devices]]\npath = "{self.root / f"dev-{n.id}-{i}"}"\n'
            for i in range(self.devices_per_node)
        )
        n.config.write_text(
            f"node_id = {n.id}\n"
            f'data_dir = "{self.root / f"data-{n.id}"}"\n'
            f'rpc_address = "{n.rpc}"\nkv_address = "{n.kv}"\n'
            f"tick_interval_ms = {TICK_INTERVAL_MS}\n"
            f"election_timeout_ticks = {ELECTION_TIMEOUT_TICKS}\n"
            f"compact_after_entries = {self.compact_after_entries}\n"
            f"kv_gateway_processes = {self.kv_gateway_processes}\n"
            f"heartbeat_interval_s = {self.heartbeat_interval_s}\n"
            f"down_after_s = {self.down_after_s}\n"
            + (f's3_address = "{n.s3}"\n' if n.s3 else "")
            + (f"stripe_bytes = {self.stripe_bytes}\n" if self.stripe_bytes else "")
            + top
            + devices
            + tables
        )

    def add_joiner(self, node_id: int, join: str) -> Node:
        """A node that is not an initial member: it joins through `join` (any node's
        rpc address) and stores data only. Start it with `start(node_id)`."""
        rpc, kv, s3 = (f"127.0.0.1:{port}" for port in pick_free_ports(3))
        n = Node(
            node_id,
            rpc,
            kv,
            self.root / f"node-{node_id}.toml",
            self.root / f"node-{node_id}.log",
            s3=s3 if self.s3 else "",
        )
        self.nodes[node_id] = n
        self._write_config(n, "", top=f'join = "{join}"\n')
        return n

    async def wait_s3(self, node_id: int, timeout_s: float = S3_START_TIMEOUT_S) -> None:
        """Until node `node_id`'s S3 gateway answers a ListBuckets signed with the root
        credentials with 200; TimeoutError (with the logs) after `timeout_s`."""
        n = self.nodes[node_id]
        assert n.s3, f"node {node_id} has no S3 gateway (Cluster(s3=True))"
        deadline = time.monotonic() + timeout_s
        last: object = None
        while time.monotonic() < deadline:
            try:
                last = await s3_list_buckets_status(n.s3, (ROOT_ACCESS_KEY, ROOT_SECRET_KEY))
                if last == 200:
                    return
            except Exception as error:  # not listening yet, or not answering yet
                last = error
            await asyncio.sleep(S3_POLL_INTERVAL_S)
        raise TimeoutError(
            f"node {node_id}'s S3 gateway at {n.s3} did not answer ListBuckets with 200"
            f" within {timeout_s}s (last: {last!r})\n{self.logs()}"
        )

    @property
    def endpoints(self) -> list[str]:
        return [n.kv for n in self.nodes.values()]

    def start(self, node_id: int) -> None:
        n = self.nodes[node_id]
        code = f"from atoll.server.node import main; main({str(n.config)!r})"
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
        with n.log.open("ab") as log:
            n.process = subprocess.Popen(
                [sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT, env=env
            )
        n.stopped = False

    def start_all(self) -> None:
        for node_id in self.nodes:
            self.start(node_id)

    def kill(self, node_id: int) -> None:
        n = self.nodes[node_id]
        if n.process is not None:
            if n.stopped:
                n.process.send_signal(signal.SIGCONT)
            n.process.kill()
            n.process.wait(STOP_TIMEOUT_S)
            n.process = None

    def pause(self, node_id: int) -> None:
        n = self.nodes[node_id]
        assert n.process is not None
        n.process.send_signal(signal.SIGSTOP)
        n.stopped = True

    def resume(self, node_id: int) -> None:
        n = self.nodes[node_id]
        assert n.process is not None
        n.process.send_signal(signal.SIGCONT)
        n.stopped = False

    def stop_all(self) -> list[int | None]:
        codes: list[int | None] = []
        for n in self.nodes.values():
            if n.process is None:
                codes.append(None)
                continue
            if n.stopped:
                n.process.send_signal(signal.SIGCONT)
            n.process.terminate()
            try:
                codes.append(n.process.wait(STOP_TIMEOUT_S))
            except subprocess.TimeoutExpired:
                n.process.kill()
                codes.append(n.process.wait(STOP_TIMEOUT_S))
            n.process = None
        return codes

    def logs(self) -> str:
        return "\n".join(
            f"--- node {n.id}\n" + n.log.read_text(errors="replace")[-3000:]
            for n in self.nodes.values()
            if n.log.exists()
        )

    async def leader(self, timeout_s: float = START_TIMEOUT_S) -> int:
        """The node that every running node names as leader, once all of them answer
        on their KV endpoints, agree, and that node calls itself leader (a serializable
        get reports each node's view)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            views = {}
            for n in self.nodes.values():
                if n.process is None or n.stopped:
                    continue
                views[n.id] = await self._leader_view(n)
            named = set(views.values())
            if len(named) == 1 and 0 not in named:
                leader = named.pop()  # every running node's KV endpoint answers, naming it
                if views.get(leader) == leader:
                    return leader
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no agreed leader within {timeout_s}s\n{self.logs()}")

    async def _leader_view(self, n: Node) -> int:
        async with grpc.aio.insecure_channel(n.kv) as channel:
            stub = kv_pb2_grpc.KVStub(channel)  # type: ignore[no-untyped-call]
            try:
                response = await stub.Get(
                    kv_pb2.GetRequest(key=b"\x00probe", serializable=True), timeout=1.0
                )
            except grpc.aio.AioRpcError:
                return 0
            return int(response.header.leader_id)
