"""`atoll.rpc`: the framed node-to-node transport (docs/rpc.md; shared/DESIGN.md §2).

`frame` is the pure wire format; `connection` is the asyncio shell (`RpcServer`,
`RpcClient`). Messages are opaque `bytes` for now; a raw payload travels beside each.
"""

from atoll.rpc.connection import (
    CALL_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    HANDLERS_INFLIGHT_MAX,
    INFLIGHT_CALLS_MAX,
    Handler,
    Reply,
    RpcClient,
    RpcServer,
)
from atoll.rpc.errors import ConnectionLost, FrameError, RpcError, RpcRemoteError, RpcTimeout
from atoll.rpc.frame import (
    ERROR_HANDLER_FAILED,
    ERROR_UNKNOWN_METHOD,
    MESSAGE_BYTES_MAX,
    PAYLOAD_BYTES_MAX,
    Frame,
    FrameDecoder,
    encode_frame,
    encode_header,
)

__all__ = [
    "CALL_TIMEOUT_S",
    "CONNECT_TIMEOUT_S",
    "ERROR_HANDLER_FAILED",
    "ERROR_UNKNOWN_METHOD",
    "HANDLERS_INFLIGHT_MAX",
    "INFLIGHT_CALLS_MAX",
    "MESSAGE_BYTES_MAX",
    "PAYLOAD_BYTES_MAX",
    "ConnectionLost",
    "Frame",
    "FrameDecoder",
    "FrameError",
    "Handler",
    "Reply",
    "RpcClient",
    "RpcError",
    "RpcRemoteError",
    "RpcServer",
    "RpcTimeout",
    "encode_frame",
    "encode_header",
]
