"""KV benchmark (issue 3 §5): put and linearizable get throughput and p50/p99 latency of
Atoll and etcd, each a 3-member cluster on loopback with fsync on, 16-byte keys and
256-byte values, at client concurrency 1, 16 and 64, measured in the same run through
the same client harness (bench/kv_client.py); then a py-spy profile of Atoll's leader.
Writes bench/results/kv.md and kv.json.

The clients are several processes (one grpc.aio process manages about 2,000 calls/s);
each sends to the leader. Each cell warms up, then measures for `--seconds`; the cells
alternate between the systems so that drift in the shared VM's speed hits both alike,
and each waits (a bounded time) for the rest of the shared machine to be quiet. After
the table's cells, extra Atoll cells run with py-spy sampling the leader
(`PROFILE_PLAN`); the flame graph and collapsed stacks go next to the report. Every
process this script starts is stopped at the end, on failure too. Run with the project
installed (`pip install -e '.[bench]'` for py-spy) or `PYTHONPATH=src`, as root (the
etcd script installs `etcd-server` with apt-get if it is missing) or with etcd
installed; a full run takes about 5 to 10 minutes:

    python bench/kv.py [--seconds 10] [--warm-up 3] [--client-processes 2]
    python bench/kv.py --report-only bench/results/kv.json   # rewrite kv.md from the JSON
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc

import kv_profile
import kv_report
from kv_client import KEY_BYTES, REQUEST_TIMEOUT_S, VALUE_BYTES, Spec
from kv_clusters import (
    PROBE_LABEL,
    AtollProcesses,
    Cluster,
    EtcdProcesses,
    check_encoding,
    etcd_version,
    find_atoll_leader,
    find_etcd_leader,
    machine_cpu_s,
    machine_probe,
    probe_text,
    process_cpu_s,
    tree_cpu_s,
)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
CLIENT = BENCH / "kv_client.py"
SYSTEMS = ("atoll", "etcd")
OPS = ("put", "get")
CONCURRENCIES = (1, 16, 64)
LOAD_CONCURRENCY = 64
READY_TIMEOUT_S = 60.0
LOAD_TIMEOUT_S = 300.0
RESULT_MARGIN_S = REQUEST_TIMEOUT_S + 30.0
STREAM_LIMIT_BYTES = 64 * 1024 * 1024  # one result line carries every latency
PROFILE_RATE_HZ = 100
PROFILE_NATIVE_RATE_HZ = 20
PROFILE_TOP = 15
PROFILE_CONCURRENCY = 64
# Before each cell, wait (at most `--quiet-wait` seconds) until the rest of the machine
# (other users of this shared VM) uses less than this much CPU, in % of one core.
QUIET_OTHERS_PCT = 30.0
QUIET_SAMPLE_S = 1.0


# -- one cell --------------------------------------------------------------------------------


def _percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile, in the values' unit; NaN for no values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return float(sorted_values[rank - 1])


def _cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """Per member: its process with its children (an Atoll node's KV gateways and
    compaction workers) under its name, the process alone under "NAME process"."""
    busy, total = machine_cpu_s()
    return {
        **{name: tree_cpu_s(pid) for name, pid in pids.items()},
        **{f"{name} process": process_cpu_s(pid) for name, pid in pids.items()},
        "machine busy": busy,
        "machine total": total,
        "time": time.monotonic(),
    }


async def _read_line(proc: asyncio.subprocess.Process, timeout_s: float, what: str) -> bytes:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout_s)
    if not line:
        raise RuntimeError(f"client process {proc.pid} ended before {what}")
    return line


async def run_cell(
    cluster: Cluster,
    op: str,
    concurrency: int,
    processes: int,
    args: argparse.Namespace,
    during_window: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Start `processes` clients with `concurrency / processes` calls in flight each,
    let them warm up and measure; merge their results with the servers' CPU use over
    the measured window."""
    if concurrency % processes:
        raise ValueError(f"concurrency {concurrency} does not split over {processes} processes")
    specs = [
        Spec(
            cluster.system,
            op,
            cluster.leader_endpoint,
            concurrency // processes,
            p,
            processes,
            args.keys,
            args.warm_up,
            args.seconds,
            args.seed,
        )
        for p in range(processes)
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])}
    procs: list[asyncio.subprocess.Process] = []
    try:
        for spec in specs:
            # One at a time, so that `finally` stops those started before one that fails.
            procs.append(  # noqa: PERF401
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(CLIENT),
                    json.dumps(asdict(spec)),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    env=env,
                    limit=STREAM_LIMIT_BYTES,
                )
            )
        for proc in procs:
            if await _read_line(proc, READY_TIMEOUT_S, "ready") != b"ready\n":
                raise RuntimeError(f"client process {proc.pid} did not say ready")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        if op == "load":
            lines = [await _read_line(p, LOAD_TIMEOUT_S, "its result") for p in procs]
            return _merge_load(cluster, lines)
        await asyncio.sleep(args.warm_up)
        before = _cpu_snapshot(cluster.pids)
        profiler = asyncio.ensure_future(during_window()) if during_window else None
        await asyncio.sleep(args.seconds)
        after = _cpu_snapshot(cluster.pids)
        lines = [await _read_line(p, RESULT_MARGIN_S, "its result") for p in procs]
        if profiler is not None:
            await asyncio.wait_for(profiler, RESULT_MARGIN_S)
        for proc in procs:
            await asyncio.wait_for(proc.wait(), RESULT_MARGIN_S)
        return _merge(cluster, op, concurrency, processes, lines, before, after)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def _merge_load(cluster: Cluster, lines: list[bytes]) -> dict[str, Any]:
    results = [json.loads(line) for line in lines]
    errors: Counter[str] = Counter()
    for r in results:
        errors.update(r["errors"])
    return {
        "system": cluster.system,
        "ok": sum(r["ok"] for r in results),
        "errors": dict(errors),
        "seconds": max(r["seconds"] for r in results),
    }


def _merge(
    cluster: Cluster,
    op: str,
    concurrency: int,
    processes: int,
    lines: list[bytes],
    before: dict[str, float],
    after: dict[str, float],
) -> dict[str, Any]:
    results = [json.loads(line) for line in lines]
    latencies = sorted(x for r in results for x in r["latencies_us"])
    errors: Counter[str] = Counter()
    warm_up_errors: Counter[str] = Counter()
    for r in results:
        errors.update(r["errors"])
        warm_up_errors.update(r["warm_up_errors"])
    window_s = sum(r["window_s"] for r in results) / len(results)
    ok = sum(r["ok"] for r in results)
    client_cpu = [r["cpu_user_s"] + r["cpu_sys_s"] for r in results]
    server_window_s = after["time"] - before["time"]
    server_cpu_pct = {
        name: 100 * (after[name] - before[name]) / server_window_s for name in cluster.pids
    }
    process_cpu_pct = {
        name: 100 * (after[f"{name} process"] - before[f"{name} process"]) / server_window_s
        for name in cluster.pids
    }
    machine_busy = after["machine busy"] - before["machine busy"]
    machine_total = after["machine total"] - before["machine total"]
    return {
        "system": cluster.system,
        "op": op,
        "concurrency": concurrency,
        "processes": processes,
        "inflight_per_process": concurrency // processes,
        "endpoint": cluster.leader_endpoint,
        "leader": cluster.leader,
        "ok": ok,
        "ops_per_s": ok / window_s,
        "p50_ms": _percentile(latencies, 0.50) / 1000,
        "p99_ms": _percentile(latencies, 0.99) / 1000,
        "mean_ms": sum(latencies) / len(latencies) / 1000 if latencies else math.nan,
        "errors": dict(errors),
        "warm_up_errors": dict(warm_up_errors),
        "short_replies": sum(r["short_replies"] for r in results),
        "window_s": window_s,
        "client_cpu_s": client_cpu,
        "client_cpu_user_s": [r["cpu_user_s"] for r in results],
        "client_cpu_sys_s": [r["cpu_sys_s"] for r in results],
        "client_cpu_pct": 100 * sum(client_cpu) / window_s,
        "server_cpu_pct": server_cpu_pct,  # each member with its child processes
        "server_process_cpu_pct": process_cpu_pct,  # the member's own process
        "leader_cpu_pct": server_cpu_pct[cluster.leader],
        "leader_process_cpu_pct": process_cpu_pct[cluster.leader],
        "machine_busy_pct": 100 * machine_busy / machine_total if machine_total else math.nan,
        # CPU used by everything else (the idle other cluster, this script, other users
        # of the machine), in % of one core.
        "other_cpu_pct": 100 * machine_busy / server_window_s
        - sum(server_cpu_pct.values())
        - 100 * sum(client_cpu) / window_s,
    }


# -- the run ---------------------------------------------------------------------------------


async def wait_quiet(pids: dict[str, int], wait_s: float) -> dict[str, float]:
    """Wait until processes other than `pids` use under QUIET_OTHERS_PCT of a core (or
    `wait_s` passes); their last CPU use and the time waited."""
    start = time.monotonic()
    while True:
        before = _cpu_snapshot(pids)
        await asyncio.sleep(QUIET_SAMPLE_S)
        after = _cpu_snapshot(pids)
        window_s = after["time"] - before["time"]
        ours = sum(after[name] - before[name] for name in pids)
        others_pct = 100 * (after["machine busy"] - before["machine busy"] - ours) / window_s
        waited_s = time.monotonic() - start
        if others_pct < QUIET_OTHERS_PCT or waited_s >= wait_s:
            return {"others_pct": others_pct, "waited_s": waited_s}


async def refresh_leader(cluster: Cluster) -> None:
    if cluster.system == "atoll":
        await find_atoll_leader(cluster)
    else:
        await find_etcd_leader(cluster)


def processes_for(concurrency: int, processes_max: int) -> int:
    processes = min(concurrency, processes_max)
    while concurrency % processes:
        processes -= 1
    return processes


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return found if Path(found).exists() else ""


@dataclass(frozen=True)
class ProfileRun:
    """One py-spy run over a profiled cell's window."""

    op: str
    target: str  # node: the leader's node process; gateway: its (first) KV gateway
    fmt: str  # py-spy --format: flamegraph (an SVG) or raw (collapsed stacks)
    file: str  # under bench/results/
    native: bool = False  # C frames too: needs a stop per sample, so a lower rate
    gil: bool = False  # only samples of the thread holding the GIL

    @property
    def rate_hz(self) -> int:
        return PROFILE_NATIVE_RATE_HZ if self.native else PROFILE_RATE_HZ


# One extra cell per line; the runs of a line sample side by side over its window.
PROFILE_PLAN = (
    (
        ProfileRun("put", "node", "raw", "kv-put-leader.txt"),
        ProfileRun("put", "gateway", "raw", "kv-put-leader-gateway.txt"),
    ),
    (
        ProfileRun("get", "node", "raw", "kv-get-leader.txt"),
        ProfileRun("get", "gateway", "raw", "kv-get-leader-gateway.txt"),
    ),
    (ProfileRun("put", "node", "flamegraph", "kv-put-leader.svg"),),
    (ProfileRun("put", "node", "raw", "kv-put-leader-native.txt", native=True),),
    (ProfileRun("put", "node", "raw", "kv-put-leader-gil.txt", gil=True),),
)


async def _py_spy_record(pid: int, output: Path, run: ProfileRun, seconds: float) -> None:
    command = [_py_spy(), "record", "--pid", str(pid), "--duration", str(max(1, int(seconds)))]
    command += ["--rate", str(run.rate_hz), "--format", run.fmt, "--threads"]
    # Python stacks are read without stopping the process (with stops, and more so
    # with native stacks, the leader lost most of its throughput while sampled);
    # native stacks need the stops.
    command += ["--native"] if run.native else ["--nonblocking"]
    command += ["--gil"] if run.gil else []
    command += ["--output", str(output)]
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), seconds + RESULT_MARGIN_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"py-spy exited {proc.returncode}: {out.decode(errors='replace')}")


def _profile_pid(cluster: Cluster, atoll: AtollProcesses, target: str) -> int | None:
    if target == "node":
        return cluster.leader_pid
    gateways = atoll.gateway_pids(cluster.leader)
    return gateways[0] if gateways else None  # none when the node serves gRPC itself


async def profile_atoll(
    cluster: Cluster, atoll: AtollProcesses, all_pids: dict[str, int], args: argparse.Namespace
) -> dict[str, Any]:
    """PROFILE_PLAN: extra cells at concurrency 64, with py-spy sampling the leader's
    processes over each measured window."""
    if not _py_spy():
        return {"error": "py-spy is not installed (pip install -e '.[bench]')"}
    processes = processes_for(PROFILE_CONCURRENCY, args.client_processes)
    out: dict[str, Any] = {"runs": []}
    for plans in PROFILE_PLAN:
        await refresh_leader(cluster)
        quiet = await wait_quiet(all_pids, args.quiet_wait)
        targets = [(plan, _profile_pid(cluster, atoll, plan.target)) for plan in plans]
        chosen = [(plan, pid) for plan, pid in targets if pid is not None]

        async def record(chosen: list[tuple[ProfileRun, int]] = chosen) -> None:
            await asyncio.gather(
                *(
                    _py_spy_record(pid, args.out.parent / plan.file, plan, args.seconds)
                    for plan, pid in chosen
                )
            )

        try:
            cell = await run_cell(
                cluster, plans[0].op, PROFILE_CONCURRENCY, processes, args, record
            )
        except RuntimeError as err:  # ptrace refused, most likely
            return {"error": str(err)}
        cell["before"] = quiet
        for plan, pid in chosen:
            path = args.out.parent / plan.file
            run: dict[str, Any] = {**asdict(plan), "pid": pid, "rate_hz": plan.rate_hz}
            run["cell"] = _brief(cell)
            if plan.fmt == "raw":
                run["summary"] = kv_profile.summary(path, plan.rate_hz, args.seconds, PROFILE_TOP)
            out["runs"].append(run)
            print(f"profiled {plan}: {cell['ops_per_s']:,.0f} ops/s -> {path}", flush=True)
    return out


def _brief(cell: dict[str, Any]) -> dict[str, Any]:
    keep = ("ops_per_s", "p50_ms", "p99_ms", "errors", "leader", "leader_cpu_pct", "before")
    cpu = ("leader_process_cpu_pct", "machine_busy_pct", "client_cpu_pct", "other_cpu_pct")
    return {k: cell[k] for k in (*keep, *cpu)}


async def bench(
    args: argparse.Namespace, atoll: AtollProcesses, etcd: EtcdProcesses
) -> dict[str, Any]:
    check_encoding()
    clusters: dict[str, Cluster] = {}
    if "etcd" in args.systems:
        clusters["etcd"] = etcd.start()
    if "atoll" in args.systems:
        clusters["atoll"] = atoll.start()
    all_pids = {
        f"{c.system} {name}": pid for c in clusters.values() for name, pid in c.pids.items()
    }
    for cluster in clusters.values():
        await refresh_leader(cluster)
        print(f"{cluster.system}: leader {cluster.leader} at {cluster.leader_endpoint}", flush=True)
    loads = {}
    for system, cluster in clusters.items():
        processes = processes_for(LOAD_CONCURRENCY, args.client_processes)
        loads[system] = await run_cell(cluster, "load", LOAD_CONCURRENCY, processes, args)
        print(f"{system}: loaded {loads[system]}", flush=True)
    cells = []
    for op in args.ops:
        for concurrency in args.concurrency:
            for system, cluster in clusters.items():
                if system == "atoll":
                    atoll.check_alive()
                await refresh_leader(cluster)
                processes = processes_for(concurrency, args.client_processes)
                quiet = await wait_quiet(all_pids, args.quiet_wait)
                cell = await run_cell(cluster, op, concurrency, processes, args)
                cell["before"] = quiet
                cells.append(cell)
                print(_progress(cell), flush=True)
    profile = {}
    if args.profile and "atoll" in clusters:
        profile = await profile_atoll(clusters["atoll"], atoll, all_pids, args)
    return {
        "clusters": {s: asdict(c) for s, c in clusters.items()},
        "load": loads,
        "cells": cells,
        "profile": profile,
    }


def _progress(cell: dict[str, Any]) -> str:
    return (
        f"{cell['system']:5} {cell['op']} c={cell['concurrency']:<3} "
        f"{cell['ops_per_s']:9,.0f} ops/s  p50 {cell['p50_ms']:7.2f} ms  "
        f"p99 {cell['p99_ms']:7.2f} ms  errors {sum(cell['errors'].values())}  "
        f"client cpu {cell['client_cpu_pct']:.0f}%  leader cpu {cell['leader_cpu_pct']:.0f}%  "
        f"machine {cell['machine_busy_pct']:.0f}%  others {cell['other_cpu_pct']:.0f}%"
    )


# -- environment -----------------------------------------------------------------------------


def _git(*command: str) -> str:
    try:
        return subprocess.run(
            ["git", *command], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _filesystem(path: str) -> str:
    best = ("", "?")
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mount, kind, *_ = line.split()
        if path.startswith(mount) and len(mount) > len(best[0]):
            best = (mount, kind)
    return f"{best[1]} (mounted at {best[0]})"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor()


def _py_spy_version() -> str:
    if not _py_spy():
        return "not installed"
    out = subprocess.run([_py_spy(), "--version"], capture_output=True, text=True, timeout=10)
    return out.stdout.strip().removeprefix("py-spy ")


def environment(load_before: str, scratch: str) -> dict[str, Any]:
    from atoll.base.loop import loop_name  # importable once kv_client has set the path

    dirty = _git("status", "--porcelain", "--", "src")
    return {
        "date (UTC)": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "load average before": load_before,
        "load average after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "grpcio": grpc.__version__,
        # What atoll.base.loop runs the node and KV gateway processes on.
        "atoll event loop": loop_name(),
        "etcd": etcd_version(),
        "py-spy": _py_spy_version(),
        "atoll git rev": _git("rev-parse", "--short", "HEAD"),
        "atoll src uncommitted": [line.split(maxsplit=1)[-1] for line in dirty.splitlines()],
        "atoll data dir": f"{scratch}, {_filesystem(scratch)}",
        "etcd data dir": f"/tmp/etcd3, {_filesystem('/tmp/etcd3')}",
    }


# -- main ------------------------------------------------------------------------------------


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per cell")
    parser.add_argument("--warm-up", type=float, default=3.0, help="warm-up per cell, seconds")
    parser.add_argument("--keys", type=int, default=10_000, help="key space (loaded first)")
    parser.add_argument(
        "--client-processes", type=int, default=2, help="client processes per cell, at most"
    )
    parser.add_argument("--systems", type=lambda s: s.split(","), default=list(SYSTEMS))
    parser.add_argument("--ops", type=lambda s: s.split(","), default=list(OPS))
    parser.add_argument(
        "--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=CONCURRENCIES
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=30.0, help="most seconds to wait for a quiet machine"
    )
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument(
        "--read-index",
        action="store_true",
        help="Atoll nodes with `lease_reads = false` (a ReadIndex round per batch of reads)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "kv.md")
    parser.add_argument("--report-only", type=Path, help="rewrite the report from this JSON")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.report_only:
        data = json.loads(args.report_only.read_text())
        args.out.write_text(kv_report.markdown(data))
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    probe = machine_probe(Path(tempfile.gettempdir()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    scratch = tempfile.mkdtemp(prefix="atoll-kv-bench-")
    extra = "lease_reads = false\n" if args.read_index else ""
    atoll, etcd = AtollProcesses(Path(scratch), extra), EtcdProcesses()
    try:
        figures = asyncio.run(bench(args, atoll, etcd))
    finally:
        atoll.stop()
        if "etcd" in args.systems:
            etcd.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    data = {
        "env": environment(load_before, scratch) | {PROBE_LABEL: probe_text(probe)},
        "params": {
            "seconds": args.seconds,
            "warm_up_s": args.warm_up,
            "keys": args.keys,
            "key_bytes": KEY_BYTES,
            "value_bytes": VALUE_BYTES,
            "client_processes_max": args.client_processes,
            "quiet_wait_s": args.quiet_wait,
            "quiet_others_pct": QUIET_OTHERS_PCT,
            "concurrency": list(args.concurrency),
            "request_timeout_s": REQUEST_TIMEOUT_S,
            "seed": args.seed,
            "atoll_lease_reads": not args.read_index,
            "run_s": time.monotonic() - started,
        },
        **figures,
    }
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    text = kv_report.markdown(data)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
