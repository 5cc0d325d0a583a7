"""`atoll bucket set-pool BUCKET POOL`: the pool a bucket's new objects go to. Reads the
cluster map from the meta group and updates the bucket's record in the object index
over atoll.rpc (`atoll.gateway.store.ObjectStore.set_bucket_pool`). Does network I/O
and prints."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from atoll.gateway.errors import S3Error
from atoll.gateway.store import ObjectStore
from atoll.kv.rpc_client import KvRpcClient
from atoll.meta.client import MetaClient
from atoll.rpc import RpcPool


async def set_pool(
    addresses: list[str], bucket: str, pool: str, echo: Callable[[str], None]
) -> bool:
    meta = MetaClient(addresses)
    try:
        m = await meta.read_map()
    finally:
        await meta.close()
    rpc = RpcPool()
    kv = KvRpcClient(lambda: m.rpc_addresses(m.replicas_of(1)), rpc)
    store = ObjectStore(
        kv, rpc, lambda: m, clock_ms=lambda: time.time_ns() // 1_000_000, entropy=os.urandom
    )
    try:
        record = await store.set_bucket_pool(bucket, pool)
    except S3Error as err:
        echo(f"bucket {bucket}: {err.code}: {err.message}")
        return False
    finally:
        await store.close()
        await rpc.close()
    echo(f"bucket {record.name}: new objects go to pool {record.pool}")
    return True
