"""Typed errors of the Raft core (expected failures, not bugs)."""

from __future__ import annotations

from atoll.base.errors import AtollError


class RaftError(AtollError):
    """Root of the Raft core's expected failures."""


class ProposalDropped(RaftError):
    """The core did not accept a proposal, read or transfer request; nothing was
    appended, so the caller may retry elsewhere."""


class NotLeader(ProposalDropped):
    """This node is not the leader; `leader` is the one it knows of (0 if none)."""

    def __init__(self, node: int, term: int, leader: int) -> None:
        super().__init__(
            f"node {node} is not the leader in term {term} (leader: {leader or 'unknown'})"
        )
        self.node = node
        self.term = term
        self.leader = leader


class ConfigError(RaftError, ValueError):
    """An invalid core configuration."""
