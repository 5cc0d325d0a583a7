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
    method. `code` is one of the `ERROR_*` codes of `atoll.rpc.frame`, or the code of
    a `HandlerError` the handler raised; `remote_message` is the peer's text (for a
    handler failure, the exception's type and message) and `detail` the error frame's
    message bytes as sent (binary for a `HandlerError`, such as a serialized
    `atoll.kv.v1.KvError` under code `kv_error`)."""

    def __init__(
        self,
        code: str,
        remote_message: str,
        *,
        method: str,
        request_id: int,
        detail: bytes = b"",
    ) -> None:
        super().__init__(
            f"remote error {code} in {method!r} (request {request_id}): {remote_message}"
        )
        self.code = code
        self.remote_message = remote_message
        self.method = method
        self.request_id = request_id
        self.detail = detail


class HandlerError(RpcError):
    """Raised by a handler to answer with an error frame of its own: `code` (1..255
    bytes of UTF-8, not one of the transport's `ERROR_*` codes) and `detail`, the
    frame's message, at most `DETAIL_BYTES_MAX` bytes. The caller gets an
    `RpcRemoteError` with the same `code` and `detail`."""

    DETAIL_BYTES_MAX = 4096

    def __init__(self, code: str, detail: bytes = b"") -> None:
        if not 0 < len(code.encode()) <= 255:
            raise ValueError(f"error code {code!r} must be 1..255 bytes")
        if len(detail) > self.DETAIL_BYTES_MAX:
            raise ValueError(f"error detail of {len(detail)} bytes, over {self.DETAIL_BYTES_MAX}")
        super().__init__(f"handler error {code} ({len(detail)} bytes of detail)")
        self.code = code
        self.detail = detail


class ConnectionLost(RpcError, ConnectionError):
    """The connection closed (or was dropped after a bad frame) before a reply came;
    also raised by calls on a client that is already closed."""


__all__ = [
    "ConnectionLost",
    "FrameError",
    "HandlerError",
    "RpcError",
    "RpcRemoteError",
    "RpcTimeout",
]
