"""`atoll status`: nodes, devices, pools and PG health of a running cluster, from the
meta leader (`meta.status`), as tables or as JSON. Does network I/O and prints."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from atoll.meta.client import MetaClient

GIB = 1 << 30


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
    return lines


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
