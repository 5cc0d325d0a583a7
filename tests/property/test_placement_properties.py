"""Placement over random clusters (hypothesis): the rules of issue 4 §2 hold for any
cluster, not only the ones the unit tests picked."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atoll.placement import Device, Pool, place_pool, violations
from atoll.placement.simulate import moved


@st.composite
def clusters(draw: st.DrawFn) -> tuple[Pool, list[Device]]:
    hosts = draw(st.integers(2, 7))
    zones = draw(st.integers(1, min(3, hosts)))
    devices = []
    for host in range(1, hosts + 1):
        for i in range(draw(st.integers(1, 4))):
            weight = draw(st.sampled_from([0.5, 1.0, 1.0, 2.0]))
            devices.append(Device(host * 10 + i, host, f"z{host % zones}", "", weight, True))
    width = draw(st.integers(2, min(8, len(devices))))
    k = draw(st.integers(1, width))
    domain = draw(st.sampled_from(["host", "zone", "device"]))
    pgs = draw(st.sampled_from([16, 32, 64]))
    return Pool(1, "p", k, width - k, pgs, domain, "S"), devices


def feasible(pool: Pool, devices: list[Device]) -> bool:
    """Whether the host limit can be met at all: hosts can hold `width` shards at
    `ceil(width / hosts)` each (zones aside)."""
    per_host = Counter(d.node_id for d in devices)
    cap = math.ceil(pool.width / len(per_host))
    return sum(min(n, cap) for n in per_host.values()) >= pool.width


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(clusters())
def test_every_pg_is_whole_and_within_its_domains(cluster: tuple[Pool, list[Device]]) -> None:
    pool, devices = cluster
    table = place_pool(pool, devices)
    assert len(table) == pool.pg_count
    ids = {d.id for d in devices}
    for row in table:
        assert len(row) == len(set(row)) == pool.width and set(row) <= ids
    if pool.failure_domain == "host" and feasible(pool, devices):
        assert violations(pool, table, devices) == []


@SETTINGS
@given(clusters(), st.randoms(use_true_random=False))
def test_deterministic_whatever_the_order(cluster: tuple[Pool, list[Device]], rng: object) -> None:
    pool, devices = cluster
    shuffled = list(devices)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert place_pool(pool, devices) == place_pool(pool, shuffled)


@SETTINGS
@given(clusters(), st.data())
def test_a_device_leaving_moves_its_shards_and_few_others(
    cluster: tuple[Pool, list[Device]], data: st.DataObject
) -> None:
    pool, devices = cluster
    if len(devices) <= pool.width:
        return
    before = place_pool(pool, devices)
    gone = data.draw(st.sampled_from(devices))
    after = place_pool(
        pool, [replace(d, in_service=False) if d == gone else d for d in devices], before
    )
    held = sum(row.count(gone.id) for row in before)
    assert all(gone.id not in row for row in after)
    changed = moved(before, after)
    # Its own shards move; balancing may move some others to even out the load.
    assert held <= changed <= math.ceil(1.5 * held) + 2


@settings(max_examples=15, deadline=None)
@given(st.integers(4, 10), st.integers(1, 4), st.sampled_from([(2, 1), (4, 2), (3, 0)]))
def test_balanced_where_the_cluster_is_large_enough(
    hosts: int, per_host: int, profile: tuple[int, int]
) -> None:
    k, m = profile
    devices = [
        Device(h * 10 + i, h, "", "", 1.0, True) for h in range(hosts) for i in range(per_host)
    ]
    if len(devices) < k + m:
        return
    pgs = 1 << max(4, math.ceil(math.log2(60 * len(devices) / (k + m))))  # >= 60 shards a device
    pool = Pool(1, "p", k, m, pgs, "host", "S")
    load = Counter(d for row in place_pool(pool, devices) for d in row)
    mean = pgs * (k + m) / len(devices)
    assert max(load.values()) <= 1.10 * mean
