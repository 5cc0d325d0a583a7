"""Expected failures of the node-to-node transport (shared/STYLE.md §7). Pure.

Where a built-in category applies the error inherits it too, so callers may catch
either: `RpcTimeout` is a `TimeoutError`, `ConnectionLost` a `ConnectionError`.
"""

from __future__ import annotations

from atoll.base.errors import AtollError


class RpcError(AtollError):
    """Root of transport failures."""


class FrameError(RpcError):
    """A frame that cannot be trusted: bad magic, version, kind, flags or header CRC, a
    length over its limit, or a payload CRC mismatch. On receipt the stream is out of
    step and the connection is dropped; on send nothing was written.

    `offset` is the frame's position in the byte stream of its connection (None when
    the frame was being encoded).
    """

    def __init__(self, reason: str, *, offset: int | None = None) -> None:
        where = f" at stream offset {offset}" if offset is not None else ""
        super().__init__(f"bad rpc frame{where}: {reason}")
        self.reason = reason
        self.offset = offset


class RpcTimeout(RpcError, TimeoutError):
    """A call got no reply within its `timeout_s`; a cancel frame was sent to the peer."""


class RpcRemoteError(RpcError):
    """The peer answered with an error frame: its handler raised, or it knew no such
    method. `code` is one of the `ERROR_*` codes of `atoll.rpc.frame`; `remote_message`
    is the peer's text (for a handler failure, the exception's type and message)."""

    def __init__(self, code: str, remote_message: str, *, method: str, request_id: int) -> None:
        super().__init__(
            f"remote error {code} in {method!r} (request {request_id}): {remote_message}"
        )
        self.code = code
        self.remote_message = remote_message
        self.method = method
        self.request_id = request_id


class ConnectionLost(RpcError, ConnectionError):
    """The connection closed (or was dropped after a bad frame) before a reply came;
    also raised by calls on a client that is already closed."""


__all__ = ["ConnectionLost", "FrameError", "RpcError", "RpcRemoteError", "RpcTimeout"]
