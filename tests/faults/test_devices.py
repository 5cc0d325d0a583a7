"""Device faults on a real 4-node dev cluster (issue 6 §4):

- a device directory deleted while its node runs: the storage service notices (the
  directory is no longer the one it started with), the device is marked failed in the
  map, its PGs get new members that rebuild its shards, and every PG is verified
  healthy again;
- a device that fills up (a small tmpfs mounted as one device's directory): writes go
  on with the other devices (the full one's shards are recorded as missed), every
  acknowledged object reads back, and a listing shows exactly the objects whose PUT
  was acknowledged (no partial object is ever visible).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from dev_cluster import SETTINGS, Workload, node_state, start, stop

pytestmark = pytest.mark.timeout(600)


def device_state(doc: dict[str, object], path: Path) -> str:
    devices = doc["devices"]
    assert isinstance(devices, list)
    return str(next(d["state"] for d in devices if Path(d["path"]) == path))


def test_a_deleted_device_directory_is_marked_failed_and_rebuilt_elsewhere(
    tmp_path: Path,
) -> None:
    cluster = start(tmp_path / "dev")
    try:
        work = Workload(cluster, via=(1, 2), seed=65)
        work.create_buckets()
        work.write(12, "before")
        cluster.wait_for("a healthy cluster", lambda d: d["degraded_pgs"] == 0, 120)
        victim = cluster.root / "node-3" / "dev-1"
        assert any(victim.rglob("*.shard"))
        shutil.rmtree(victim)
        # Reads of its shards (and writes to it) find it gone.
        work.verify(1)
        work.write(6, "after")
        doc = cluster.wait_for(
            "the device marked failed", lambda d: device_state(d, victim) == "failed", 60
        )
        doc = cluster.wait_for(
            "its PGs rebuilt elsewhere and verified", lambda d: d["degraded_pgs"] == 0, 240
        )
        rebuilt = sum(n["repair"]["repaired_bytes"] for n in doc["nodes"] if n["repair"])
        assert rebuilt > 0
        assert not victim.exists()  # nothing wrote into a recreated directory
        for via in (2, 3):
            work.verify(via)
    finally:
        stop(cluster)


# The full-device test restarts node 4 (to mount the tmpfs) and then needs every write
# to reach it: with the suite's 3 s `down_after_s` the restart could mark it down (or
# even out) and send the writes around it. Long timers keep it up throughout.
STEADY = (
    *(s for s in SETTINGS if not s.startswith(("down_after_s", "out_after_s"))),
    "down_after_s=120",
    "out_after_s=600",
)


def test_a_full_device_leaves_writes_going_on_other_devices(tmp_path: Path) -> None:
    cluster = start(tmp_path / "dev", settings=STEADY)
    mount = cluster.root / "node-4" / "dev-0"
    mounted = False
    try:
        work = Workload(cluster, via=(1, 2), seed=66)
        work.create_buckets()
        work.write(4, "before")
        # Node 4's first device becomes a 6 MiB file system that claims the capacity it
        # had (as a disk that fills up long before its peers would: its placement
        # weight stays, and the file system's own ENOSPC is what stops writes).
        doc = cluster.status()
        capacity = next(d["capacity_bytes"] for d in doc["devices"] if Path(d["path"]) == mount)
        config = cluster.root / "node-4" / "config.toml"
        line = f'path = "{mount}"\n'
        text = config.read_text()
        assert line in text
        config.write_text(text.replace(line, f"{line}capacity_bytes = {capacity}\n"))
        stopped = cluster.cli(
            "dev", "stop-node", "4", "--dir", str(cluster.root), with_cluster=False
        )
        assert stopped.returncode == 0, stopped
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], check=True, timeout=30
        )
        mounted = True
        started = cluster.cli(
            "dev", "start-node", "4", "--dir", str(cluster.root), with_cluster=False
        )
        assert started.returncode == 0, started
        cluster.wait_for("node 4 up", lambda d: node_state(d, 4) == "up", 60)

        # Which device a shard goes to depends on the object's random version id, so
        # how much reaches this one varies: write in batches until it has refused a
        # write and holds more than half its size (8 batches are ~240 MiB of shards,
        # ~30 MiB per device on average: a run that never fills it is a failure).
        def stored() -> int:
            return sum(f.stat().st_size for f in mount.rglob("*.shard"))

        def refused() -> bool:
            logs = "".join((cluster.root / f"node-{n}" / "node.log").read_text() for n in (1, 2))
            return "the file system is full" in logs

        for batch in range(8):
            work.write(8, f"filling-{batch}")
            if refused() and stored() > (6 << 20) // 2:
                break
        assert work.failed == 0, f"{work.failed} PUTs failed with one device full"
        # It took what fitted; the rest of its shards were refused (device_full) and
        # recorded as missed.
        assert stored() > (6 << 20) // 2
        assert refused(), "no write was refused by the full device"
        cluster.wait_for(
            "the full device's PGs degraded (their missed shards cannot be rebuilt there)",
            lambda d: d["degraded_pgs"] > 0,
            60,
        )
        for via in (1, 3):
            work.verify(via)
        s3 = cluster.s3(1)
        for bucket in work.BUCKETS:
            listed = {
                o["Key"]
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                for o in page.get("Contents", [])
            }
            assert listed == {k for b, k in work.acked if b == bucket}
    finally:
        stop(cluster)
        if mounted:
            subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)
