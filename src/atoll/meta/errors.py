"""Errors of the cluster map (`atoll.meta`). Pure: no I/O."""

from __future__ import annotations

from atoll.base.errors import AtollError


class MetaError(AtollError):
    """Root of the cluster map's expected failures."""


class MapFormatError(MetaError):
    """Bytes that should hold a meta command or an encoded map do not: bad magic,
    unknown version, checksum mismatch or a malformed body (docs/formats/meta.md)."""


class MetaNotLeader(MetaError):
    """This node is not the meta group's leader; `leader_id` (0 if unknown) and its
    atoll.rpc `leader_address` ("" if unknown) say where to go."""

    def __init__(self, leader_id: int, leader_address: str) -> None:
        super().__init__(f"not the meta leader (leader: node {leader_id or '?'})")
        self.leader_id = leader_id
        self.leader_address = leader_address


class MetaRefused(MetaError):
    """The meta leader refused the request (for example, a command the map rejects);
    the message says why."""


class MetaUnavailable(MetaError):
    """The meta group could not be reached or did not answer in time."""


class NotBootstrapped(MetaError):
    """The cluster has not been created yet (no Bootstrap command committed)."""
