"""`atoll.proto`: Python code generated from the protobuf schemas in proto/atoll/.

Generated, do not edit: `raft_pb2` (proto/atoll/raft.proto, package `atoll.raft.v1`)
and `kv_pb2` with `kv_pb2_grpc` (proto/atoll/kv.proto, package `atoll.kv.v1`), each
with a `.pyi` stub. Pure data classes, no I/O (the gRPC stubs do I/O only when used).

Regenerate with `make proto` (which runs `python proto/generate.py`, using the protoc
bundled with the pinned grpcio-tools); tests/unit/proto/test_generated_up_to_date.py
fails when the committed files differ from what the schemas generate. proto/generate.py
explains how the imports come out as `atoll.proto.*`.
"""
