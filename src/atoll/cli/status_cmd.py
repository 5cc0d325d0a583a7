"""`atoll status`: nodes, devices, pools and PG health of a running cluster, from the
meta leader (`meta.status`), as tables or as JSON. Does network I/O and prints."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from atoll.meta.client import MetaClient
from atoll.meta.errors import MetaRefused, MetaUnavailable

GIB = 1 << 30
MIB = 1 << 20


def _size(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def table_lines(doc: dict[str, Any]) -> list[str]:
    lines = [f"cluster {doc['cluster_id'] or '(not bootstrapped)'}, map epoch {doc['epoch']}", ""]
    lines.append(f"{'node':>4}  {'state':<9} {'rpc':<22} {'zone':<6} {'heartbeat':>9}  member")
    for n in doc["nodes"]:
        age = "-" if n["heartbeat_age_s"] is None else f"{n['heartbeat_age_s']:.1f}s ago"
        lines.append(
            f"{n['id']:>4}  {n['state']:<9} {n['rpc']:<22} {n['zone'] or '-':<6} {age:>9}"
            f"  {'yes' if n['member'] else 'no'}"
        )
    lines += ["", f"{'device':>6}  {'node':>4}  {'state':<7} {'used':>10} {'capacity':>10}  path"]
    for d in doc["devices"]:
        lines.append(
            f"{d['id']:>6}  {d['node']:>4}  {d['state']:<7} {_size(d['used_bytes']):>10}"
            f" {_size(d['capacity_bytes']):>10}  {d['path']}"
        )
    lines += ["", f"{'pool':<14} {'k+m':>6} {'PGs':>6} {'domain':<7} class"]
    for p in doc["pools"]:
        lines.append(
            f"{p['name']:<14} {str(p['k']) + '+' + str(p['m']):>6} {p['pg_count']:>6}"
            f" {p['failure_domain']:<7} {p['storage_class']}"
        )
    lines += ["", f"PGs: {doc['pgs']}, degraded: {doc['degraded_pgs']}"]
    lines.append(repair_line(doc))
    return lines


def _mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB"


def repair_line(doc: dict[str, Any]) -> str:
    eta = doc.get("repair_eta_s")
    return (
        f"repair: {_mib(doc.get('bytes_to_repair', 0))} to rebuild at "
        f"{_mib(doc.get('repair_bytes_per_s', 0.0))}/s, ETA "
        + ("-" if eta is None else f"{eta:.0f}s")
    )


def progress_line(doc: dict[str, Any], width: int = 30) -> str:
    """One line for `--watch`: a bar of the healthy PGs, the node states, the backlog."""
    pgs = doc["pgs"] or 1
    healthy = doc["pgs"] - doc["degraded_pgs"]
    filled = round(width * healthy / pgs)
    states = " ".join(f"{n['id']}:{n['state']}" for n in doc["nodes"])
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {healthy}/{doc['pgs']} PGs healthy"
        f" | {repair_line(doc)} | nodes {states}"
    )


async def watch(
    addresses: list[str],
    interval_s: float,
    until_healthy: bool,
    echo: Callable[[str], None],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """A progress line every `interval_s` until Ctrl-C (or, with `until_healthy`,
    until no PG is degraded)."""
    client = MetaClient(addresses)
    try:
        while True:
            try:
                doc = await client.status()
            except (MetaUnavailable, MetaRefused) as err:
                echo(f"(no answer from the meta leader: {err})")
            else:
                echo(progress_line(doc))
                if until_healthy and doc["degraded_pgs"] == 0:
                    return
            await sleep(interval_s)
    finally:
        await client.close()


async def show(addresses: list[str], as_json: bool, echo: Callable[[str], None]) -> None:
    client = MetaClient(addresses)
    try:
        doc = await client.status()
    finally:
        await client.close()
    if as_json:
        echo(json.dumps(doc, sort_keys=True))
    else:
        for line in table_lines(doc):
            echo(line)
