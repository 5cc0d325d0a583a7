"""`atoll.rpc`: the framed node-to-node transport (docs/rpc.md; shared/DESIGN.md §2).

`frame` is the pure wire format; `streams` the per-stream flow control; `connection`
(what both ends share), `server` (`RpcServer`) and `client` (`RpcClient`) the asyncio
shell. Messages are opaque `bytes` (protobuf
above this layer); a raw payload travels beside each. Besides one-reply calls there
are server streams (`RpcClient.stream`) and client streams (`RpcClient.call_stream`).
"""

from atoll.rpc.client import RpcClient
from atoll.rpc.connection import (
    CALL_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    HANDLERS_INFLIGHT_MAX,
    INFLIGHT_CALLS_MAX,
    STREAM_IDLE_TIMEOUT_S,
    STREAMS_INFLIGHT_MAX,
    Chunk,
    ClientStreamHandler,
    Handler,
)
from atoll.rpc.errors import (
    ConnectionLost,
    FrameError,
    HandlerError,
    RpcError,
    RpcRemoteError,
    RpcTimeout,
)
from atoll.rpc.frame import (
    ERROR_DUPLICATE_REQUEST,
    ERROR_HANDLER_FAILED,
    ERROR_STREAM_MISMATCH,
    ERROR_TOO_MANY_STREAMS,
    ERROR_UNKNOWN_METHOD,
    MESSAGE_BYTES_MAX,
    PAYLOAD_BYTES_MAX,
    STREAM_ACK_EVERY_CHUNKS,
    STREAM_WINDOW_CHUNKS,
    Frame,
    FrameDecoder,
    OutPayload,
    encode_frame,
    encode_header,
)
from atoll.rpc.local import LocalClient, RpcCaller
from atoll.rpc.pool import RpcPool, split_address
from atoll.rpc.server import RpcServer
from atoll.rpc.streams import Reply

__all__ = [
    "CALL_TIMEOUT_S",
    "CONNECT_TIMEOUT_S",
    "ERROR_DUPLICATE_REQUEST",
    "ERROR_HANDLER_FAILED",
    "ERROR_STREAM_MISMATCH",
    "ERROR_TOO_MANY_STREAMS",
    "ERROR_UNKNOWN_METHOD",
    "HANDLERS_INFLIGHT_MAX",
    "INFLIGHT_CALLS_MAX",
    "MESSAGE_BYTES_MAX",
    "PAYLOAD_BYTES_MAX",
    "STREAMS_INFLIGHT_MAX",
    "STREAM_ACK_EVERY_CHUNKS",
    "STREAM_IDLE_TIMEOUT_S",
    "STREAM_WINDOW_CHUNKS",
    "Chunk",
    "ClientStreamHandler",
    "ConnectionLost",
    "Frame",
    "FrameDecoder",
    "FrameError",
    "Handler",
    "HandlerError",
    "LocalClient",
    "OutPayload",
    "Reply",
    "RpcCaller",
    "RpcClient",
    "RpcError",
    "RpcPool",
    "RpcRemoteError",
    "RpcServer",
    "RpcTimeout",
    "encode_frame",
    "encode_header",
    "split_address",
]
