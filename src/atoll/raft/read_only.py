"""Linearizable reads by ReadIndex (Raft thesis §6.4). Pure: no I/O.

A leader that receives a read request records its commit index with the request's
context, then sends a round of heartbeats carrying that context. Once a majority of
voters has answered a heartbeat carrying it (or a later one: heartbeats answer in
order), the leader knows it was still the leader when the request arrived, and the read
may be served as soon as the state machine has applied the recorded index. Requests
are released in arrival order.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from atoll.base.errors import invariant


@dataclass
class ReadIndexRequest:
    index: int
    requester: int  # the node the answer goes to (the leader itself for local reads)
    context: bytes
    acks: set[int] = field(default_factory=set)


class ReadOnly:
    __slots__ = ("capacity", "pending")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.pending: OrderedDict[bytes, ReadIndexRequest] = OrderedDict()

    def full(self) -> bool:
        return len(self.pending) >= self.capacity

    def add(self, index: int, requester: int, context: bytes) -> bool:
        """Queue a request; False if its context is already pending (a duplicate)."""
        invariant(not self.full(), "read-index queue overflow")
        if context in self.pending:
            return False
        self.pending[context] = ReadIndexRequest(index, requester, context)
        return True

    def ack(self, node: int, context: bytes) -> set[int] | None:
        request = self.pending.get(context)
        if request is None:
            return None
        request.acks.add(node)
        return request.acks

    def release(self, context: bytes) -> list[ReadIndexRequest]:
        """Every request queued up to and including `context`, removed from the queue."""
        if context not in self.pending:
            return []
        out = []
        while self.pending:
            key, request = self.pending.popitem(last=False)
            out.append(request)
            if key == context:
                break
        return out

    def last_context(self) -> bytes:
        return next(reversed(self.pending)) if self.pending else b""

    def reset(self) -> None:
        self.pending.clear()
