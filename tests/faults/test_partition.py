"""A network partition isolating one node (issue 6 §4), with network namespaces: four
node processes (`atoll server`, the configs `atoll dev` would write, 2 devices each),
each in its own namespace with one address on a bridge in the test's namespace, so
that taking one node's link down cuts it off from every other node and from the
test, both ways.

- The isolated node cannot commit: a PUT through its own gateway (sent from inside
  its namespace) is refused, and nothing of it is ever visible.
- The majority side keeps serving: PUTs and GETs through the other gateways go on.
- After healing, everything converges: the node is up again, every PG is verified
  healthy, and every acknowledged object reads back through every gateway (the
  isolated one included).

Needs root (namespaces, links); the whole set-up is removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dev_cluster import SETTINGS, Cluster, Workload, node_state

from atoll.server.dev_plan import DevNode, config_path, log_path, parse_setting, render_config
from dev_harness import SRC

pytestmark = pytest.mark.timeout(600)

NODES = 4
SUBNET = "10.77.{}.{}"
START_TIMEOUT_S = 90.0


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=check)


class NetnsCluster(Cluster):
    """A `Cluster` (the fault harness's helpers) whose nodes run in namespaces."""

    def __init__(self, root: Path, tag: int) -> None:
        super().__init__(root, subprocess.Popen(["true"]), root / "unused.out")
        self.tag = tag
        self.bridge = f"atbr{tag}"
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def ns(self, node_id: int) -> str:
        return f"atoll-{self.tag}-{node_id}"

    def veth(self, node_id: int) -> str:
        return f"at{self.tag}v{node_id}"

    def address(self, node_id: int) -> str:
        return SUBNET.format(self.tag % 250, 10 + node_id)

    def where(self) -> list[str]:
        return ["--endpoint", self.rpcs()]

    def rpcs(self, exclude: int = 0) -> str:
        return ",".join(n["rpc"] for n in self.document["nodes"] if n["id"] != exclude)


@contextlib.contextmanager
def netns_cluster(root: Path) -> Iterator[NetnsCluster]:
    tag = os.getpid() % 200 + 10
    cluster = NetnsCluster(root, tag)
    gateway = SUBNET.format(tag % 250, 1)
    try:
        sh("ip", "link", "add", cluster.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{gateway}/24", "dev", cluster.bridge)
        sh("ip", "link", "set", cluster.bridge, "up")
        for n in range(1, NODES + 1):
            ns = cluster.ns(n)
            sh("ip", "netns", "add", ns)
            sh(
                "ip",
                "link",
                "add",
                cluster.veth(n),
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
            )
            sh("ip", "link", "set", cluster.veth(n), "master", cluster.bridge, "up")
            sh(
                "ip",
                "netns",
                "exec",
                ns,
                "ip",
                "addr",
                "add",
                f"{cluster.address(n)}/24",
                "dev",
                "eth0",
            )
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        nodes = [
            DevNode(
                n,
                f"{cluster.address(n)}:7000",
                f"{cluster.address(n)}:7100",
                f"{cluster.address(n)}:9000",
                2,
            )
            for n in range(1, NODES + 1)
        ]
        access, secret = "PARTITIONTEST", "partition-secret-key"
        # Down after 3 s, but not out: the node is to come back and catch up.
        settings = [parse_setting(s) for s in SETTINGS if not s.startswith("out_after_s=")]
        settings.append(("out_after_s", "600"))
        for node in nodes:
            config_path(root, node.node_id).parent.mkdir(parents=True)
            config_path(root, node.node_id).write_text(
                render_config(root, node, nodes, (access, secret), settings)
            )
        for node in nodes:
            with open(log_path(root, node.node_id), "ab") as out:
                cluster.processes[node.node_id] = subprocess.Popen(
                    [
                        "ip",
                        "netns",
                        "exec",
                        cluster.ns(node.node_id),
                        sys.executable,
                        "-m",
                        "atoll.cli",
                        "server",
                        "--config",
                        str(config_path(root, node.node_id)),
                    ],
                    env=dict(os.environ, PYTHONPATH=SRC, PYTHONUNBUFFERED="1"),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
        cluster.document = {
            "access_key": access,
            "secret_key": secret,
            "nodes": [
                {
                    "id": n.node_id,
                    "pid": cluster.processes[n.node_id].pid,
                    "rpc": n.rpc_address,
                    "kv": n.kv_address,
                    "s3": f"http://{n.s3_address}",
                    "member": True,
                }
                for n in nodes
            ],
        }
        wait_serving(cluster)
        yield cluster
    finally:
        for process in cluster.processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in cluster.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        for n in range(1, NODES + 1):
            sh("ip", "netns", "del", cluster.ns(n), check=False)
            sh("ip", "link", "del", cluster.veth(n), check=False)
        sh("ip", "link", "del", cluster.bridge, check=False)


def wait_serving(cluster: NetnsCluster) -> None:
    """Until every gateway answers a ListBuckets and every node is up in the map."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            for n in range(1, NODES + 1):
                cluster.s3(n).list_buckets()
            doc = cluster.status()
            up = doc and all(node_state(doc, n) == "up" for n in range(1, NODES + 1))
            if up and doc["pgs"] and doc["degraded_pgs"] == 0:
                return
        except Exception as err:
            last = err
        time.sleep(0.5)
    logs = {n: log_path(cluster.root, n).read_text()[-1500:] for n in range(1, NODES + 1)}
    raise AssertionError(f"the namespaced cluster did not serve: {last!r}; logs: {logs}")


PUT_FROM_INSIDE = """
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2],
                  aws_secret_access_key=sys.argv[3], region_name="us-east-1",
                  config=Config(retries={"max_attempts": 1}, read_timeout=150, connect_timeout=5))
try:
    s3.put_object(Bucket="std", Key="isolated/one", Body=b"x" * 200_000)
except Exception as err:
    print("refused:", type(err).__name__, str(err)[:300])
    sys.exit(0)
print("acknowledged")
sys.exit(1)
"""


def test_an_isolated_node_cannot_commit_the_majority_serves_and_all_converges(
    tmp_path: Path,
) -> None:
    with netns_cluster(tmp_path / "cluster") as cluster:
        work = Workload(cluster, via=(1, 2, 3), seed=67)
        work.create_buckets()
        work.write(8, "before")

        sh("ip", "link", "set", cluster.veth(4), "down")  # node 4 cut off, both ways
        # The isolated node's own gateway cannot commit a PUT.
        inside = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                cluster.ns(4),
                sys.executable,
                "-c",
                PUT_FROM_INSIDE,
                cluster.node(4)["s3"],
                cluster.document["access_key"],
                cluster.document["secret_key"],
            ],
            env=dict(os.environ, PYTHONPATH=SRC),
            capture_output=True,
            text=True,
            timeout=200,
            check=False,
        )
        # (The client waits for the gateway's own answer, so that no request of it is
        # still in flight when the partition heals.)
        assert inside.returncode == 0 and "refused" in inside.stdout, inside.stdout + inside.stderr
        cluster.wait_for("node 4 marked down", lambda d: node_state(d, 4) == "down", 60)
        # The majority side serves: writes and reads go on.
        work.write(8, "during")
        assert work.failed == 0, f"{work.failed} PUTs failed on the majority side"
        work.verify(1)

        sh("ip", "link", "set", cluster.veth(4), "up")  # healed
        cluster.wait_for(
            "node 4 back and every PG verified healthy",
            lambda d: node_state(d, 4) == "up" and d["degraded_pgs"] == 0,
            180,
        )
        for via in (1, 2, 3, 4):
            work.verify(via)
        s3 = cluster.s3(4)
        with pytest.raises(s3.exceptions.ClientError):
            s3.head_object(Bucket="std", Key="isolated/one")
        listed = {o["Key"] for o in s3.list_objects_v2(Bucket="std").get("Contents", [])}
        assert listed == {k for b, k in work.acked if b == "std"}
