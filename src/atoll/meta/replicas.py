"""Which Raft voters a group should drop (issue 6 §1, "Raft groups too"). Pure.

A voter on a node that is `out` (gone for `out_after_s`, or taken out by an operator)
is removed from the group by its leader, so that the group's majority is counted
among live nodes: a 4-voter group that lost one node for good needs 3 of the other
3 to commit, and after the removal 2 of 3, so it survives losing a second node.
A removal never takes a group below `VOTERS_MIN` voters (with fewer there is no
redundancy to gain), and a leader never removes itself (its node is alive, whatever
the map says; an operator moves leadership first).

Adding a replacement replica on another node (a learner promoted once caught up) is
not done yet: docs/repair.md, known weaknesses."""

from __future__ import annotations

from collections.abc import Set

from atoll.meta.cluster_map import NODE_OUT, ClusterMap

VOTERS_MIN = 3


def voters_to_remove(m: ClusterMap, voters: Set[int], leader_id: int) -> list[int]:
    """Voters of a group led by `leader_id` to remove, one change at a time in this
    order, by the map `m`."""
    out = sorted(
        v for v in voters if v != leader_id and v in m.nodes and m.nodes[v].state == NODE_OUT
    )
    room = max(0, len(voters) - VOTERS_MIN)
    return out[:room]
