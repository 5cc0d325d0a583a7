"""Atoll's Raft (shared/DESIGN.md §6): so far the quorum arithmetic of the pure core.

The consensus core, its log, the multi-raft host and the transport come in the
following steps of the Raft issue.
"""

from atoll.raft.quorum import JointConfig, MajorityConfig, VoteResult, majority

__all__ = ["JointConfig", "MajorityConfig", "VoteResult", "majority"]
