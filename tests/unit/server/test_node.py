"""The node's wiring decisions (atoll.server.node): the secret the S3 gateway checks
a request's signature with."""

from __future__ import annotations

from atoll.meta.cluster_map import ClusterMap, Credentials, PgTable
from atoll.server.node import root_secret, stale_routing


def test_only_the_root_access_key_has_a_secret() -> None:
    m = ClusterMap(cluster_id="c", epoch=3, root=Credentials("AKROOT", "root-secret"))
    assert root_secret(m, "AKROOT") == "root-secret"
    assert root_secret(m, "akroot") is None
    assert root_secret(m, "") is None
    assert root_secret(ClusterMap(), "AKROOT") is None  # before the bootstrap


def test_routing_is_stale_only_past_a_change_of_the_pools_own_table() -> None:
    # Pool 1's table was committed at epoch 19, pool 2's at 20 (an out node's pools,
    # one after another).
    m = ClusterMap(
        cluster_id="c",
        epoch=20,
        pg_tables={1: PgTable(1, 19, "d1", ((1, 2),)), 2: PgTable(2, 20, "d2", ((2, 3),))},
    )
    assert stale_routing(m, 19, frozenset({1})) is None
    assert stale_routing(m, 18, frozenset({1})) is not None
    refused = stale_routing(m, 19, frozenset({2}))
    assert refused is not None and "epoch 20" in refused
    assert stale_routing(m, 19, frozenset({1, 2})) is not None
    assert stale_routing(m, 19) is not None  # no pool named: every table counts
    assert stale_routing(m, 20) is None
    assert stale_routing(m, 5, frozenset({9})) is None  # a pool without a table
