"""Which membership change a Raft group's leader makes next (src/atoll/meta/replicas.py)."""

from __future__ import annotations

from dataclasses import replace

from atoll.meta.cluster_map import (
    NODE_DOWN,
    NODE_DRAINING,
    NODE_OUT,
    NODE_UP,
    ClusterMap,
    NodeRecord,
)
from atoll.meta.replicas import next_change, transfer_to
from atoll.raft.types import ConfChange, ConfChangeOp, ConfState

ADD_LEARNER, ADD_VOTER, REMOVE = (
    ConfChangeOp.ADD_LEARNER,
    ConfChangeOp.ADD_VOTER,
    ConfChangeOp.REMOVE_NODE,
)


def cluster(states: dict[int, str], zones: dict[int, str] | None = None) -> ClusterMap:
    zones = zones or {}
    nodes = {
        i: NodeRecord(i, f"127.0.0.1:{7000 + i}", "", zones.get(i, ""), "", state, i <= 3)
        for i, state in states.items()
    }
    return ClusterMap(cluster_id="c", nodes=nodes, founders=(1, 2, 3))


def settle(m: ClusterMap, conf: ConfState, leader: int) -> tuple[ConfState, list[ConfChange]]:
    """Apply the planner's changes one at a time (as the core would, every learner
    caught up at once) until it asks for none; at most 20 steps."""
    changes = []
    for _ in range(20):
        change = next_change(m, conf.voters, conf.learners, leader)
        if change is None:
            return conf, changes
        changes.append(change)
        conf = conf.apply(change)
    raise AssertionError(f"no fixed point: {changes}")


def test_a_dead_voter_is_replaced_through_a_learner_then_dropped() -> None:
    m = cluster({1: NODE_UP, 2: NODE_OUT, 3: NODE_UP, 4: NODE_UP})
    conf, changes = settle(m, ConfState(frozenset({1, 2, 3})), leader=1)
    assert changes == [
        ConfChange(ADD_LEARNER, 4),
        ConfChange(ADD_VOTER, 4),
        ConfChange(REMOVE, 2),
    ]
    assert conf == ConfState(frozenset({1, 3, 4}))


def test_without_a_spare_node_a_dead_voter_is_kept() -> None:
    m = cluster({1: NODE_UP, 2: NODE_OUT, 3: NODE_UP})
    assert next_change(m, {1, 2, 3}, set(), 1) is None


def test_a_down_voter_is_waited_for_and_a_four_voter_group_sheds_an_out_one() -> None:
    m = cluster({1: NODE_UP, 2: NODE_DOWN, 3: NODE_UP, 4: NODE_UP, 5: NODE_UP})
    assert next_change(m, {1, 2, 3}, set(), 1) is None
    m = cluster({1: NODE_UP, 2: NODE_OUT, 3: NODE_UP, 4: NODE_UP})
    conf, changes = settle(m, ConfState(frozenset({1, 2, 3, 4})), leader=1)
    assert changes == [ConfChange(REMOVE, 2)] and conf.voters == {1, 3, 4}


def test_a_learner_that_is_no_longer_needed_or_not_up_goes() -> None:
    m = cluster({1: NODE_UP, 2: NODE_UP, 3: NODE_UP, 4: NODE_UP})
    assert next_change(m, {1, 2, 3}, {4}, 1) == ConfChange(REMOVE, 4)
    m = cluster({1: NODE_UP, 2: NODE_OUT, 3: NODE_UP, 4: NODE_DOWN, 5: NODE_UP})
    conf, changes = settle(m, ConfState(frozenset({1, 2, 3}), frozenset({4})), leader=1)
    assert changes[0] == ConfChange(REMOVE, 4)
    assert conf.voters == {1, 3, 5} and not conf.learners


def test_a_draining_voter_leaves_only_after_its_replacement_votes() -> None:
    m = cluster({1: NODE_UP, 2: NODE_DRAINING, 3: NODE_UP, 4: NODE_UP})
    conf, changes = settle(m, ConfState(frozenset({1, 2, 3})), leader=1)
    assert [c.op for c in changes] == [ADD_LEARNER, ADD_VOTER, REMOVE]
    assert changes[-1].node_id == 2 and conf.voters == {1, 3, 4}


def test_the_leader_never_removes_itself_but_hands_over() -> None:
    m = cluster({1: NODE_DRAINING, 2: NODE_UP, 3: NODE_UP, 4: NODE_UP})
    conf, changes = settle(m, ConfState(frozenset({1, 2, 3})), leader=1)
    assert conf.voters == {1, 2, 3, 4} and 1 not in [c.node_id for c in changes]
    assert transfer_to(m, conf.voters, 1) == 2
    assert next_change(m, conf.voters, set(), 2) == ConfChange(REMOVE, 1)
    assert transfer_to(m, {1, 2, 3}, 1) is None  # no voter to spare yet
    assert (
        transfer_to(
            replace(m, nodes={**m.nodes, 1: replace(m.nodes[1], state=NODE_UP)}), conf.voters, 1
        )
        is None
    )


def test_a_replacement_goes_to_the_zone_the_staying_voters_use_least() -> None:
    zones = {1: "a", 2: "b", 3: "c", 4: "a", 5: "b", 6: "c"}
    m = cluster({1: NODE_UP, 2: NODE_UP, 3: NODE_OUT, 4: NODE_UP, 5: NODE_UP, 6: NODE_UP}, zones)
    assert next_change(m, {1, 2, 3}, set(), 1) == ConfChange(ADD_LEARNER, 6)
    m = cluster({1: NODE_UP, 2: NODE_UP, 3: NODE_OUT, 4: NODE_UP, 5: NODE_UP})
    assert next_change(m, {1, 2, 3}, set(), 1) == ConfChange(ADD_LEARNER, 4)


def test_voters_the_map_does_not_know_yet_are_left_alone() -> None:
    # Just after the bootstrap only some founders have registered; a joiner is up.
    m = cluster({1: NODE_UP, 4: NODE_UP})
    assert next_change(m, {1, 2, 3}, set(), 1) is None
    assert next_change(m, {1, 2, 3, 5, 6}, set(), 1) is None
