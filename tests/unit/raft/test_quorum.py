"""Quorum arithmetic against a brute-force definition over random configurations."""

from __future__ import annotations

from itertools import combinations

from hypothesis import given
from hypothesis import strategies as st

from atoll.raft.quorum import JointConfig, MajorityConfig, VoteResult, majority

ids = st.frozensets(st.integers(1, 7), min_size=1, max_size=7)


def brute_committed(voters: frozenset[int], acked: dict[int, int]) -> int:
    """The largest index i such that some majority all acknowledged >= i."""
    need = len(voters) // 2 + 1
    best = 0
    for group in combinations(sorted(voters), need):
        best = max(best, min(acked.get(v, 0) for v in group))
    return best


@given(ids, st.dictionaries(st.integers(1, 7), st.integers(0, 20)))
def test_committed_index_is_what_a_majority_holds(
    voters: frozenset[int], acked: dict[int, int]
) -> None:
    assert MajorityConfig(voters).committed_index(acked) == brute_committed(voters, acked)


@given(ids, ids, st.dictionaries(st.integers(1, 7), st.integers(0, 20)))
def test_joint_commit_needs_both_majorities(
    a: frozenset[int], b: frozenset[int], acked: dict[int, int]
) -> None:
    joint = JointConfig(MajorityConfig(a), MajorityConfig(b))
    assert joint.committed_index(acked) == min(brute_committed(a, acked), brute_committed(b, acked))


def brute_vote(voters: frozenset[int], votes: dict[int, bool]) -> VoteResult:
    need = len(voters) // 2 + 1
    yes = [v for v in voters if votes.get(v) is True]
    possible = [v for v in voters if votes.get(v) is not False]
    if len(yes) >= need:
        return VoteResult.WON
    if len(possible) < need:
        return VoteResult.LOST
    return VoteResult.PENDING


@given(ids, st.dictionaries(st.integers(1, 7), st.booleans()))
def test_vote_result(voters: frozenset[int], votes: dict[int, bool]) -> None:
    assert MajorityConfig(voters).vote_result(votes) == brute_vote(voters, votes)


def test_examples() -> None:
    three = majority(1, 2, 3)
    assert three.committed_index({1: 5, 2: 3}) == 3
    assert three.committed_index({1: 5}) == 0
    assert three.vote_result({1: True}) is VoteResult.PENDING
    assert three.vote_result({1: True, 2: True}) is VoteResult.WON
    assert three.vote_result({2: False, 3: False}) is VoteResult.LOST
    joint = JointConfig(MajorityConfig(frozenset({1, 2, 3})), MajorityConfig(frozenset({3, 4, 5})))
    assert joint.joint and joint.voters == {1, 2, 3, 4, 5}
    assert (
        joint.vote_result({1: True, 2: True}) is VoteResult.PENDING
    )  # the old half has not agreed
    assert joint.vote_result({1: True, 2: True, 4: True, 5: True}) is VoteResult.WON
    assert joint.vote_result({1: True, 2: True, 4: False, 5: False}) is VoteResult.LOST
    assert joint.committed_index({1: 9, 2: 9, 3: 1, 4: 1, 5: 1}) == 1
