"""fillrandom (batched, no sync), Atoll LSM against RocksDB, repeated and interleaved.

One run of bench/engine.py gives one ratio, and on a shared 2-vCPU machine a single
ratio moves by +-0.1 from run to run. This script alternates the two engines N times
(LSM, RocksDB, LSM, RocksDB, ...) on the same keys, values and options as
bench/engine.py, and reports every pair's ratio and the median. Writes
bench/results/fill_ratio.md.

    PYTHONPATH=src python bench/fill_ratio.py [--rounds 5] [--keys 1000000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from atoll.cli.bench_stores import open_store
from atoll.cli.bench_workloads import BenchPlan, KeySpace, settle, time_batches

RESULTS = Path(__file__).resolve().parent / "results"


def fill(name: str, keys: KeySpace, plan: BenchPlan, scratch: str) -> float:
    path = os.path.join(scratch, name)
    store = open_store(name, path)
    try:
        result = time_batches(
            store.put_batch, keys.fill_order, keys.values(0), plan.batch_size, plan.time_cap_s
        )
        store.flush()
        settle(store, plan)  # untimed, as in bench/engine.py
    finally:
        store.close()
        shutil.rmtree(path, ignore_errors=True)
    return result.ops / result.seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keys", type=int, default=1_000_000)
    args = parser.parse_args()
    plan = BenchPlan(
        key_count=args.keys,
        read_count=1,
        time_cap_s=120.0,
        sync_ops_max=1,
        settle_timeout_s=300.0,
        settle_poll_s=0.05,
    )
    keys = KeySpace(plan)
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    rows = []
    with tempfile.TemporaryDirectory(prefix="atoll-fill-") as scratch:
        for round_ in range(args.rounds):
            lsm = fill("lsm", keys, plan, scratch)
            rocks = fill("rocksdb", keys, plan, scratch)
            rows.append((round_ + 1, lsm, rocks, lsm / rocks))
            print(
                f"round {round_ + 1}: lsm {lsm:,.0f}/s rocksdb {rocks:,.0f}/s ratio {lsm / rocks:.2f}"
            )
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    median = statistics.median(r[3] for r in rows)
    lines = [
        "# fillrandom, Atoll LSM / RocksDB, repeated side by side",
        "",
        f"- date (UTC): {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"- nproc: {os.cpu_count()}; load average before {' '.join(load_before)}, after {' '.join(load_after)}",
        f"- {args.keys:,} keys of 16 bytes, 100-byte values, batches of 100, no sync, 4 MiB memtables (as bench/engine.py)",
        f"- command: `PYTHONPATH=src python bench/fill_ratio.py --rounds {args.rounds} --keys {args.keys}`",
        "",
        "| round | LSM keys/s | RocksDB keys/s | ratio |",
        "| --- | --- | --- | --- |",
        *(f"| {r} | {a:,.0f} | {b:,.0f} | {c:.2f} |" for r, a, b, c in rows),
        "",
        f"Median ratio: **{median:.2f}** (target >= 0.5); min {min(r[3] for r in rows):.2f}, "
        f"max {max(r[3] for r in rows):.2f}.",
        "",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fill_ratio.md").write_text("\n".join(lines))
    print(f"median ratio {median:.2f}; wrote {RESULTS / 'fill_ratio.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
