"""A node's configuration file (TOML), validated once at start-up into a frozen
dataclass (shared/STYLE.md §7). Pure apart from reading the file.

```toml
node_id = 1
data_dir = "/abs/path/node-1"
rpc_address = "127.0.0.1:7001"   # node-to-node (atoll.rpc): listen and advertised
kv_address = "127.0.0.1:7101"    # public gRPC KV API: listen and advertised
s3_address = "127.0.0.1:9000"    # optional: the S3 gateway (HTTP); "" or absent = none
tick_interval_ms = 100           # optional
election_timeout_ticks = 10      # optional
lease_reads = true               # optional: linearizable reads by leader lease
engine = "lsm"                   # optional: lsm | lmdb
compact_after_entries = 10000    # optional: snapshot and cut the Raft log this often
kv_gateway_processes = 1         # optional: gRPC front-end processes (0: in the node)
zone = ""                        # optional: failure domains for placement
rack = ""                        # optional
heartbeat_interval_s = 1.0       # optional: heartbeats to the meta leader
down_after_s = 30.0              # optional: a node silent this long is marked down
out_after_s = 600.0              # optional: a node down this long is marked out (its PGs move)
repair_bytes_per_s = 33554432    # optional: rebuilt shard bytes per second on this node (0: no limit)
repair_shards_max = 1            # optional: shards this node rebuilds at once
repair_pgs_max = 2               # optional: PGs this node rebuilds at once
repair_interval_s = 5.0          # optional: pause between repair passes
scrub_bytes_per_s = 33554432     # optional: shard bytes the background scrub reads per second (0: no limit)
scrub_interval_s = 86400.0       # optional: pause between background scrub passes
gc_grace_s = 3600.0              # optional: shard files younger than this are never collected
gc_interval_s = 600.0            # optional: pause between garbage-collection passes
stripe_bytes = 4194304           # optional: stripe size of the objects this gateway writes
join = ""                        # optional: a node's rpc address; see below
[[nodes]]                        # every initial member, this node included
id = 1
rpc = "127.0.0.1:7001"
kv = "127.0.0.1:7101"
[[devices]]                      # optional: the directories this node stores shards in
path = "/abs/path/node-1/dev-0"
capacity_bytes = 0               # optional: 0 = the file system's size
[bootstrap]                      # optional: create the cluster if the map is empty
hosts = 3                        # the hosts and devices to expect: default pools are
devices_per_host = 2             # sized from them (issue 4 section 1)
root_access_key = ""             # optional: fixed root keys (else random)
root_secret_key = ""
```

`lease_reads` (on by default) lets a Raft leader answer linearizable reads while
its lease holds (a majority acknowledged a heartbeat less than an election timeout
ago, less a margin of two ticks for clock drift; check-quorum makes those followers
refuse votes meanwhile) instead of confirming its leadership with a heartbeat round
per batch of reads. It assumes the nodes' monotonic clocks run at about the same
rate; a paused leader counts the ticks it missed before it answers anything. Off
(`false`), every read costs a ReadIndex round, as etcd's default.

`stripe_bytes` (4 MiB by default) is the stripe size of the objects this node's S3
gateway writes: each of a pool's k data shards takes a block of `stripe_bytes / k`
bytes of each stripe, verified by its own CRC-32C (docs/formats/shard_file.md). Each
part records its stripe size, so nodes with different values read each other's objects.
Larger stripes cost fewer calls and hand-offs per byte on every path (repair rebuilt
a 3 GiB cluster's lost shards at 93 MB/s with 4 MiB stripes, 73 MB/s with 1 MiB);
smaller ones read less for a small range of a large object (a range read fetches whole
blocks) and hold less per request in flight.

The initial members (`[[nodes]]`) are the meta group's voters and the KV region's
replicas. A node that is not one of them joins an existing cluster instead: it sets
`join` to any node's rpc address (or `atoll server --join ADDR`) and leaves out
`[[nodes]]`; it registers itself and its devices in the cluster map and stores data.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atoll.base.errors import AtollError
from atoll.erasure.stripe import BLOCK_SIZE_DEFAULT_BYTES, BLOCK_SIZE_MAX_BYTES

KV_GATEWAY_PROCESSES_MAX = 16
STRIPE_BYTES_MIN = 4096


class ConfigFileError(AtollError, ValueError):
    """The configuration file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class Member:
    id: int
    rpc: str
    kv: str


@dataclass(frozen=True)
class Device:
    path: Path
    capacity_bytes: int = 0


@dataclass(frozen=True)
class Bootstrap:
    hosts: int
    devices_per_host: int
    root_access_key: str = ""
    root_secret_key: str = ""


@dataclass(frozen=True)
class NodeConfig:
    node_id: int
    data_dir: Path
    rpc_address: str
    kv_address: str
    nodes: tuple[Member, ...]
    tick_interval_ms: int = 100
    election_timeout_ticks: int = 10
    lease_reads: bool = True
    engine: str = "lsm"
    compact_after_entries: int = 10_000
    kv_gateway_processes: int = 1
    zone: str = ""
    rack: str = ""
    devices: tuple[Device, ...] = ()
    heartbeat_interval_s: float = 1.0
    down_after_s: float = 30.0
    out_after_s: float = 600.0
    repair_bytes_per_s: int = 32 << 20
    repair_shards_max: int = 1
    repair_pgs_max: int = 2
    repair_interval_s: float = 5.0
    scrub_bytes_per_s: int = 32 << 20
    scrub_interval_s: float = 86_400.0
    join: str = ""
    bootstrap: Bootstrap | None = None
    s3_address: str = ""  # "" = no S3 gateway on this node
    gc_grace_s: float = 3600.0
    gc_interval_s: float = 600.0
    stripe_bytes: int = BLOCK_SIZE_DEFAULT_BYTES

    @property
    def member(self) -> bool:
        """One of the initial members (meta voter, KV replica)."""
        return any(m.id == self.node_id for m in self.nodes)


def _address(value: Any, where: str) -> str:
    if not isinstance(value, str) or ":" not in value:
        raise ConfigFileError(f"{where}: expected host:port, got {value!r}")
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigFileError(f"{where}: expected host:port, got {value!r}")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigFileError(f"{where}: expected true or false, got {value!r}")
    return value


def parse(data: dict[str, Any], source: str = "config") -> NodeConfig:
    try:
        node_id = data["node_id"]
        members = tuple(
            Member(
                int(m["id"]),
                _address(m["rpc"], f"{source}: nodes[{i}].rpc"),
                _address(m["kv"], f"{source}: nodes[{i}].kv"),
            )
            for i, m in enumerate(data.get("nodes", ()))
        )
        devices = tuple(
            Device(Path(d["path"]), int(d.get("capacity_bytes", 0)))
            for d in data.get("devices", ())
        )
        bootstrap = None
        if "bootstrap" in data:
            b = data["bootstrap"]
            bootstrap = Bootstrap(
                int(b["hosts"]),
                int(b["devices_per_host"]),
                str(b.get("root_access_key", "")),
                str(b.get("root_secret_key", "")),
            )
        join = str(data.get("join", ""))
        s3_address = data.get("s3_address", "")
        config = NodeConfig(
            node_id=int(node_id),
            data_dir=Path(data["data_dir"]),
            rpc_address=_address(data["rpc_address"], f"{source}: rpc_address"),
            kv_address=_address(data["kv_address"], f"{source}: kv_address"),
            nodes=members,
            tick_interval_ms=int(data.get("tick_interval_ms", 100)),
            election_timeout_ticks=int(data.get("election_timeout_ticks", 10)),
            lease_reads=_bool(data.get("lease_reads", True), f"{source}: lease_reads"),
            engine=str(data.get("engine", "lsm")),
            compact_after_entries=int(data.get("compact_after_entries", 10_000)),
            kv_gateway_processes=int(data.get("kv_gateway_processes", 1)),
            zone=str(data.get("zone", "")),
            rack=str(data.get("rack", "")),
            devices=devices,
            heartbeat_interval_s=float(data.get("heartbeat_interval_s", 1.0)),
            down_after_s=float(data.get("down_after_s", 30.0)),
            out_after_s=float(data.get("out_after_s", 600.0)),
            repair_bytes_per_s=int(data.get("repair_bytes_per_s", 32 << 20)),
            repair_shards_max=int(data.get("repair_shards_max", 1)),
            repair_pgs_max=int(data.get("repair_pgs_max", 2)),
            repair_interval_s=float(data.get("repair_interval_s", 5.0)),
            scrub_bytes_per_s=int(data.get("scrub_bytes_per_s", 32 << 20)),
            scrub_interval_s=float(data.get("scrub_interval_s", 86_400.0)),
            join=_address(join, f"{source}: join") if join else "",
            bootstrap=bootstrap,
            s3_address=("" if s3_address == "" else _address(s3_address, f"{source}: s3_address")),
            gc_grace_s=float(data.get("gc_grace_s", 3600.0)),
            gc_interval_s=float(data.get("gc_interval_s", 600.0)),
            stripe_bytes=int(data.get("stripe_bytes", BLOCK_SIZE_DEFAULT_BYTES)),
        )
    except KeyError as err:
        raise ConfigFileError(f"{source}: missing field {err.args[0]!r}") from err
    except (TypeError, ValueError) as err:
        raise ConfigFileError(f"{source}: {err}") from err
    ids = [m.id for m in config.nodes]
    if config.join:
        if ids:
            raise ConfigFileError(f"{source}: a joining node lists no [[nodes]]")
        if config.node_id <= 0:
            raise ConfigFileError(f"{source}: node_id must be positive")
    elif not ids or len(set(ids)) != len(ids) or config.node_id not in ids or min(ids) <= 0:
        raise ConfigFileError(
            f"{source}: node ids {ids} must be distinct, positive, include {config.node_id}"
            " (or set join to an existing node's rpc address)"
        )
    if config.heartbeat_interval_s <= 0 or config.down_after_s <= config.heartbeat_interval_s:
        raise ConfigFileError(f"{source}: need 0 < heartbeat_interval_s < down_after_s")
    if not config.out_after_s > config.down_after_s:
        raise ConfigFileError(f"{source}: need down_after_s < out_after_s")
    if config.repair_bytes_per_s < 0 or not 1 <= config.repair_pgs_max <= 64:
        raise ConfigFileError(f"{source}: need repair_bytes_per_s >= 0 and repair_pgs_max in 1..64")
    if not 1 <= config.repair_shards_max <= 64:
        raise ConfigFileError(f"{source}: need repair_shards_max in 1..64")
    if not config.repair_interval_s > 0:
        raise ConfigFileError(f"{source}: need repair_interval_s > 0")
    if config.scrub_bytes_per_s < 0 or not config.scrub_interval_s > 0:
        raise ConfigFileError(f"{source}: need scrub_bytes_per_s >= 0 and scrub_interval_s > 0")
    if not (config.gc_grace_s >= 0 and config.gc_interval_s > 0):
        raise ConfigFileError(f"{source}: need gc_grace_s >= 0 and gc_interval_s > 0")
    if not STRIPE_BYTES_MIN <= config.stripe_bytes <= BLOCK_SIZE_MAX_BYTES:
        raise ConfigFileError(
            f"{source}: need stripe_bytes in {STRIPE_BYTES_MIN}..{BLOCK_SIZE_MAX_BYTES}"
        )
    if config.bootstrap is not None and (
        config.bootstrap.hosts < 1 or config.bootstrap.devices_per_host < 1
    ):
        raise ConfigFileError(f"{source}: bootstrap hosts and devices_per_host must be >= 1")
    if len({d.path for d in config.devices}) != len(config.devices):
        raise ConfigFileError(f"{source}: device paths must be distinct")
    if config.tick_interval_ms <= 0 or config.election_timeout_ticks < 3:
        raise ConfigFileError(f"{source}: tick_interval_ms > 0 and election_timeout_ticks >= 3")
    if not 0 <= config.kv_gateway_processes <= KV_GATEWAY_PROCESSES_MAX:
        raise ConfigFileError(
            f"{source}: kv_gateway_processes must be in [0, {KV_GATEWAY_PROCESSES_MAX}]"
        )
    if config.s3_address and config.s3_address in (config.rpc_address, config.kv_address):
        raise ConfigFileError(
            f"{source}: s3_address {config.s3_address} is also the rpc or kv address"
        )
    if config.compact_after_entries < 1:
        raise ConfigFileError(f"{source}: compact_after_entries must be positive")
    if config.engine not in ("lsm", "lmdb"):
        raise ConfigFileError(f"{source}: engine must be lsm or lmdb, not {config.engine!r}")
    return config


def load(path: Path, join: str = "") -> NodeConfig:
    """The configuration in `path`; `join` (`atoll server --join ADDR`) overrides the
    file's `join`."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigFileError(f"{path}: {err}") from err
    if join:
        data["join"] = join
    return parse(data, str(path))
