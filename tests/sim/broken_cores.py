"""Deliberately broken Raft cores, and a broken host: the simulator must catch each
within a bounded number of seeds, or its checks are not checking anything (issue 3,
§4)."""

from __future__ import annotations

import random

from atoll.raft import Message, MessageType, PersistedState, Raft, RaftConfig
from atoll.raft.quorum import VoteResult
from atoll.raft.types import SEND_BEFORE_PERSIST, Ready
from atoll.sim.raft_sim import RaftSim, SimNode


class CommitsWithoutMajority(Raft):
    """A leader that commits what any single follower (or itself) has."""

    def _maybe_commit(self) -> bool:
        prev = self.log.committed
        best = max(pr.match for pr in self.prs.values())
        if not self.log.maybe_commit(best, self.term):
            return False
        self._after_commit(prev)
        return True


class VotesWithoutLogCheck(Raft):
    """A voter that grants its vote to any candidate, however stale its log."""

    def _handle_vote_request(self, m: Message) -> None:
        response = (
            MessageType.VOTE_RESP if m.type is MessageType.VOTE else MessageType.PRE_VOTE_RESP
        )
        can_vote = self.vote in (0, m.frm) or m.type is MessageType.PRE_VOTE
        if can_vote:
            self._send(Message(response, to=m.frm, term=m.term))
            if m.type is MessageType.VOTE:
                self.election_elapsed = 0
                self.vote = m.frm
        else:
            self._send(Message(response, to=m.frm, term=self.term, reject=True))


class WinsWithoutQuorum(Raft):
    """A candidate that declares victory on its own vote plus any one more."""

    def _poll(self, node: int, granted: bool) -> VoteResult:
        self.votes.setdefault(node, granted)
        return VoteResult.WON if sum(self.votes.values()) >= 2 else VoteResult.PENDING


def factory(cls: type[Raft]):  # type: ignore[no-untyped-def]
    def make(config: RaftConfig, rng: random.Random, state: PersistedState, applied: int) -> Raft:
        return cls(config, rng, state, applied)

    return make


class EagerAckHost(RaftSim):
    """A host that sends votes and append acknowledgements before the writes they
    promise are synced (the bug the Ready order exists to prevent)."""

    def persist(self, node: SimNode, rd: Ready) -> None:
        late = [m for m in rd.messages if m.type not in SEND_BEFORE_PERSIST]
        for m in late:
            self.send(node, m)
        rd.messages = [m for m in rd.messages if m.type in SEND_BEFORE_PERSIST]
        super().persist(node, rd)
