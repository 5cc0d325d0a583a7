"""The fault suite's harness (issue 6 §4): a 4-node `atoll dev` cluster (real node
processes, 2 devices each, pools `standard` 4+2 and `replicated` 1+2) with short
timers, a boto3 workload that records every acknowledged PUT with its sha256, and
the checks every scenario ends with.

Nothing here sleeps instead of waiting for a condition: `wait_for` polls a
predicate of `atoll status --json` (the real command) until a deadline."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from dev_harness import SRC, DevRun, start_dev, stop_dev

REGION = "us-east-1"
MIB = 1 << 20

# Short timers: down after 3 s of silence, out 6 s later; repair passes every second.
SETTINGS = (
    "down_after_s=3",
    "out_after_s=6",
    "repair_interval_s=1",
    "gc_grace_s=3600",
)


@dataclass
class Cluster(DevRun):
    """A running `atoll dev` with the fault suite's helpers."""

    def node(self, node_id: int) -> dict[str, Any]:
        return next(n for n in self.document["nodes"] if n["id"] == node_id)

    def s3(self, node_id: int) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.node(node_id)["s3"],
            aws_access_key_id=self.document["access_key"],
            aws_secret_access_key=self.document["secret_key"],
            region_name=REGION,
            # boto3's standard retries, as any S3 client has: a 503 while a Raft group
            # elects a new leader is retried.
            config=Config(
                retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=60
            ),
        )

    def signal(self, node_id: int, signum: signal.Signals) -> None:
        os.kill(int(self.node(node_id)["pid"]), signum)

    def cli(
        self, *args: str, timeout_s: float = 600.0, with_cluster: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`atoll ARGS... [--cluster <its cluster.json>]` (the real command)."""
        where = ["--cluster", str(self.root / "cluster.json")] if with_cluster else []
        return subprocess.run(
            [sys.executable, "-m", "atoll.cli", *args, *where],
            env=dict(os.environ, PYTHONPATH=SRC),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def shard_files(self) -> list[Path]:
        """Every shard file on every device of the cluster."""
        return sorted(self.root.glob("node-*/dev-*/pgs/*/*.shard"))

    def forensics(self, text: str) -> str:
        """For a failure message: the shard files of every PG `text` names ("pg P.G")
        on every node's devices, and the nodes' log lines about those PGs and the
        repair passes, so that a rare failure says what the cluster held and did."""
        pgs = sorted(set(re.findall(r"\(pg (\d+\.\d+)\)", text)))
        if not pgs:
            return ""
        lines = ["", "forensics:"]
        for pg in pgs:
            files = sorted(self.root.glob(f"node-*/dev-*/pgs/{pg}/*"))
            lines += [f"pg {pg} files:"] + [f"  {f.relative_to(self.root)}" for f in files]
        wanted = [f"pg {pg}" for pg in pgs] + ["repair: pass", "marking it", "PG table"]
        for log_file in sorted(self.root.glob("node-*/node.log")):
            with open(log_file, errors="replace") as f:
                hits = [line.rstrip()[:300] for line in f if any(w in line for w in wanted)]
            lines += [f"{log_file.relative_to(self.root)}:"] + [f"  {h}" for h in hits[-60:]]
        return "\n".join(lines)

    def where(self) -> list[str]:
        """How `atoll status` finds this cluster."""
        return ["--dir", str(self.root)]

    def status(self) -> dict[str, Any]:
        """`atoll status --json` (the real command); {} if it could not answer."""
        result = subprocess.run(
            [sys.executable, "-m", "atoll.cli", "status", *self.where(), "--json"],
            env=dict(os.environ, PYTHONPATH=SRC),
            capture_output=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            return {}
        doc: dict[str, Any] = json.loads(result.stdout)
        return doc

    def wait_for(
        self, what: str, predicate: Callable[[dict[str, Any]], bool], timeout_s: float
    ) -> dict[str, Any]:
        """The first status document satisfying `predicate`; AssertionError (with the
        last document) after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            doc = self.status()
            if doc and predicate(doc):
                return doc
            time.sleep(0.5)
        raise AssertionError(f"{what}: not within {timeout_s:.0f}s; last status {doc}")


def node_state(doc: dict[str, Any], node_id: int) -> str:
    return str(next(n["state"] for n in doc["nodes"] if n["id"] == node_id))


def start(root: Path, nodes: int = 4, settings: tuple[str, ...] = SETTINGS) -> Cluster:
    args = ["--nodes", str(nodes), "--devices-per-node", "2", "--s3-port", "0"]
    for setting in settings:
        args += ["--set", setting]
    run = start_dev(root, *args)
    return Cluster(run.root, run.process, run.out, run.document)


def stop(cluster: Cluster) -> None:
    stop_dev(cluster)


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@dataclass
class Workload:
    """Objects of 0 B to 20 MiB in both pools (most above the 64 KiB inline
    threshold), written through the gateways of `via`; every acknowledged PUT is
    recorded with its sha256. A PUT that fails (after boto3's retries) is not recorded
    (its object may or may not exist; it is never checked)."""

    cluster: Cluster
    via: tuple[int, ...]
    seed: int
    acked: dict[tuple[str, str], str] = field(default_factory=dict)
    failed: int = 0
    bytes_written: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    SIZES = (0, 1, 100 << 10, 700 << 10, 1 * MIB + 17, 3 * MIB, 5 * MIB + 1, 20 * MIB)
    BUCKETS = {"std": "STANDARD", "rep": "REDUCED_REDUNDANCY"}

    def create_buckets(self) -> None:
        s3 = self.cluster.s3(self.via[0])
        for bucket in self.BUCKETS:
            s3.create_bucket(Bucket=bucket)

    def write(self, count: int, tag: str, big_every: int = 8) -> None:
        """`count` PUTs; a 20 MiB object every `big_every`, the others smaller."""
        rng = random.Random(f"{self.seed}-{tag}")
        clients = {n: self.cluster.s3(n) for n in self.via}
        for i in range(count):
            sizes = self.SIZES if i % big_every == 0 else self.SIZES[:-1]
            size = rng.choice(sizes)
            bucket = rng.choice(sorted(self.BUCKETS))
            key = f"{tag}/{i:04d}"
            data = payload(size, rng.getrandbits(32))
            s3 = clients[self.via[i % len(self.via)]]
            try:
                s3.put_object(Bucket=bucket, Key=key, Body=data, StorageClass=self.BUCKETS[bucket])
            except Exception:
                with self._lock:
                    self.failed += 1
                continue
            with self._lock:
                self.acked[(bucket, key)] = hashlib.sha256(data).hexdigest()
                self.bytes_written += size

    def in_background(self, count: int, tag: str) -> threading.Thread:
        thread = threading.Thread(target=self.write, args=(count, tag), daemon=True)
        thread.start()
        return thread

    def verify(self, via: int) -> None:
        """Every acknowledged object reads back identical through node `via`'s
        gateway; none is missing."""
        s3 = self.cluster.s3(via)
        wrong = []
        for (bucket, key), digest in sorted(self.acked.items()):
            try:
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except Exception as err:
                wrong.append(f"{bucket}/{key}: {err}")
                continue
            if hashlib.sha256(body).hexdigest() != digest:
                wrong.append(f"{bucket}/{key}: {len(body)} bytes, wrong sha256")
        assert not wrong, (
            f"{len(wrong)} of {len(self.acked)} objects: {wrong[:10]}"
            + self.cluster.forensics(" ".join(wrong[:3]))
        )
