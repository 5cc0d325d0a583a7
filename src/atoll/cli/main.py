"""The `atoll` command: a click group with one subgroup per area (shared/DESIGN.md).

So far: `atoll --version`, `atoll engine bench`, `atoll sim raft`, `atoll server` (one
node), `atoll dev` (a local cluster) and `atoll kv ...` (the KV API). Imports stay light
at module level (numpy, rich, grpc and the reference engines load only when a command
runs), so `atoll --version` works without the benchmark's optional libraries. Does
I/O: the terminal and report files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

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


@main.command("server")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The node's TOML config file (README: Running a cluster).",
)
@click.option(
    "--join",
    "join",
    default="",
    metavar="HOST:PORT",
    help="Join the cluster of the node with this rpc address (overrides the file's join).",
)
def server(config_path: Path, join: str) -> None:
    """Run one node until SIGTERM or Ctrl-C."""
    from atoll.server.config import ConfigFileError
    from atoll.server.node import main as node_main

    try:
        node_main(config_path, join)
    except ConfigFileError as err:
        raise click.ClickException(str(err)) from err


@main.group("dev", invoke_without_command=True)
@click.pass_context
@click.option(
    "--dir",
    "root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".atoll"),
    show_default=True,
    help="Directory of the cluster's configs, data and logs; rerun to restart it.",
)
@click.option(
    "--nodes",
    type=click.IntRange(min=1),
    help="Nodes of a new cluster (default 3); an existing one keeps its own.",
)
@click.option(
    "--devices-per-node",
    "devices",
    type=click.IntRange(min=1),
    help="Devices (shard directories) per node of a new cluster (default 2).",
)
@click.option(
    "--s3-port",
    type=click.IntRange(0, 65535),
    help="Node 1's S3 port for a new cluster (default 9000; 0: any free port).",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A node config key for every node of a new cluster (e.g. down_after_s=5); repeatable.",
)
def dev(
    ctx: click.Context,
    root: Path,
    nodes: int | None,
    devices: int | None,
    s3_port: int | None,
    settings: tuple[str, ...],
) -> None:
    """Run a local cluster of node processes on 127.0.0.1 until Ctrl-C; or, with a
    subcommand, act on the one running in --dir."""
    from atoll.base.errors import AtollError

    if ctx.invoked_subcommand is not None:
        return
    from atoll.server import dev as dev_cluster
    from atoll.server.dev_plan import parse_setting

    def err(message: str) -> None:
        click.echo(message, err=True)

    try:
        parsed = [parse_setting(text) for text in settings]
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--set") from error
    try:
        status = dev_cluster.main(root, nodes, click.echo, err, devices, s3_port, parsed)
    except (AtollError, OSError) as error:
        raise click.ClickException(str(error)) from error
    if status:
        raise SystemExit(status)


_dev_dir = click.option(
    "--dir",
    "root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".atoll"),
    show_default=True,
    help="The directory of the running `atoll dev`.",
)


def _dev_control(root: Path, op: str, node_id: int | None = None) -> None:
    from atoll.server import dev as dev_cluster

    try:
        click.echo(dev_cluster.control(root, op, node_id))
    except dev_cluster.DevError as error:
        raise click.ClickException(str(error)) from error


@dev.command("add-node")
@_dev_dir
def dev_add_node(root: Path) -> None:
    """Start one more node (same devices as the others); it joins the running cluster
    and stores data; cluster.json lists it."""
    _dev_control(root, "add-node")


@dev.command("stop-node")
@click.argument("node_id", metavar="NODE", type=click.IntRange(min=1))
@_dev_dir
def dev_stop_node(node_id: int, root: Path) -> None:
    """Stop node NODE (SIGTERM) of the running `atoll dev`; its data stays."""
    _dev_control(root, "stop-node", node_id)


@dev.command("start-node")
@click.argument("node_id", metavar="NODE", type=click.IntRange(min=1))
@_dev_dir
def dev_start_node(node_id: int, root: Path) -> None:
    """Start node NODE of the running `atoll dev` again, with its data."""
    _dev_control(root, "start-node", node_id)


SCAN_LIMIT_DEFAULT = 1000  # keys per `atoll kv scan`, unless --limit


@main.group()
def kv() -> None:
    """The key-value API of a running cluster (gRPC)."""


F = TypeVar("F", bound=Callable[..., Any])


def _address_options(option: str, what: str) -> Callable[[F], F]:
    """`--cluster FILE` and `option` (comma-separated host:port): where a command
    finds the cluster's `what` addresses."""

    def decorate(command: F) -> F:
        command = click.option(
            "--cluster",
            "cluster_file",
            type=click.Path(dir_okay=False, path_type=Path),
            help=f"cluster.json to take the {what} addresses from (default ./.atoll/cluster.json).",
        )(command)
        return click.option(
            option,
            help=f"Comma-separated host:port {what} addresses (default: the cluster file's).",
        )(command)

    return decorate


_endpoint_options = _address_options("--endpoints", "KV")


def _endpoints(endpoints: str | None, cluster_file: Path | None) -> list[str]:
    from atoll.cli import kv_cmd
    from atoll.server.dev import DevError

    try:
        return kv_cmd.resolve_endpoints(endpoints, cluster_file)
    except DevError as err:
        raise click.ClickException(str(err)) from err


@kv.command("put")
@click.argument("key")
@click.argument("value")
@_endpoint_options
def kv_put(key: str, value: str, endpoints: str | None, cluster_file: Path | None) -> None:
    """Set KEY to VALUE."""
    from atoll.cli import kv_cmd

    where = _endpoints(endpoints, cluster_file)
    kv_cmd.run(kv_cmd.put(where, kv_cmd.to_bytes(key), kv_cmd.to_bytes(value)))


@kv.command("get")
@click.argument("key")
@click.option("--serializable", is_flag=True, help="Read from any node's state (may be stale).")
@_endpoint_options
def kv_get(key: str, serializable: bool, endpoints: str | None, cluster_file: Path | None) -> None:
    """Print KEY's value; exit 1 if KEY is absent."""
    from atoll.cli import kv_cmd

    where = _endpoints(endpoints, cluster_file)
    value = kv_cmd.run(kv_cmd.get(where, kv_cmd.to_bytes(key), serializable))
    if value is None:
        click.echo(f"atoll kv get: no key {key!r}", err=True)
        raise SystemExit(1)
    click.echo(value)


@kv.command("del")
@click.argument("key")
@_endpoint_options
def kv_del(key: str, endpoints: str | None, cluster_file: Path | None) -> None:
    """Delete KEY (an absent KEY is noted on stderr, not an error)."""
    from atoll.cli import kv_cmd

    where = _endpoints(endpoints, cluster_file)
    if not kv_cmd.run(kv_cmd.delete(where, kv_cmd.to_bytes(key))):
        click.echo(f"atoll kv del: no key {key!r}", err=True)


@kv.command("scan")
@click.argument("start")
@click.argument("end", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=SCAN_LIMIT_DEFAULT, show_default=True)
@click.option("--reverse", is_flag=True, help="Largest key first.")
@_endpoint_options
def kv_scan(
    start: str,
    end: str | None,
    limit: int,
    reverse: bool,
    endpoints: str | None,
    cluster_file: Path | None,
) -> None:
    """Print `key<TAB>value` for the keys in [START, END) (END: to the last key)."""
    from atoll.cli import kv_cmd

    where = _endpoints(endpoints, cluster_file)
    end_key = None if end is None else kv_cmd.to_bytes(end)
    pairs = kv_cmd.run(kv_cmd.scan(where, kv_cmd.to_bytes(start), end_key, limit, reverse))
    for key, value in pairs:
        click.echo(kv_cmd.scan_line(key, value))


@kv.command("watch")
@click.argument("prefix")
@click.option("--from-revision", type=click.IntRange(min=1), help="Replay from this revision.")
@_endpoint_options
def kv_watch(
    prefix: str, from_revision: int | None, endpoints: str | None, cluster_file: Path | None
) -> None:
    """Print `revision type key value` for each change under PREFIX until Ctrl-C."""
    from atoll.cli import kv_cmd

    where = _endpoints(endpoints, cluster_file)
    try:
        kv_cmd.run(kv_cmd.watch(where, kv_cmd.to_bytes(prefix), from_revision, click.echo))
    except KeyboardInterrupt:
        return  # Ctrl-C is how a watch ends


@main.group()
def pool() -> None:
    """The storage pools of a running cluster (erasure profiles, PG tables)."""


_rpc_options = _address_options("--rpc", "rpc (atoll.rpc of meta members)")


def _rpc_endpoints(rpc: str | None, cluster_file: Path | None) -> list[str]:
    from atoll.cli import kv_cmd
    from atoll.server.dev import DevError

    try:
        return kv_cmd.resolve_endpoints(rpc, cluster_file, kind="rpc")
    except DevError as err:
        raise click.ClickException(str(err)) from err


@pool.command("create")
@click.argument("name")
@click.option("--ec", "profile", required=True, metavar="K+M", help="Erasure profile, e.g. 4+2.")
@click.option("--pgs", type=click.IntRange(min=1), default=64, show_default=True)
@click.option(
    "--failure-domain",
    type=click.Choice(["zone", "host", "device"]),
    default="host",
    show_default=True,
)
@click.option("--storage-class", required=True, help="The S3 storage-class name it serves.")
@_rpc_options
def pool_create(
    name: str,
    profile: str,
    pgs: int,
    failure_domain: str,
    storage_class: str,
    rpc: str | None,
    cluster_file: Path | None,
) -> None:
    """Add a pool NAME; the meta leader places its PGs."""
    from atoll.cli import kv_cmd, placement_cmd, pool_cmd

    try:
        k, m = placement_cmd.parse_profile(profile)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--ec") from err
    where = _rpc_endpoints(rpc, cluster_file)
    coroutine = pool_cmd.create(where, name, k, m, pgs, failure_domain, storage_class, click.echo)
    if not kv_cmd.run(coroutine):
        raise SystemExit(1)


@pool.command("list")
@_rpc_options
def pool_list(rpc: str | None, cluster_file: Path | None) -> None:
    """The pools, their profiles and PG tables."""
    from atoll.cli import kv_cmd, pool_cmd

    kv_cmd.run(pool_cmd.list_pools(_rpc_endpoints(rpc, cluster_file), click.echo))


@main.group()
def bucket() -> None:
    """Buckets of the object store."""


@bucket.command("set-pool")
@click.argument("name")
@click.argument("pool_name", metavar="POOL")
@_rpc_options
def bucket_set_pool(name: str, pool_name: str, rpc: str | None, cluster_file: Path | None) -> None:
    """Send the new objects of bucket NAME to POOL (objects already written stay)."""
    from atoll.cli import bucket_cmd, kv_cmd

    coroutine = bucket_cmd.set_pool(_rpc_endpoints(rpc, cluster_file), name, pool_name, click.echo)
    if not kv_cmd.run(coroutine):
        raise SystemExit(1)


@main.group()
def admin() -> None:
    """An operator's decisions about nodes (repair, drain)."""


@admin.command("out")
@click.argument("node_id", metavar="NODE", type=click.IntRange(min=1))
@_rpc_options
def admin_out(node_id: int, rpc: str | None, cluster_file: Path | None) -> None:
    """Mark NODE out now (as out_after_s would): its PGs get new members, which
    rebuild its shards from the others."""
    from atoll.cli import admin_cmd, kv_cmd
    from atoll.meta.cluster_map import NODE_OUT

    where = _rpc_endpoints(rpc, cluster_file)
    if not kv_cmd.run(admin_cmd.set_node_state(where, node_id, NODE_OUT, click.echo)):
        raise SystemExit(1)


@admin.command("in")
@click.argument("node_id", metavar="NODE", type=click.IntRange(min=1))
@_rpc_options
def admin_in(node_id: int, rpc: str | None, cluster_file: Path | None) -> None:
    """Bring NODE (out) back: placement uses its devices again."""
    from atoll.cli import admin_cmd, kv_cmd
    from atoll.meta.cluster_map import NODE_UP

    where = _rpc_endpoints(rpc, cluster_file)
    if not kv_cmd.run(admin_cmd.set_node_state(where, node_id, NODE_UP, click.echo)):
        raise SystemExit(1)


@admin.command("drain")
@click.argument("node_id", metavar="NODE", type=click.IntRange(min=1))
@_rpc_options
def admin_drain(node_id: int, rpc: str | None, cluster_file: Path | None) -> None:
    """Move everything off NODE while it stays readable (`atoll admin plan drain NODE`
    says what moves); then `atoll admin decommission NODE`."""
    from atoll.cli import admin_cmd, kv_cmd
    from atoll.meta.cluster_map import NODE_DRAINING

    where = _rpc_endpoints(rpc, cluster_file)
    if not kv_cmd.run(admin_cmd.set_node_state(where, node_id, NODE_DRAINING, click.echo)):
        raise SystemExit(1)


@admin.command("decommission")
@click.argument("node_id", metavar="NODE", type=click.IntRange(min=1))
@_rpc_options
def admin_decommission(node_id: int, rpc: str | None, cluster_file: Path | None) -> None:
    """Remove NODE (drained or out, holding nothing) from the cluster."""
    from atoll.cli import admin_cmd, kv_cmd

    where = _rpc_endpoints(rpc, cluster_file)
    if not kv_cmd.run(admin_cmd.decommission(where, node_id, click.echo)):
        raise SystemExit(1)


@admin.command("plan")
@click.argument("change", type=click.Choice(["drain", "add-node"]))
@click.argument("node_id", metavar="[NODE]", type=click.IntRange(min=1), required=False)
@click.option("--devices", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--capacity-gib", type=click.FloatRange(min=0.001), default=100.0, show_default=True)
@click.option("--zone", default="")
@click.option(
    "--rate",
    "rate_mib",
    type=click.FloatRange(min=0),
    default=64.0,
    show_default=True,
    help="Repair MiB/s per receiving node, for the estimate.",
)
@_rpc_options
def admin_plan(
    change: str,
    node_id: int | None,
    devices: int,
    capacity_gib: float,
    zone: str,
    rate_mib: float,
    rpc: str | None,
    cluster_file: Path | None,
) -> None:
    """Print what `drain NODE` or `add-node` would move, how many bytes, and how long
    it would take, before anything moves."""
    from atoll.cli import admin_cmd, kv_cmd

    if change == "drain" and node_id is None:
        raise click.UsageError("plan drain needs the NODE")
    where = _rpc_endpoints(rpc, cluster_file)
    coroutine = admin_cmd.plan(
        where,
        change,
        node_id or 0,
        devices,
        int(capacity_gib * (1 << 30)),
        zone,
        int(rate_mib * (1 << 20)),
        click.echo,
    )
    if not kv_cmd.run(coroutine):
        raise SystemExit(1)


@admin.command("scrub")
@click.option("--now", is_flag=True, help="Run a pass on every node now and report it.")
@_rpc_options
def admin_scrub(now: bool, rpc: str | None, cluster_file: Path | None) -> None:
    """Re-read every shard, verify its checksums, rebuild what is corrupt. Nodes scrub
    in the background every scrub_interval_s; --now runs a pass everywhere at once."""
    from atoll.cli import admin_cmd, kv_cmd

    if not now:
        raise click.UsageError("nodes scrub in the background; --now runs a pass now")
    where = _rpc_endpoints(rpc, cluster_file)
    if not kv_cmd.run(admin_cmd.scrub_now(where, click.echo)):
        raise SystemExit(1)


@main.group()
def placement() -> None:
    """Placement of PGs on devices (consistent-hash ring and balancing)."""


@placement.command("simulate")
@click.option("--hosts", type=click.IntRange(1, 1024), default=12, show_default=True)
@click.option("--devices-per-host", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option(
    "--zones", type=click.IntRange(min=0), default=3, show_default=True, help="0 or 1: none."
)
@click.option("--pool", "profile", default="8+3", show_default=True, metavar="K+M")
@click.option("--pgs", type=click.IntRange(min=1), default=1024, show_default=True)
@click.option(
    "--capacity-spread",
    type=click.FloatRange(0, 0.9),
    default=0.0,
    show_default=True,
    help="Device weights drawn uniformly from [1 - S, 1 + S] (0: all equal).",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the weights.")
@click.option("--json", "as_json", is_flag=True, help="Figures, device loads and the three tables.")
def placement_simulate(
    hosts: int,
    devices_per_host: int,
    zones: int,
    profile: str,
    pgs: int,
    capacity_spread: float,
    seed: int,
    as_json: bool,
) -> None:
    """Place a pool, add a host, remove a host: balance, movement, violations.

    Exits 1 if a target of issue 4 is missed (max/mean <= 1.10, movement <= 1.2 x
    ideal, no violations)."""
    from atoll.cli import placement_cmd
    from atoll.placement import PlacementError
    from atoll.placement.simulate import SimulationSpec

    try:
        k, m = placement_cmd.parse_profile(profile)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--pool") from err
    if pgs & (pgs - 1):
        raise click.BadParameter(f"{pgs} is not a power of two", param_hint="--pgs")
    spec = SimulationSpec(hosts, devices_per_host, zones, k, m, pgs, capacity_spread)
    try:
        ok = placement_cmd.run(spec, seed, as_json, click.echo)
    except PlacementError as err:
        raise click.ClickException(str(err)) from err
    if not ok:
        raise SystemExit(1)


@main.command("status")
@click.option(
    "--dir",
    "root",
    type=click.Path(file_okay=False, path_type=Path),
    help="An `atoll dev` directory: its cluster.json names the nodes (default ./.atoll).",
)
@click.option("--endpoint", help="Comma-separated host:port rpc addresses of nodes.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.option("--watch", is_flag=True, help="A live progress line of PG health and repair.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True)
@click.option("--until-healthy", is_flag=True, help="With --watch: stop once no PG is degraded.")
def status(
    root: Path | None,
    endpoint: str | None,
    as_json: bool,
    watch: bool,
    interval: float,
    until_healthy: bool,
) -> None:
    """Nodes, devices, pools and PG health of a running cluster."""
    from atoll.cli import kv_cmd, status_cmd

    cluster_file = None if root is None else root / "cluster.json"
    where = _rpc_endpoints(endpoint, cluster_file)
    if watch:
        kv_cmd.run(status_cmd.watch(where, interval, until_healthy, click.echo))
        return
    kv_cmd.run(status_cmd.show(where, as_json, click.echo))
