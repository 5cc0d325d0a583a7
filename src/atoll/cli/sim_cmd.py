"""`atoll sim raft`: run the deterministic Raft simulator over many seeds, in parallel
worker processes, and summarise. Does I/O: processes and the terminal.

Each seed is independent and deterministic (`atoll.sim.raft_sim.run_seed`), so
spreading seeds over processes changes nothing but the wall time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor

from atoll.sim.raft_sim import SimReport, run_seed

JOBS_MAX = 64


def default_jobs() -> int:
    return max(1, min(JOBS_MAX, os.cpu_count() or 1))


def run_seeds(seeds: Iterable[int], jobs: int) -> Iterator[SimReport]:
    """Reports in seed order."""
    seeds = list(seeds)
    if jobs <= 1 or len(seeds) <= 1:
        yield from map(run_seed, seeds)
        return
    with ProcessPoolExecutor(max_workers=min(jobs, JOBS_MAX)) as pool:
        yield from pool.map(run_seed, seeds, chunksize=4)


def summarize(reports: list[SimReport]) -> list[str]:
    faults: dict[str, int] = {}
    for report in reports:
        for name, count in report.faults.items():
            faults[name] = faults.get(name, 0) + count
    bad = [r for r in reports if not r.ok]
    lines = [
        f"seeds: {len(reports)}",
        f"ops checked: {sum(r.ops_checked for r in reports)}"
        f" ({sum(r.ops_unknown for r in reports)} with unknown outcome)",
        "faults injected: " + ", ".join(f"{k} {v}" for k, v in sorted(faults.items())),
        f"violations: {len(bad)}",
    ]
    lines += [f"  {r.summary()}  (replay: atoll sim raft --seed {r.seed})" for r in bad]
    return lines


def run(start: int, count: int, jobs: int, verbose: bool, echo: Callable[[str], None]) -> bool:
    """Run seeds [start, start + count); True if none found a violation."""
    echo(f"atoll sim raft: seeds {start}..{start + count - 1}, {jobs} processes")
    reports: list[SimReport] = []
    for report in run_seeds(range(start, start + count), jobs):
        reports.append(report)
        if verbose or not report.ok:
            echo(report.summary())
    for line in summarize(reports):
        echo(line)
    return all(r.ok for r in reports)
