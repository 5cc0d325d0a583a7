"""Corrupt shard files on disk (issue 6 §3, §4): a flipped byte in the middle of one
shard file and another file cut to half its size. Reads still return the right
bytes (decoded from the other shards), and `atoll admin scrub --now` finds both and
rebuilds them in place; a second scrub finds nothing."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from dev_cluster import Workload, start, stop

pytestmark = pytest.mark.timeout(600)

TOTAL = re.compile(
    r"total: (\d+) blocks checked \((\d+) bytes\), (\d+) errors found, (\d+) repaired,"
    r" (\d+) not repaired"
)


def scrub(cluster: object) -> tuple[int, int, int, int, str]:
    result = cluster.cli("admin", "scrub", "--now")  # type: ignore[attr-defined]
    found = TOTAL.search(result.stdout)
    assert found, result.stdout + result.stderr
    blocks, _, errors, repaired, unrepaired = (int(g) for g in found.groups())
    return blocks, errors, repaired, unrepaired, result.stdout


def flip_middle_byte(path: Path) -> None:
    with open(path, "r+b") as file:
        middle = os.fstat(file.fileno()).st_size // 2
        file.seek(middle)
        byte = file.read(1)
        file.seek(middle)
        file.write(bytes([byte[0] ^ 0xFF]))
        file.flush()
        os.fsync(file.fileno())


def test_flipped_and_truncated_shards_are_read_around_then_found_and_rebuilt_by_scrub(
    tmp_path: Path,
) -> None:
    cluster = start(tmp_path / "dev")
    try:
        work = Workload(cluster, via=(1, 2), seed=63)
        work.create_buckets()
        work.write(10, "obj", big_every=3)
        cluster.wait_for("a healthy cluster", lambda d: d["degraded_pgs"] == 0, 120)
        blocks, errors, repaired, unrepaired, out = scrub(cluster)
        assert (errors, repaired, unrepaired) == (0, 0, 0), out
        assert blocks > 0

        # Data shards of the standard pool (4+2: indexes 0-3, in PG directories "1.N"),
        # which every GET of their object reads: a bad one forces a degraded read.
        big = [
            p
            for p in cluster.shard_files()
            if p.parent.name.startswith("1.")
            and int(p.name.split(".")[2]) < 4
            and p.stat().st_size > 512 << 10
        ]
        flipped, cut = big[0], big[len(big) // 2]
        assert flipped.parent != cut.parent  # two PGs
        flip_middle_byte(flipped)
        size = cut.stat().st_size
        os.truncate(cut, size // 2)

        before = sum(n["degraded_reads"] or 0 for n in cluster.status()["nodes"])
        for via in (1, 2):
            work.verify(via)  # the client gets the right bytes
        doc = cluster.wait_for(
            "the degraded reads counted", lambda d: d["degraded_reads"] > before, 30
        )
        assert doc["degraded_reads"] > before

        blocks_again, errors, repaired, unrepaired, out = scrub(cluster)
        assert (errors, repaired, unrepaired) == (2, 2, 0), out
        # The cut file's header says how many blocks it should have; it is not
        # counted as checked, the flipped one is.
        assert blocks_again < blocks, out
        assert cut.stat().st_size == size  # rebuilt whole, under its name
        blocks_last, errors, repaired, unrepaired, out = scrub(cluster)
        assert (errors, repaired, unrepaired) == (0, 0, 0), out
        assert blocks_last == blocks, out
        for via in (1, 3):
            work.verify(via)
    finally:
        stop(cluster)
