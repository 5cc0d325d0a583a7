"""Review findings on placement (issue 4 §2): the failure-domain rule after a cluster
grows. Fails until fixed."""

from __future__ import annotations

import pytest

from atoll.placement.pg_table import Pool, place_pool, violations
from atoll.placement.simulate import hosts_devices


@pytest.mark.parametrize(
    ("pool", "hosts_before", "per_host_before", "hosts_after", "per_host_after"),
    [
        # The default `replicated` pool of a 3 x 2 cluster whose table was first
        # committed when node 2's first device registered (3 devices on 2 hosts: the
        # limit was 2 copies per host); then node 3 joins.
        (Pool(2, "replicated", 1, 2, 64, "host", "REDUCED_REDUNDANCY"), 2, 2, 3, 2),
        # An 8+3 pool on 4 hosts (3 shards per host allowed) grown to 11 hosts.
        (Pool(1, "standard", 8, 3, 256, "host", "STANDARD"), 4, 3, 11, 3),
    ],
)
def test_growing_the_cluster_restores_the_failure_domain_rule(
    pool: Pool, hosts_before: int, per_host_before: int, hosts_after: int, per_host_after: int
) -> None:
    """`place_pool` keeps every member still in service ("Keep"), and balancing only
    checks the limits for the shard it moves. Members that were legal under the looser
    limit of the smaller cluster stay where they are, so after hosts are added the
    table keeps PGs with more than ceil((k+m)/hosts) shards on one host, for good: the
    digest matches, the table is never recomputed. On the 3 x 2 cluster of the
    integration test a replicated PG can keep 2 of its 3 copies on one host (and
    check_tables there passes only when no placement ran before node 3's devices)."""
    before_devices = hosts_devices(hosts_before, per_host_before, 1)
    before = place_pool(pool, before_devices)
    assert violations(pool, before, before_devices) == []
    after_devices = before_devices + hosts_devices(
        hosts_after - hosts_before, per_host_after, 1, first=hosts_before + 1
    )
    after = place_pool(pool, after_devices, previous=before)
    found = violations(pool, after, after_devices)
    assert found == [], f"{len(found)} of {pool.pg_count} PGs break the rule, e.g. {found[:3]}"
