"""The `atoll` command: a click group with one subgroup per area (shared/DESIGN.md).

So far: `atoll --version`, `atoll engine bench` and `atoll sim raft`. Imports stay light at module level
(numpy, rich and the reference engines load only when a command runs), so
`atoll --version` works without the benchmark's optional libraries. Does I/O: the terminal and report files.
"""

from __future__ import annotations

from pathlib import Path

import click

from atoll import __version__
from atoll.cli.bench_stores import STORE_NAMES
from atoll.cli.bench_workloads import WORKLOADS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="atoll", message="%(prog)s %(version)s")
def main() -> None:
    """Atoll: an S3-compatible, erasure-coded, strongly consistent distributed store."""


@main.group()
def engine() -> None:
    """The local storage engine."""


def _names(value: str | None, allowed: tuple[str, ...], what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise click.BadParameter(
            f"unknown {what} {', '.join(unknown) or '(none given)'};"
            f" choose from {', '.join(allowed)}"
        )
    return names


@engine.command("bench")
@click.option("--quick", is_flag=True, help="100,000 keys, fewer reads, short caps (< 2 min).")
@click.option("--keys", type=click.IntRange(min=1), help="Number of keys (default 1,000,000).")
@click.option("--reads", type=click.IntRange(min=1), help="Lookups per read workload.")
@click.option("--engines", help=f"Comma-separated, from: {', '.join(STORE_NAMES)}.")
@click.option("--workloads", help=f"Comma-separated, from: {', '.join(WORKLOADS)} (default: all).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Markdown report path; JSON goes next to it"
    " (default bench/results/engine.md, or engine-quick.md with --quick).",
)
@click.option("--no-report", is_flag=True, help="Print the tables only; write no files.")
@click.option(
    "--dir",
    "scratch_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Scratch directory (default: a temporary directory, removed afterwards).",
)
@click.option("--time-cap", type=click.FloatRange(min=0.01), help="Seconds per workload.")
@click.option("--seed", type=int, default=1, show_default=True)
def bench(
    quick: bool,
    keys: int | None,
    reads: int | None,
    engines: str | None,
    workloads: str | None,
    out: Path | None,
    no_report: bool,
    scratch_dir: Path | None,
    time_cap: float | None,
    seed: int,
) -> None:
    """Measure Atoll's engines beside RocksDB, LevelDB and SQLite (db_bench style)."""
    from rich.console import Console

    from atoll.cli import engine_bench
    from atoll.cli.bench_report import format_cell, print_tables
    from atoll.cli.bench_workloads import WorkloadResult

    engine_names = _names(engines, STORE_NAMES, "engine") or engine_bench.DEFAULT_ENGINES
    workload_names = _names(workloads, WORKLOADS, "workload") or WORKLOADS
    if out is None and not no_report:
        out = engine_bench.QUICK_REPORT if quick else engine_bench.FULL_REPORT
    console = Console()
    status = Console(stderr=True)

    def progress(engine_name: str, workload: str, result: WorkloadResult) -> None:
        cell = format_cell(result, " · ")
        status.print(f"[dim]{engine_name:>8} {workload:<21}[/dim] {cell}", highlight=False)

    options = engine_bench.BenchOptions(
        quick=quick,
        key_count=keys,
        read_count=reads,
        engines=engine_names,
        workloads=workload_names,
        out=None if no_report else out,
        scratch_dir=scratch_dir,
        time_cap_s=time_cap,
        seed=seed,
    )
    outcome = engine_bench.run(options, progress)
    print_tables(console, outcome.results, outcome.plan.workloads, outcome.targets)
    if outcome.report_path is not None:
        console.print(f"wrote {outcome.report_path} and {outcome.json_path}", highlight=False)


@main.group()
def sim() -> None:
    """Deterministic simulation."""


@sim.command("raft")
@click.option("--seeds", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--start", type=int, default=0, show_default=True, help="First seed.")
@click.option("--seed", type=int, help="Replay this one seed (prints its run).")
@click.option("--jobs", type=click.IntRange(min=1), help="Worker processes (default: CPUs).")
@click.option("-v", "--verbose", is_flag=True, help="One line per seed.")
def sim_raft(seeds: int, start: int, seed: int | None, jobs: int | None, verbose: bool) -> None:
    """Run the Raft simulator over seeds; exit non-zero on any violation."""
    from atoll.cli import sim_cmd

    if seed is not None:
        start, seeds, verbose = seed, 1, True
    ok = sim_cmd.run(start, seeds, jobs or sim_cmd.default_jobs(), verbose, click.echo)
    if not ok:
        raise SystemExit(1)
