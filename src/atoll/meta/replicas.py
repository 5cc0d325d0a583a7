"""How a Raft group keeps three live voters (issue 6 §1, "Raft groups too"). Pure.

The leader of each group (the meta group, every KV region) asks `next_change` once a
second and carries out the one change it returns, if any; the Raft core allows one
membership change at a time and refuses to promote a learner that has not caught up,
so the next round simply asks again.

A voter is *leaving* when the map says its node is `out` or `draining`. A voter the
map does not know is not (a founder that has not registered yet; a node cannot be
removed from the map while it holds a replica). The rules, first match wins:

1. A learner on a node that is not `up` is removed (it will not catch up).
2. Fewer than `VOTERS_MIN` voters that are not leaving: a learner is promoted if there
   is one (the core waits until it has caught up), else a learner is added on the
   best candidate: a node that is `up`, not draining, and not in the group, in a zone
   the staying voters use least, lowest id first. With no candidate, nothing changes:
   a dead voter is kept rather than shrink the group below `VOTERS_MIN`.
3. No voter is wanted and a learner remains (the node it was to replace came back in):
   the learner is removed.
4. More than `VOTERS_MIN` voters and one of them leaving: it is removed. The leader
   never removes itself (its node is alive, whatever the map says): `transfer_to`
   names the voter that should lead instead.

So a group that lost a node for good adds a learner on a live node, promotes it once
caught up and then drops the dead voter: its majority is counted among live nodes
again and it survives losing another node. Membership changes never leave a window
with two majorities (one change at a time, Raft thesis §4.1).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Set

from atoll.meta.cluster_map import NODE_DRAINING, NODE_OUT, NODE_UP, ClusterMap
from atoll.raft.types import ConfChange, ConfChangeOp

VOTERS_MIN = 3


def leaving(m: ClusterMap, node_id: int) -> bool:
    node = m.nodes.get(node_id)
    return node is not None and node.state in (NODE_OUT, NODE_DRAINING)


def next_change(
    m: ClusterMap, voters: Set[int], learners: Set[int], leader_id: int
) -> ConfChange | None:
    """The membership change the leader `leader_id` of a group with `voters` and
    `learners` should propose next, by the map `m` (module docstring)."""
    for node_id in sorted(learners):
        node = m.nodes.get(node_id)
        if node is None or node.state != NODE_UP:
            return ConfChange(ConfChangeOp.REMOVE_NODE, node_id)
    staying = sorted(v for v in voters if not leaving(m, v))
    if len(staying) < VOTERS_MIN:
        if learners:
            return ConfChange(ConfChangeOp.ADD_VOTER, min(learners))
        candidate = _candidate(m, voters, staying)
        if candidate is not None:
            return ConfChange(ConfChangeOp.ADD_LEARNER, candidate)
    elif learners:
        return ConfChange(ConfChangeOp.REMOVE_NODE, min(learners))
    if len(voters) > VOTERS_MIN:
        for v in sorted(voters):
            if v != leader_id and leaving(m, v):
                return ConfChange(ConfChangeOp.REMOVE_NODE, v)
    return None


def transfer_to(m: ClusterMap, voters: Set[int], leader_id: int) -> int | None:
    """A staying, up voter to hand leadership to when the leader's own node is leaving
    and the group has more voters than it needs (so that it can then be removed);
    None otherwise."""
    if not leaving(m, leader_id) or len(voters) <= VOTERS_MIN:
        return None
    for v in sorted(voters):
        node = m.nodes.get(v)
        if v != leader_id and node is not None and node.state == NODE_UP:
            return v
    return None


def _candidate(m: ClusterMap, voters: Set[int], staying: list[int]) -> int | None:
    zones = Counter(m.nodes[v].zone for v in staying)
    candidates = [n for n in m.nodes.values() if n.state == NODE_UP and n.id not in voters]
    if not candidates:
        return None
    return min(candidates, key=lambda n: (zones[n.zone], n.id)).id
