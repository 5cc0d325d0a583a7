"""`atoll admin out|in NODE`: an operator's decisions about a node, proposed to the
meta group (`meta.admin`); `atoll admin scrub --now`: a scrub pass on every node.
Does network I/O and prints."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from atoll.gateway.scrub import METHOD_SCRUB, ScrubStats
from atoll.meta.client import MetaClient
from atoll.meta.cluster_map import NODE_DRAINING, NODE_OUT, NODE_UP
from atoll.meta.commands import Command, RemoveNode, SetNodeState
from atoll.meta.plan import plan_add_node, plan_drain
from atoll.rpc import RpcError, RpcPool

WHAT = {
    NODE_OUT: "out: its PGs move to other devices, rebuilt from the others",
    NODE_UP: "in: placement may use its devices again",
    NODE_DRAINING: "draining: its PGs move to other devices while it stays readable;"
    " its copies go once the new members hold theirs",
}


async def _admin(
    addresses: list[str], command: Command, done: str, echo: Callable[[str], None]
) -> bool:
    """Propose `command` (`meta.admin`); print `done` and the map epoch, or the refusal."""
    client = MetaClient(addresses)
    try:
        result = await client.admin(command)
    finally:
        await client.close()
    if not result.ok:
        echo(result.reason)
        return False
    echo(done.format(epoch=result.epoch))
    return True


async def decommission(addresses: list[str], node_id: int, echo: Callable[[str], None]) -> bool:
    done = f"node {node_id} removed from the cluster (map epoch {{epoch}}); stop its process"
    return await _admin(addresses, RemoveNode(node_id), done, echo)


async def set_node_state(
    addresses: list[str], node_id: int, state: str, echo: Callable[[str], None]
) -> bool:
    done = f"node {node_id} is {WHAT[state]} (map epoch {{epoch}})"
    return await _admin(addresses, SetNodeState(node_id, state), done, echo)


SCRUB_TIMEOUT_S = 6 * 3600.0  # one node's pass, unthrottled


async def scrub_now(addresses: list[str], echo: Callable[[str], None]) -> bool:
    """Ask every up node with devices for a scrub pass now (`repair.scrub`, all at
    once) and print what each checked, found and repaired, then the totals. False if
    a node could not scrub or left an error unrepaired."""
    meta = MetaClient(addresses)
    try:
        m = await meta.read_map()
    finally:
        await meta.close()
    nodes = [
        n
        for n in sorted(m.nodes.values(), key=lambda n: n.id)
        if n.state == NODE_UP and m.devices_of(n.id)
    ]
    pool = RpcPool()

    async def one(address: str) -> ScrubStats:
        client = await pool.get(address)
        reply = await client.call(METHOD_SCRUB, b"", timeout_s=SCRUB_TIMEOUT_S)
        return ScrubStats(**json.loads(reply.message))

    try:
        results = await asyncio.gather(*(one(n.rpc) for n in nodes), return_exceptions=True)
    finally:
        await pool.close()
    total = ScrubStats()
    ok = True
    for node, result in zip(nodes, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, (RpcError, OSError, ValueError, TypeError)):
                raise result
            echo(f"node {node.id}: scrub failed: {result}")
            ok = False
            continue
        echo(
            f"node {node.id}: {result.files} files, {result.blocks_checked} blocks checked,"
            f" {result.errors_found} errors found, {result.repaired} repaired"
        )
        for line in result.errors:
            echo(f"  {line}")
        for name in ("files", "blocks_checked", "bytes_checked", "errors_found", "repaired"):
            setattr(total, name, getattr(total, name) + getattr(result, name))
        total.unrepaired += result.unrepaired
    echo(
        f"total: {total.blocks_checked} blocks checked ({total.bytes_checked} bytes),"
        f" {total.errors_found} errors found, {total.repaired} repaired,"
        f" {total.unrepaired} not repaired"
    )
    return ok and total.unrepaired == 0


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


async def plan(
    addresses: list[str],
    change: str,
    node_id: int,
    devices: int,
    capacity_bytes: int,
    zone: str,
    rate: int,
    echo: Callable[[str], None],
) -> bool:
    """Print what `change` ("drain" NODE, "add-node") would move, before anything
    moves: per pool the PGs and shards that change, the bytes, the nodes that rebuild
    them and the time at `rate` bytes/s per node."""
    meta = MetaClient(addresses)
    try:
        m = await meta.read_map()
        doc = await meta.status()
    finally:
        await meta.close()
    used = {int(d["id"]): int(d["used_bytes"]) for d in doc["devices"]}
    try:
        if change == "drain":
            result = plan_drain(m, node_id, used)
        else:
            result = plan_add_node(m, devices, capacity_bytes, used, zone)
    except ValueError as err:
        echo(f"plan: {err}")
        return False
    echo(f"plan: {result.what}")
    for pool in result.pools:
        echo(
            f"  pool {pool.pool}: {pool.pgs_changed} of {pool.pgs} PGs change,"
            f" {pool.cells_moved} shards move"
        )
    eta = result.eta_s(rate)
    nodes = ", ".join(str(n) for n in result.receiving_nodes) or "none"
    echo(
        f"  about {_human(result.bytes)} to rebuild on nodes {nodes}; at"
        f" {_human(rate)}/s per node: "
        + ("no estimate (no rate limit)" if eta is None else f"about {eta:.0f} s")
    )
    echo("  nothing moves until the change is made")
    return True
