"""`atoll pool create|list`: the pools of a running cluster, through the meta group
over atoll.rpc (`atoll.meta.client`). Does network I/O and prints."""

from __future__ import annotations

from collections.abc import Callable

from atoll.meta.client import MetaClient
from atoll.meta.cluster_map import ClusterMap, PoolRecord
from atoll.meta.commands import CreatePool


def pool_lines(m: ClusterMap) -> list[str]:
    lines = [f"{'pool':<16} {'k+m':>6} {'PGs':>6} {'domain':<8} {'class':<20} table"]
    for pool in sorted(m.pools.values(), key=lambda p: p.id):
        table = m.pg_tables.get(pool.id)
        state = "none" if table is None else f"epoch {table.epoch}"
        if table is not None and pool in m.stale_pools():
            state += " (stale)"
        lines.append(
            f"{pool.name:<16} {f'{pool.k}+{pool.m}':>6} {pool.pg_count:>6}"
            f" {pool.failure_domain:<8} {pool.storage_class:<20} {state}"
        )
    return lines


async def create(
    addresses: list[str],
    name: str,
    k: int,
    m: int,
    pgs: int,
    failure_domain: str,
    storage_class: str,
    echo: Callable[[str], None],
) -> bool:
    client = MetaClient(addresses)
    try:
        pool = PoolRecord(0, name, k, m, pgs, failure_domain, storage_class)
        result = await client.admin(CreatePool(pool))
    finally:
        await client.close()
    if not result.ok:
        echo(f"pool {name} not created: {result.reason}")
        return False
    echo(f"pool {name} created: id {result.allocated}, {k}+{m}, {pgs} PGs (epoch {result.epoch})")
    return True


async def list_pools(addresses: list[str], echo: Callable[[str], None]) -> None:
    client = MetaClient(addresses)
    try:
        m = await client.read_map()
    finally:
        await client.close()
    for line in pool_lines(m):
        echo(line)
