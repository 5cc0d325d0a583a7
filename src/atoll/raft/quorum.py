"""Quorum arithmetic for Raft: commit indexes and vote outcomes. Pure: no I/O.

A majority configuration is a set of voter ids; a joint configuration (during a
membership change, Raft thesis §4.3) is two of them, and a decision needs a majority
of each. As in etcd/raft's `quorum` package, the functions take plain mappings (node
id -> acknowledged index, node id -> vote) so the core can call them with whatever it
tracks, and a missing entry counts as "no acknowledgement yet".
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass


class VoteResult(enum.Enum):
    PENDING = "pending"  # neither outcome is decided yet
    LOST = "lost"  # a majority can no longer be reached
    WON = "won"


@dataclass(frozen=True)
class MajorityConfig:
    voters: frozenset[int]

    def committed_index(self, acked: Mapping[int, int]) -> int:
        """The largest index acknowledged by a majority of voters (0 if none).

        An empty configuration commits everything (it places no constraint), which is
        what the outgoing half of a non-joint configuration needs.
        """
        if not self.voters:
            return 1 << 63
        indexes = sorted((acked.get(v, 0) for v in self.voters), reverse=True)
        return indexes[len(indexes) // 2]

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        if not self.voters:
            return VoteResult.WON
        yes = sum(1 for v in self.voters if votes.get(v) is True)
        no = sum(1 for v in self.voters if votes.get(v) is False)
        need = len(self.voters) // 2 + 1
        if yes >= need:
            return VoteResult.WON
        if len(self.voters) - no < need:
            return VoteResult.LOST
        return VoteResult.PENDING


@dataclass(frozen=True)
class JointConfig:
    """The incoming configuration, and the outgoing one while a change is in flight
    (empty otherwise)."""

    incoming: MajorityConfig
    outgoing: MajorityConfig = MajorityConfig(frozenset())

    @property
    def voters(self) -> frozenset[int]:
        return self.incoming.voters | self.outgoing.voters

    @property
    def joint(self) -> bool:
        return bool(self.outgoing.voters)

    def committed_index(self, acked: Mapping[int, int]) -> int:
        return min(self.incoming.committed_index(acked), self.outgoing.committed_index(acked))

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        a = self.incoming.vote_result(votes)
        b = self.outgoing.vote_result(votes)
        if a is b:
            return a
        if VoteResult.LOST in (a, b):
            return VoteResult.LOST
        return VoteResult.PENDING


def majority(*voters: int) -> JointConfig:
    """A plain (non-joint) configuration of `voters`."""
    return JointConfig(MajorityConfig(frozenset(voters)))
