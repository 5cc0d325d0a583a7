"""PG health as the meta leader judges it (`atoll.meta.health`): healthy only when
every member is up, in service, and verified by its node's repairer at or after the
table's epoch."""

from __future__ import annotations

import random
from dataclasses import replace

from atoll.meta.cluster_map import (
    DEVICE_STATES,
    NODE_DOWN,
    NODE_STATES,
    NODE_UP,
    ClusterMap,
    DeviceRecord,
    NodeRecord,
    PgTable,
    PoolRecord,
    in_service,
)
from atoll.meta.health import PgHealth, RepairState, pg_health


def cluster() -> ClusterMap:
    nodes = {i: NodeRecord(i, f"h:{i}", "", "", "", "up", True) for i in (1, 2, 3)}
    devices = {i: DeviceRecord(i, i, f"/d{i}", 1 << 30, "in") for i in (1, 2, 3)}
    pool = PoolRecord(1, "standard", 2, 1, 2, "host", "STANDARD")
    table = PgTable(1, 5, "digest", ((1, 2, 3), (3, 1, 2)))
    return ClusterMap(
        cluster_id="c",
        epoch=9,
        nodes=nodes,
        devices=devices,
        pools={1: pool},
        pg_tables={1: table},
    )


def verified(epoch: int = 9, **fields: object) -> dict[int, RepairState]:
    return {i: RepairState(checked_epoch=epoch, **fields) for i in (1, 2, 3)}  # type: ignore[arg-type]


def test_every_member_verified_after_the_table_epoch_is_healthy() -> None:
    health = pg_health(cluster(), verified())
    assert (health.pgs, health.degraded_pgs) == (2, 0)
    assert health.repair_eta_s == 0.0


def test_no_report_or_one_from_before_the_table_is_degraded() -> None:
    m = cluster()
    assert pg_health(m, {}).degraded_pgs == 2
    reports = verified()
    reports[2] = RepairState(checked_epoch=4)  # before the table's epoch 5
    assert pg_health(m, reports).degraded_pgs == 2


def test_a_pg_its_member_reports_incomplete_is_degraded() -> None:
    reports = verified()
    reports[3] = RepairState(checked_epoch=9, incomplete=frozenset({(1, 1)}))
    assert pg_health(cluster(), reports).degraded_pgs == 1


def test_a_member_on_a_down_node_or_a_failed_device_degrades_its_pgs() -> None:
    m = cluster()
    down = replace(m, nodes={**m.nodes, 2: replace(m.nodes[2], state=NODE_DOWN)})
    assert pg_health(down, verified()).degraded_pgs == 2
    failed = replace(m, devices={**m.devices, 1: replace(m.devices[1], state="failed")})
    assert pg_health(failed, verified()).degraded_pgs == 2


def test_backlog_and_rate_sum_over_up_nodes_and_give_an_eta() -> None:
    reports = verified(bytes_to_repair=1000, repair_bytes_per_s=50.0)
    health = pg_health(cluster(), reports)
    assert health.bytes_to_repair == 3000 and health.repair_bytes_per_s == 150.0
    assert health.repair_eta_s == 20.0
    assert PgHealth(1, 1, 10, 0.0).repair_eta_s is None  # nothing moving: no estimate


def test_a_report_from_before_the_node_came_back_does_not_count() -> None:
    # Node 3 was down from epoch 10 to 12 (writes meanwhile left repair records); the
    # report of its last pass before that says epoch 9.
    m = replace(cluster(), epoch=12)
    assert pg_health(m, verified(9), trusted_from={3: 12}).degraded_pgs == 2
    reports = {**verified(9), 3: RepairState(checked_epoch=12)}
    assert pg_health(m, reports, trusted_from={3: 12}).degraded_pgs == 0


def degraded_by_definition(
    m: ClusterMap, reports: dict[int, RepairState], trusted_from: dict[int, int]
) -> int:
    """The module docstring's definition, member by member, PG by PG."""
    degraded = 0
    for table in m.pg_tables.values():
        for pg, members in enumerate(table.members):
            for device_id in members:
                device = m.devices.get(device_id)
                node = m.nodes.get(device.node_id) if device else None
                report = reports.get(node.id) if node else None
                if (
                    device is None
                    or node is None
                    or node.state != NODE_UP
                    or not in_service(m, device)
                    or report is None
                    or report.checked_epoch < max(table.epoch, trusted_from.get(node.id, 0))
                    or (table.pool_id, pg) in report.incomplete
                ):
                    degraded += 1
                    break
    return degraded


def test_random_maps_and_reports_are_judged_as_the_definition_says() -> None:
    rng = random.Random(20261128)

    def mostly(usual: str, others: tuple[str, ...]) -> str:
        return usual if rng.random() < 0.85 else rng.choice(others)

    outcomes = set()
    for _ in range(300):
        node_ids = range(1, rng.randint(2, 6))
        nodes = {
            i: NodeRecord(i, f"h:{i}", "", "", "", mostly(NODE_UP, NODE_STATES), True)
            for i in node_ids
        }
        devices = {
            d: DeviceRecord(d, rng.choice(node_ids), f"/d{d}", 1 << 30, mostly("in", DEVICE_STATES))
            for d in range(1, 3 * len(node_ids) + 2)
        }
        # 99: a member the map has no device record of
        known = [*devices, *([99] if rng.random() < 0.1 else [])]
        tables = {
            pool: PgTable(
                pool,
                rng.randint(1, 9),
                "digest",
                tuple(tuple(rng.sample(known, 3)) for _ in range(rng.randint(1, 12))),
            )
            for pool in (1, 2)
        }
        reports = {
            n: RepairState(
                checked_epoch=rng.choice((10, 10, 10, rng.randint(0, 10))),
                incomplete=frozenset(
                    (rng.choice((1, 2)), rng.randint(0, 11)) for _ in range(rng.randint(0, 2))
                ),
            )
            for n in node_ids
            if rng.random() < 0.9
        }
        trusted = {n: rng.randint(0, 10) for n in node_ids if rng.random() < 0.2}
        m = ClusterMap(cluster_id="c", epoch=10, nodes=nodes, devices=devices, pg_tables=tables)
        health = pg_health(m, reports, trusted)
        assert health.degraded_pgs == degraded_by_definition(m, reports, trusted)
        outcomes.add(
            "none"
            if health.degraded_pgs == 0
            else "all"
            if health.degraded_pgs == health.pgs
            else "some"
        )
    assert outcomes == {"none", "some", "all"}  # the cases cover each kind of answer
