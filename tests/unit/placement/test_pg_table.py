"""PG tables (src/atoll/placement/pg_table.py): limits, shares, rounds, positions,
errors and violation reports, on clusters small enough to work out by hand. Pure code:
no mocks. The same rules over random clusters: tests/property/test_placement.py."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from atoll.placement import (
    Device,
    InsufficientDevices,
    InvalidDevices,
    InvalidPool,
    PlacementError,
    PlacementTooLarge,
    Pool,
    place_pool,
    violations,
)
from atoll.placement.pg_table import Layout, arrange, layout_of, reaches, select, water_fill


def pool(k: int, m: int, pgs: int = 64, domain: str = "host", pool_id: int = 1) -> Pool:
    return Pool(pool_id, "p", k, m, pgs, domain, "STANDARD")


def hosts(sizes: list[int], zones: list[str] | None = None, weight: float = 1.0) -> list[Device]:
    """Host `h` (from 1) with `sizes[h-1]` devices `h*1000 + i`, in zone `zones[h-1]`."""
    return [
        Device(h * 1000 + i, h, zones[h - 1] if zones else "", "", weight, True)
        for h, size in enumerate(sizes, start=1)
        for i in range(size)
    ]


# -- limits and shares --------------------------------------------------------------


@pytest.mark.parametrize(
    ("sizes", "zones", "profile", "domain", "expected"),
    [
        # 3 hosts x 2, 4+2: at most ceil(6/3) = 2 per host.
        ([2, 2, 2], None, (4, 2), "host", ("host", 6, 2)),
        # Hosts of 4, 1 and 1 devices: the big host must take 4 of 6.
        ([4, 1, 1], None, (4, 2), "host", ("host", 6, 4)),
        # 12 hosts x 4 in 3 zones, 8+3: 4 per zone (3 x 4 >= 11), then 1 per host.
        ([4] * 12, ["a", "b", "c"] * 4, (8, 3), "zone", ("zone", 4, 1)),
        # A zone of one 4-device host beside a zone of three 1-device hosts, 4+2:
        # 3 per zone; the lone host must then take all 3 of its zone.
        ([4, 1, 1, 1], ["a", "b", "b", "b"], (4, 2), "zone", ("zone", 3, 3)),
        # Failure domain zone in a cluster of one zone falls back to hosts.
        ([2, 2, 2], ["a", "a", "a"], (4, 2), "zone", ("host", 6, 2)),
        # Failure domain device: no zone or host limit.
        ([3, 3], None, (2, 1), "device", ("device", 3, 3)),
    ],
)
def test_limits_are_the_least_the_domains_allow(
    sizes: list[int],
    zones: list[str] | None,
    profile: tuple[int, int],
    domain: str,
    expected: tuple[str, int, int],
) -> None:
    layout = layout_of(pool(*profile, domain=domain), hosts(sizes, zones))
    assert (layout.level, layout.zone_cap, layout.host_cap) == expected


def test_water_fill_gives_what_a_capped_item_cannot_take_to_the_others() -> None:
    assert water_fill(6, [1, 1, 1], [1, 3, 3]) == [1, 2.5, 2.5]
    assert water_fill(4, [1, 2, 1], [4, 4, 4]) == [1, 2, 1]
    assert water_fill(3, [1, 1], [1, 2]) == [1, 2]


def test_shares_follow_weight_within_the_limits() -> None:
    # 12 x 4 in 3 zones, 8+3: every device 11/48 of a PG.
    layout = layout_of(pool(8, 3, domain="zone"), hosts([4] * 12, ["a", "b", "c"] * 4))
    assert layout.share == pytest.approx([11 / 48] * 48)
    # One-device hosts of weights 1, 1 and 2, 1+1: the heavy host would take 2 x 2/4 =
    # 1 shard per PG, its limit; the other two share the second shard.
    devices = [Device(i, i, "", "", w, True) for i, w in ((1, 1.0), (2, 1.0), (3, 2.0))]
    layout = layout_of(pool(1, 1), devices)
    assert layout.share == pytest.approx([0.5, 0.5, 1.0])
    # A host of one PG-share takes a reach of -ln(1 - share), the saturated one the cap.
    assert reaches(layout) == pytest.approx([math.log(2), math.log(2), -math.log(0.001)])


# -- rounds ------------------------------------------------------------------------------


def test_rounds_use_every_zone_before_a_second_in_any() -> None:
    # Devices 0-1 in zone 0, 2-3 in zone 1, 4 in zone 2; one host each; width 4.
    layout = Layout(
        pool(4, 0, domain="zone"),
        tuple(hosts([1] * 5)),
        "zone",
        zone_of=(0, 0, 1, 1, 2),
        host_of=(0, 1, 2, 3, 4),
        zone_cap=2,
        host_cap=1,
        share=(0.8,) * 5,
    )
    # Taking the first that fit would give zones 0, 0, 1, 1 and leave zone 2 empty.
    assert select([0, 1, 2, 3, 4], layout) == [0, 2, 4, 1]


def test_rounds_use_every_host_before_a_second_on_any() -> None:
    layout = Layout(
        pool(3, 1),
        tuple(hosts([2, 2, 2])),
        "host",
        zone_of=(0,) * 6,
        host_of=(0, 0, 1, 1, 2, 2),
        zone_cap=4,
        host_cap=2,
        share=(4 / 6,) * 6,
    )
    assert select([0, 1, 2, 3, 4, 5], layout) == [0, 2, 4, 1]


def test_every_pg_spreads_over_every_zone() -> None:
    # 4 shards over 3 zones: 2, 1, 1 in every PG, never 2, 2, 0.
    devices = hosts([2] * 6, ["a", "b", "c"] * 2)
    p = pool(2, 2, pgs=256, domain="zone")
    for row in place_pool(p, devices):
        by_zone = Counter(d // 1000 % 3 for d in row)  # hosts 1, 4 -> a; 2, 5 -> b; ...
        assert sorted(by_zone.values()) == [1, 1, 2]


# -- tables --------------------------------------------------------------------------------


def test_three_hosts_of_two_devices_four_plus_two() -> None:
    devices = hosts([2, 2, 2])
    p = pool(4, 2, pgs=256)
    table = place_pool(p, devices)
    assert len(table) == 256 and violations(p, table, devices) == []
    for row in table:
        # Every device once per PG, two per host: a host down loses m = 2 shards.
        assert sorted(row) == sorted(d.id for d in devices)
        assert sorted(Counter(d // 1000 for d in row).values()) == [2, 2, 2]


def test_twelve_hosts_three_zones_eight_plus_three() -> None:
    devices = hosts([4] * 12, ["a", "b", "c"] * 4)
    p = pool(8, 3, pgs=1024, domain="zone")
    table = place_pool(p, devices)
    assert violations(p, table, devices) == []
    for row in table:
        assert len(set(row)) == 11
        assert max(Counter(d // 1000 for d in row).values()) == 1  # one shard per host
        assert sorted(Counter((d // 1000 - 1) % 3 for d in row).values()) == [3, 4, 4]
    load = Counter(d for row in table for d in row)
    assert max(load.values()) <= 1.10 * (1024 * 11 / 48)


def test_devices_out_of_service_or_of_weight_zero_get_nothing() -> None:
    devices = hosts([2, 2, 2, 2])
    devices[0] = Device(1000, 1, "", "", 1.0, False)
    devices[1] = Device(1001, 1, "", "", 0.0, True)
    table = place_pool(pool(2, 1), devices)
    assert not {1000, 1001} & {d for row in table for d in row}


def test_weights_set_the_load() -> None:
    devices = [Device(i, i, "", "", 2.0 if i <= 3 else 1.0, True) for i in range(1, 10)]
    table = place_pool(pool(2, 1, pgs=512), devices)
    load = Counter(d for row in table for d in row)
    heavy = sum(load[i] for i in (1, 2, 3)) / 3
    light = sum(load[i] for i in range(4, 10)) / 6
    assert 1.8 < heavy / light < 2.2
    share = 512 * 3 / 12  # shards per unit of weight
    assert all(load[d.id] <= 1.10 * share * d.weight for d in devices)


def test_deterministic_and_independent_of_device_order() -> None:
    devices = hosts([3, 3, 2, 4, 3])
    p = pool(4, 2)
    assert place_pool(p, devices) == place_pool(p, list(reversed(devices)))


# -- positions -------------------------------------------------------------------------------


def test_arrange_keeps_positions_and_fills_holes_in_order() -> None:
    assert arrange([5, 6, 7], None) == (5, 6, 7)
    assert arrange([5, 6, 8], (7, 6, 5)) == (8, 6, 5)
    assert arrange([5, 6, 8, 9], (7, 6, 5, 4)) == (8, 6, 5, 9)
    assert arrange([1, 2, 3], (1, 2)) == (1, 2, 3)  # another width: ignored
    assert arrange([1, 2, 3], (1, 1, 2)) == (1, 3, 2)  # a device twice: kept once


def test_previous_positions_are_kept_when_the_members_are_the_same() -> None:
    devices = hosts([2, 2, 2, 2])
    p = pool(2, 1, pgs=32)
    table = place_pool(p, devices)
    rotated = tuple(row[1:] + row[:1] for row in table)
    assert place_pool(p, devices, rotated) == rotated
    # A previous table of another PG count keeps nothing.
    assert place_pool(p, devices, table[:16]) == table


def test_a_device_leaving_changes_one_position_of_its_pgs_only() -> None:
    devices = hosts([2] * 6)
    p = pool(4, 2, pgs=256)
    before = place_pool(p, devices, balance=False, reach_correction=False)
    gone = 3001
    left = [Device(d.id, d.node_id, d.zone, d.rack, d.weight, d.id != gone) for d in devices]
    after = place_pool(p, left, before, balance=False, reach_correction=False)
    for old, new in zip(before, after, strict=True):
        changed = [i for i in range(6) if old[i] != new[i]]
        assert changed == ([old.index(gone)] if gone in old else [])


# -- errors and violations -------------------------------------------------------------------


def test_too_few_devices_is_a_typed_error() -> None:
    with pytest.raises(InsufficientDevices) as caught:
        place_pool(pool(4, 2), hosts([2, 2]))
    assert (caught.value.needed, caught.value.available) == (6, 4)
    assert isinstance(caught.value, PlacementError) and isinstance(caught.value, ValueError)
    devices = hosts([3, 3])
    devices[0] = Device(1000, 1, "", "", 1.0, False)
    with pytest.raises(InsufficientDevices, match="needs 6 devices in service, the cluster has 5"):
        place_pool(pool(4, 2), devices)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (Pool(1, "p", 1, 1, 3, "host", "S"), "not a power of two"),
        (Pool(1, "p", 1, 1, 0, "host", "S"), "not a power of two"),
        (Pool(1, "p", 1, 1, 1 << 17, "host", "S"), "not a power of two"),
        (Pool(1, "p", 0, 2, 8, "host", "S"), "k must be 1 or more"),
        (Pool(1, "p", 2, -1, 8, "host", "S"), "m 0 or more"),
        (Pool(1, "p", 30, 3, 8, "host", "S"), "k\\+m = 33 is over the limit of 32"),
        (Pool(1, "p", 2, 1, 8, "rack", "S"), "failure domain 'rack'"),
    ],
)
def test_invalid_pools_are_refused(bad: Pool, message: str) -> None:
    with pytest.raises(InvalidPool, match=message):
        place_pool(bad, hosts([2, 2]))


def test_invalid_devices_are_refused() -> None:
    twice = [*hosts([2, 2]), Device(1000, 3, "", "", 1.0, True)]
    with pytest.raises(InvalidDevices, match="given more than once: \\[1000\\]"):
        place_pool(pool(1, 1), twice)
    for weight in (-1.0, math.nan, math.inf):
        with pytest.raises(InvalidDevices, match="weight: \\[1001\\]"):
            place_pool(pool(1, 1), [*hosts([1]), Device(1001, 1, "", "", weight, True)])
    split = [Device(1, 1, "a", "", 1.0, True), Device(2, 1, "b", "", 1.0, True)]
    with pytest.raises(InvalidDevices, match="host 1 is in zone 'a' and zone 'b'"):
        place_pool(pool(1, 1), split)


def test_oversized_placements_are_refused_before_the_work() -> None:
    with pytest.raises(PlacementTooLarge, match="65536 PGs x 300 devices"):
        place_pool(pool(2, 1, pgs=1 << 16), hosts([3] * 100))


def test_violations_name_the_pg_the_domain_and_the_limit() -> None:
    devices = hosts([2, 2, 2])
    p = pool(2, 1, pgs=2)
    assert violations(p, ((1000, 2000, 3000), (1001, 2001, 3001)), devices) == []
    assert violations(p, ((1000, 1000, 2000), (1000, 1001, 3000)), devices) == [
        "PG 0: devices [1000] hold more than one shard",
        "PG 0: host 1 holds 2 shards, over the limit of 1",
        "PG 1: host 1 holds 2 shards, over the limit of 1",
    ]
    assert violations(p, ((1000, 99, 2000), (1000, 2000, 3000)), devices) == [
        "PG 0: unknown devices [99]"
    ]
    assert violations(p, ((1000, 2000), (1000, 2000, 3000), (1001, 2001, 3001)), devices) == [
        "the table has 3 PGs, pool 'p' 2",
        "PG 0: 2 shards, the pool has k+m = 3",
    ]
    # Failure domain device: only distinct devices count.
    assert violations(pool(2, 1, 2, "device"), ((1000, 1001, 2000),) * 2, devices) == []


def test_violations_count_zones_where_the_domain_is_zone() -> None:
    devices = hosts([1, 1, 1, 1], ["a", "a", "b", "b"])
    p = pool(3, 1, pgs=1, domain="zone")
    assert violations(p, ((1000, 2000, 3000, 4000),), devices) == []
    # Zones "a" (hosts 1, 2) and "b" (hosts 3, 4): at most ceil(4/2) = 2 per zone.
    three = [Device(5000, 5, "a", "", 1.0, True)]
    assert violations(p, ((1000, 2000, 5000, 3000),), devices + three) == [
        "PG 0: zone 'a' holds 3 shards, over the limit of 2"
    ]
