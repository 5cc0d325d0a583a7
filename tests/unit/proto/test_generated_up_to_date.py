"""The committed src/atoll/proto/ files are what proto/generate.py makes from the
schemas in proto/atoll/ (run `make proto` when this fails), and they import as
`atoll.proto.*`. Writes only to a temporary directory."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "src" / "atoll" / "proto"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("proto_generate", ROOT / "proto" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_files_match_the_schemas(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the dev extra) regenerates")
    generator = _generator()
    generator.generate(tmp_path)
    fresh = generator.generated_files(tmp_path)
    assert fresh, "no schemas found under proto/atoll/"
    stale = [
        path.name
        for path in fresh
        if not (COMMITTED / path.name).exists()
        or (COMMITTED / path.name).read_bytes() != path.read_bytes()
    ]
    assert not stale, f"run `make proto`: {stale} differ from what the schemas generate"
    expected = {path.name for path in fresh} | {"__init__.py"}
    extra = {path.name for path in COMMITTED.iterdir() if path.is_file()} - expected
    assert not extra, f"files in src/atoll/proto/ that no schema generates: {sorted(extra)}"


def test_generated_modules_import_as_atoll_proto() -> None:
    from atoll.proto import kv_pb2, kv_pb2_grpc, raft_pb2

    assert raft_pb2.DESCRIPTOR.package == "atoll.raft.v1"
    assert kv_pb2.DESCRIPTOR.package == "atoll.kv.v1"
    assert kv_pb2.DESCRIPTOR.services_by_name["KV"].methods_by_name["Watch"].server_streaming
    assert hasattr(kv_pb2_grpc, "KVServicer")


def test_raft_enums_mirror_the_core_types() -> None:
    from atoll.proto import raft_pb2
    from atoll.raft.types import EntryType, MessageType

    wire = {
        name.removeprefix("MESSAGE_TYPE_"): number for name, number in raft_pb2.MessageType.items()
    }
    assert wire == {t.name: t.value for t in MessageType}
    entry = {
        name.removeprefix("ENTRY_TYPE_"): number for name, number in raft_pb2.EntryType.items()
    }
    assert entry == {t.name: t.value for t in EntryType}
