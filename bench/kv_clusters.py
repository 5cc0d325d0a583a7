"""The two 3-member loopback clusters bench/kv.py measures: Atoll (three node processes
from TOML configs in a temp dir) and etcd (the peers script in ../shared/peers/), each
with its leader's endpoint and its members' process ids; and CPU accounting of processes
and of the machine from /proc; a probe of how fast the machine is right now (bench/s3.py
and bench/repair.py use these too). Does I/O: processes, files, sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio

from kv_client import ATOLL_ERROR_METADATA_KEY, get_request, put_request

try:
    from atoll.proto import kv_pb2
except ImportError:  # not installed: use the checkout's src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from atoll.proto import kv_pb2

SRC = Path(__file__).resolve().parents[1] / "src"
PEERS_DIR = Path(__file__).resolve().parents[2] / "shared" / "peers"
ETCD_BASE = Path(os.environ.get("ETCD3_BASE", "/tmp/etcd3"))
ETCD_ENDPOINTS = ("127.0.0.1:23791", "127.0.0.1:23792", "127.0.0.1:23793")
ETCD_START_TIMEOUT_S = 300.0  # includes an apt-get install when etcd is missing
ETCD_STOP_TIMEOUT_S = 30.0
NODE_LISTEN_TIMEOUT_S = 30.0
LEADER_TIMEOUT_S = 60.0
PROBE_TIMEOUT_S = 5.0
PROBE_RETRY_S = 0.2
NODE_STOP_TIMEOUT_S = 15.0
PROBE_KEY = b"bench-probe-0000"  # 16 bytes, outside the benchmark's key space
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass
class Cluster:
    system: str  # atoll | etcd
    endpoints: dict[str, str]  # member name -> KV endpoint host:port
    pids: dict[str, int]  # member name -> process id
    leader: str = ""  # member name
    data_dir: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def leader_endpoint(self) -> str:
        return self.endpoints[self.leader]

    @property
    def leader_pid(self) -> int:
        return self.pids[self.leader]


# -- CPU accounting --------------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat from field 3 (state) on; [] if the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process, all its threads (/proc/PID/stat
    fields 14 and 15); 0 if it is gone."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S if fields else 0.0


def descendants(pid: int) -> list[int]:
    """Live children, grandchildren, ... of `pid` (an Atoll node's KV gateways and
    compaction workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its live descendants, with the CPU of children
    they have already reaped (fields 16 and 17): a child that ends between two
    readings moves its CPU into its parent's, so a difference stays right."""
    total = 0
    for p in (pid, *descendants(pid)):
        fields = _stat(p)
        if fields:
            total += sum(int(f) for f in fields[11:15])
    return total / CLOCK_TICKS_PER_S


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine since boot, all CPUs (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # without guest time, which is already in user
    return (total - idle) / CLOCK_TICKS_PER_S, total / CLOCK_TICKS_PER_S


# -- common ----------------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


async def _unary(target: str, method: str, request: bytes) -> bytes:
    async with grpc.aio.insecure_channel(target) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
        return await call(request, timeout=PROBE_TIMEOUT_S)


# -- Atoll -----------------------------------------------------------------------------------


def check_encoding() -> None:
    """The hand-written request bytes are what Atoll's generated messages produce."""
    key, value = b"bench-k-00000001", bytes(range(256))
    expected_put = kv_pb2.PutRequest(key=key, value=value).SerializeToString()
    expected_get = kv_pb2.GetRequest(key=key, serializable=False).SerializeToString()
    if put_request(key, value) != expected_put or get_request(key) != expected_get:
        raise AssertionError("bench/kv_client.py encodes requests unlike atoll.proto.kv_pb2")


def _atoll_config(node_id: int, data_dir: Path, ports: list[int], extra: str = "") -> str:
    members = "".join(
        f'[[nodes]]\nid = {i}\nrpc = "127.0.0.1:{ports[2 * (i - 1)]}"\n'
        f'kv = "127.0.0.1:{ports[2 * (i - 1) + 1]}"\n'
        for i in (1, 2, 3)
    )
    return (
        f"node_id = {node_id}\n"
        f'data_dir = "{data_dir / f"node-{node_id}"}"\n'
        f'rpc_address = "127.0.0.1:{ports[2 * (node_id - 1)]}"\n'
        f'kv_address = "127.0.0.1:{ports[2 * (node_id - 1) + 1]}"\n'
        f"{extra}"
        f"{members}"
    )


class AtollProcesses:
    """Three node processes; `stop()` sends SIGTERM and waits, then SIGKILL. `extra`:
    top-level lines added to every node's config (`lease_reads = false\n`)."""

    def __init__(self, data_dir: Path, extra: str = "") -> None:
        self.data_dir = data_dir
        self.extra = extra
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> Cluster:
        ports = free_ports(6)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), *sys.path])}
        endpoints = {}
        for node_id in (1, 2, 3):
            name = f"node-{node_id}"
            config = self.data_dir / f"{name}.toml"
            config.write_text(_atoll_config(node_id, self.data_dir, ports, self.extra))
            log = (self.data_dir / f"{name}.log").open("wb")
            code = f"from atoll.server.node import main; main({str(config)!r})"
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT, env=env
            )
            log.close()  # the child has its own descriptor
            endpoints[name] = f"127.0.0.1:{ports[2 * (node_id - 1) + 1]}"
        self._wait_listening()
        pids = {name: p.pid for name, p in self.procs.items()}
        return Cluster("atoll", endpoints, pids, data_dir=str(self.data_dir))

    def gateway_pids(self, name: str) -> list[int]:
        """The KV gateway processes of one node (`python -m atoll.kv.gateway`)."""
        node = self.procs[name].pid
        return [p for p in descendants(node) if "atoll.kv.gateway" in command_line(p)]

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + NODE_LISTEN_TIMEOUT_S
        waiting = set(self.procs)
        while waiting:
            for name in list(waiting):
                node_id = name.removeprefix("node-")
                log = (self.data_dir / f"{name}.log").read_text(errors="replace")
                if f"atoll node {node_id}: kv" in log:
                    waiting.discard(name)
                elif self.procs[name].poll() is not None:
                    raise RuntimeError(f"atoll {name} exited at start:\n{log[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"atoll nodes {sorted(waiting)} not listening after start")
            time.sleep(0.1)

    def check_alive(self) -> None:
        """Raise, with the tail of its log, if a node process has ended."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                log = (self.data_dir / f"{name}.log").read_text(errors="replace")
                raise RuntimeError(f"atoll {name} exited {proc.returncode}:\n{log[-4000:]}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + NODE_STOP_TIMEOUT_S
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


async def find_atoll_leader(cluster: Cluster) -> None:
    """Put until one succeeds; the reply's ResponseHeader.leader_id names the leader
    (KV gateways forward a write to the leader from any node). Without gateways a
    follower refuses the put with UNAVAILABLE and a KvError (NOT_LEADER) naming the
    leader's KV address, which is followed."""
    by_endpoint = {e: name for name, e in cluster.endpoints.items()}
    deadline = time.monotonic() + LEADER_TIMEOUT_S
    target = next(iter(by_endpoint))
    last = ""
    while time.monotonic() < deadline:
        try:
            reply = await _unary(target, "/atoll.kv.v1.KV/Put", put_request(PROBE_KEY, b"probe"))
            leader_id = kv_pb2.PutResponse.FromString(reply).header.leader_id
            cluster.leader = f"node-{leader_id}"
            if cluster.leader not in cluster.endpoints:
                cluster.leader = by_endpoint[target]  # no leader id: the node that answered
            return
        except grpc.aio.AioRpcError as err:
            last = f"{target}: {err.code().name} {err.details()}"
            hint = ""
            for key, value in err.trailing_metadata() or ():
                if key == ATOLL_ERROR_METADATA_KEY and isinstance(value, bytes):
                    hint = kv_pb2.KvError.FromString(value).leader_address
            if hint in by_endpoint:
                target = hint
                continue
            endpoints = list(by_endpoint)
            target = endpoints[(endpoints.index(target) + 1) % len(endpoints)]
            await asyncio.sleep(PROBE_RETRY_S)  # no leader known yet: an election runs
    raise TimeoutError(f"no atoll leader accepted a put in {LEADER_TIMEOUT_S} s ({last})")


# -- etcd ------------------------------------------------------------------------------------


def etcd_version() -> str:
    try:
        out = subprocess.run(
            ["etcd", "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.splitlines()[0].removeprefix("etcd Version: ") if out else "unknown"


class EtcdProcesses:
    """etcd 3.4, 3 members, through ../shared/peers/start_etcd3.sh (which installs the
    Debian package if missing, wipes its folder and starts a fresh cluster)."""

    script = PEERS_DIR / "start_etcd3.sh"

    def start(self) -> Cluster:
        out = subprocess.run(
            ["bash", str(self.script), "start"],
            capture_output=True,
            text=True,
            timeout=ETCD_START_TIMEOUT_S,
        )
        if out.returncode != 0:
            raise RuntimeError(f"{self.script} start failed:\n{out.stdout}\n{out.stderr}")
        pids = [int(p) for p in (ETCD_BASE / "pids").read_text().split()]
        names = [f"m{i}" for i in (1, 2, 3)]
        return Cluster(
            "etcd",
            dict(zip(names, ETCD_ENDPOINTS, strict=True)),
            dict(zip(names, pids, strict=True)),
            data_dir=str(ETCD_BASE),
        )

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                ["bash", str(self.script), "stop"], timeout=ETCD_STOP_TIMEOUT_S, check=False
            )


def _fields(message: bytes) -> dict[int, int | bytes]:
    """The varint and length-delimited fields of a protobuf message (last one wins)."""
    out: dict[int, int | bytes] = {}
    i = 0
    while i < len(message):
        tag, i = _read_varint(message, i)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            out[number], i = _read_varint(message, i)
        elif wire_type == 2:
            size, i = _read_varint(message, i)
            out[number], i = message[i : i + size], i + size
        elif wire_type in (1, 5):
            i += 8 if wire_type == 1 else 4
        else:
            raise ValueError(f"protobuf wire type {wire_type} at byte {i}")
    return out


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


async def find_etcd_leader(cluster: Cluster) -> None:
    """Maintenance.Status on each member: StatusResponse.leader (4) is the leader's
    member id; the member whose ResponseHeader.member_id (header = 1, member_id = 2)
    equals it is the leader (etcd api/etcdserverpb/rpc.proto)."""
    deadline = time.monotonic() + LEADER_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        try:
            for name, endpoint in cluster.endpoints.items():
                status = _fields(await _unary(endpoint, "/etcdserverpb.Maintenance/Status", b""))
                header = status.get(1, b"")
                member_id = _fields(header).get(2) if isinstance(header, bytes) else None
                if member_id is not None and status.get(4) == member_id:
                    cluster.leader = name
                    # one put, so that the leader is known to accept writes
                    await _unary(endpoint, "/etcdserverpb.KV/Put", put_request(PROBE_KEY, b"p"))
                    return
        except grpc.aio.AioRpcError as err:
            last = f"{err.code().name} {err.details()}"
        await asyncio.sleep(PROBE_RETRY_S)
    raise TimeoutError(f"no etcd member reported itself leader in {LEADER_TIMEOUT_S} s ({last})")


PROBE_BYTES = 256 * 1024 * 1024


def machine_probe(where: Path) -> dict[str, float]:
    """How fast this shared VM is right now, by three fixed pieces of work (best of 3
    each): a pure-Python loop (ms), a copy between two buffers already in use (GB/s),
    and a write of new data into the page cache of a file under `where`, not synced
    (ms per MB: each page freshly allocated, as for every shard a node writes). The
    same code measured hours apart here cost 20% more CPU per op in one run than in
    another; these figures say how much of such a gap is the machine."""

    def python_loop() -> None:
        table: dict[int, str] = {}
        for i in range(200_000):
            table[i] = str(i)
        sum(len(v) for v in table.values())

    source = bytearray(PROBE_BYTES)
    target = bytearray(PROBE_BYTES)

    def copy() -> None:
        memoryview(target)[:] = source

    path = where / f".atoll-probe-{os.getpid()}"

    def page_cache_write() -> None:
        with open(path, "wb", buffering=0) as f:
            view = memoryview(source)
            for at in range(0, PROBE_BYTES, 1 << 20):
                f.write(view[at : at + (1 << 20)])
        path.unlink()

    def best(fn: Callable[[], None]) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return min(times)

    megabytes = PROBE_BYTES / 1e6
    try:
        return {
            "python_loop_ms": 1000 * best(python_loop),
            "copy_gb_per_s": megabytes / 1000 / best(copy),
            "page_cache_write_ms_per_mb": 1000 * best(page_cache_write) / megabytes,
        }
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


PROBE_LABEL = "machine probe (best of 3; compare runs by these)"


def probe_text(probe: dict[str, float]) -> str:
    """`machine_probe`'s figures as a report says them."""
    return (
        f"pure-Python loop {probe['python_loop_ms']:.0f} ms, copy {probe['copy_gb_per_s']:.1f}"
        f" GB/s, page-cache write {probe['page_cache_write_ms_per_mb']:.2f} ms/MB"
    )
