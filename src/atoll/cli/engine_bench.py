"""The engine benchmark: plan a run, drive every engine through it, report.

`run(options)` is what both `atoll engine bench` and `bench/engine.py` call. It measures
Atoll's engines and the reference stores side by side in one process, one engine after
the other, then computes the issue's targets and renders the markdown and JSON report
(`atoll.cli.bench_report`). Does I/O: a scratch directory (a fresh temporary directory
under the system temp dir unless `--dir` is given, removed afterwards), /proc reads for
the environment header, and the report files.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atoll import __version__
from atoll.cli.bench_report import (
    Results,
    Target,
    compute_targets,
    render_json,
    render_markdown,
    write_report,
)
from atoll.cli.bench_stores import MEMTABLE_SIZE_BYTES, library_versions
from atoll.cli.bench_workloads import (
    KEY_SIZE_BYTES,
    WORKLOADS,
    BenchPlan,
    EngineRun,
    KeySpace,
    WorkloadResult,
)

DEFAULT_ENGINES = ("lsm", "lmdb", "rocksdb", "leveldb", "sqlite")
FULL_REPORT = Path("bench/results/engine.md")
QUICK_REPORT = Path("bench/results/engine-quick.md")

Progress = Callable[[str, str, WorkloadResult], None]


@dataclass(frozen=True)
class BenchOptions:
    """What the command line chose; `None` means the default of the mode."""

    quick: bool = False
    key_count: int | None = None
    read_count: int | None = None
    engines: tuple[str, ...] = DEFAULT_ENGINES
    workloads: tuple[str, ...] = WORKLOADS
    out: Path | None = None
    scratch_dir: Path | None = None
    time_cap_s: float | None = None
    seed: int = 1


@dataclass(frozen=True)
class BenchOutcome:
    plan: BenchPlan
    results: Results
    targets: list[Target]
    markdown: str
    data: dict[str, Any]
    report_path: Path | None
    json_path: Path | None


def make_plan(options: BenchOptions) -> BenchPlan:
    """The full run: 1,000,000 keys; quick: 100,000 keys, fewer reads, short caps."""
    if options.quick:
        key_count, read_count, time_cap_s, sync_ops_max = 100_000, 20_000, 5.0, 2_000
        settle_timeout_s, settle_poll_s, rww_min_s = 5.0, 0.1, 1.0
    else:
        key_count, read_count, time_cap_s, sync_ops_max = 1_000_000, 200_000, 120.0, 20_000
        settle_timeout_s, settle_poll_s, rww_min_s = 120.0, 0.25, 10.0
    if options.key_count is not None:
        key_count = options.key_count
    if options.read_count is not None:
        read_count = options.read_count
    if options.time_cap_s is not None:
        time_cap_s = options.time_cap_s
    return BenchPlan(
        key_count=key_count,
        read_count=read_count,
        time_cap_s=time_cap_s,
        sync_ops_max=min(sync_ops_max, key_count),
        settle_timeout_s=settle_timeout_s,
        settle_poll_s=settle_poll_s,
        readwhilewriting_min_s=min(rww_min_s, time_cap_s),
        workloads=tuple(w for w in WORKLOADS if w in options.workloads),
        seed=options.seed,
    )


def _read_first(path: str, default: str = "unknown") -> str:
    try:
        with open(path) as file:
            return file.readline().strip()
    except OSError:
        return default


def load_average() -> str:
    return " ".join(_read_first("/proc/loadavg").split()[:3])


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _filesystem(path: Path) -> str:
    """The mount point and type holding `path`, from /proc/mounts."""
    best = ("", "unknown")
    try:
        with open("/proc/mounts") as file:
            for line in file:
                fields = line.split()
                mount, fstype = fields[1], fields[2]
                if str(path).startswith(mount) and len(mount) > len(best[0]):
                    best = (mount, fstype)
    except (OSError, IndexError):
        pass
    return f"{best[1]} (mounted at {best[0] or '?'})"


def environment(scratch: Path, load_before: str, load_after: str) -> dict[str, str]:
    env = {
        "date (UTC)": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": _cpu_model(),
        "memory": _read_first("/proc/meminfo").split(":", 1)[-1].strip(),
        "load average before": load_before,
        "load average after": load_after,
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "atoll": __version__,
    }
    env.update(library_versions())
    env["scratch dir"] = f"{scratch}, {_filesystem(scratch)}"
    return env


def describe_plan(plan: BenchPlan, engines: tuple[str, ...], quick: bool) -> dict[str, str]:
    return {
        "mode": "quick" if quick else "full",
        "engines": ", ".join(engines),
        "keys": f"{plan.key_count:,} of {KEY_SIZE_BYTES} bytes (existing keys are even"
        " numbers as %016d, readmissing looks up the odd ones in between)",
        "values": f"{plan.value_size_bytes} bytes, from a seeded pool of random bytes",
        "fill order": "fillseq ascending; fillrandom a seeded permutation (every key once)",
        "batch size": f"{plan.batch_size} (batched rows)",
        "memtable": f"{MEMTABLE_SIZE_BYTES >> 20} MiB (Atoll LSM memtable_size_bytes,"
        " RocksDB and LevelDB write_buffer_size); other options at library defaults",
        "compression": "off for RocksDB and LevelDB (values are random)",
        "durability": "WAL on everywhere; no-sync runs do not fsync; SQLite WAL mode with"
        " synchronous=NORMAL (no-sync) or FULL (sync)",
        "reads per read workload": f"{plan.read_count:,} (seeded, with replacement)",
        "sync run": f"fillrandom single op, capped at {plan.sync_ops_max:,} operations",
        "time cap per workload": f"{plan.time_cap_s:g} s",
        "readwhilewriting": f"one writer thread overwriting at {plan.writer_ops_per_s:,}"
        " puts/s in the same process; the row is the reader, which repeats its sample for"
        f" at least {plan.readwhilewriting_min_s:g} s",
        "between workloads": "after fillrandom, overwrite, readwhilewriting and"
        " compact_range the run waits (untimed) until the engine is idle",
        "write amplification": "Atoll engines: the engine's write_amplification stat when"
        " it has one (the LSM compacts in child processes); others: growth of wchar in"
        " /proc/self/io from the first write of fillrandom until idle after a flush,"
        " over user bytes (key + value)",
        "space amplification": "st_blocks * 512 of the engine directory over live user"
        " bytes (key + value)",
        "seed": str(plan.seed),
    }


def run(options: BenchOptions, progress: Progress | None = None) -> BenchOutcome:
    """Run every engine of `options` through the plan and write the report."""
    load_before = load_average()
    plan = make_plan(options)
    keyspace = KeySpace(plan)
    owned = options.scratch_dir is None
    if options.scratch_dir is None:
        scratch = Path(tempfile.mkdtemp(prefix="atoll-bench-"))
    else:
        scratch = options.scratch_dir
        scratch.mkdir(parents=True, exist_ok=True)
    results: Results = {}
    try:
        for name in options.engines:
            engine_run = EngineRun(name, plan, keyspace, scratch, progress or _quiet)
            results[name] = engine_run.run()
            shutil.rmtree(scratch / name, ignore_errors=True)
    finally:
        if owned:
            shutil.rmtree(scratch, ignore_errors=True)
    env = environment(scratch, load_before, load_average())
    params = describe_plan(plan, options.engines, options.quick)
    targets = compute_targets(results)
    title = "Atoll engine benchmark" + (" (quick)" if options.quick else "")
    markdown = render_markdown(title, env, params, results, plan.workloads, targets)
    data = render_json(env, params, results, targets)
    data["argv"] = sys.argv
    json_path = None
    if options.out is not None:
        json_path = write_report(options.out, markdown, data)
    return BenchOutcome(plan, results, targets, markdown, data, options.out, json_path)


def _quiet(engine: str, workload: str, result: WorkloadResult) -> None:
    pass
