"""Records written by format version 1 of the cluster map stay readable (STYLE §8).

tests/fixtures/formats/v1/meta.txt was written once by
tests/fixtures/formats/make_meta_fixtures.py and is never regenerated; the layout is
docs/formats/meta.md. What it holds is spelled out here again, independently of the
generator.
"""

from __future__ import annotations

from pathlib import Path

from atoll.meta.cluster_map import ClusterMap, Credentials, PoolRecord
from atoll.meta.commands import (
    Bootstrap,
    Command,
    CreateBucket,
    CreatePool,
    DeleteBucket,
    RegisterDevice,
    RegisterNode,
    SetDeviceState,
    SetNodeState,
    SetPgTable,
    apply_command,
    decode_command,
    decode_map,
    encode_command,
    encode_map,
)

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "formats" / "v1" / "meta.txt"

EXPECTED: list[Command] = [
    Bootstrap(
        "00112233445566778899aabbccddeeff",
        1_764_000_000_000,
        Credentials("AKEXAMPLE", "secret/+example"),
        (PoolRecord(0, "standard", 1, 1, 2, "host", "STANDARD"),),
        (1,),
    ),
    RegisterNode(1, "127.0.0.1:7001", "127.0.0.1:7101", "z1", "r1", True),
    RegisterNode(2, "127.0.0.1:7002", "", "z1", "r2", False),
    RegisterDevice(1, "/srv/a", 1 << 40),
    RegisterDevice(2, "/srv/b", 2 << 40),
    SetNodeState(2, "down", expect="up"),
    SetDeviceState(2, "in"),
    CreatePool(PoolRecord(0, "replicated", 1, 1, 1, "device", "REDUCED_REDUNDANCY")),
    SetPgTable(1, "0" * 32, ((1, 2), (2, 1))),
    CreateBucket("photos", "standard", "root", 1_764_000_000_001),
    DeleteBucket("photos"),
    CreateBucket("docs", "replicated", "root", 1_764_000_000_002),
]


def records() -> list[tuple[str, bytes]]:
    out = []
    for line in FIXTURE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, data = line.split()
            out.append((name, bytes.fromhex(data)))
    return out


def test_commands_decode_and_encode_byte_for_byte() -> None:
    commands = [data for name, data in records() if name == "command"]
    assert [decode_command(data) for data in commands] == EXPECTED
    assert [encode_command(c) for c in EXPECTED] == commands


def test_the_map_decodes_and_is_what_the_commands_make() -> None:
    (data,) = [data for name, data in records() if name == "map"]
    m = decode_map(data)
    assert encode_map(m) == data
    built = ClusterMap()
    outcomes = []
    for command in EXPECTED:
        built, result = apply_command(built, command)
        outcomes.append(result.ok)
    assert built == m
    # Two records are refused (a device already in; a table from another map).
    assert outcomes.count(False) == 2 and m.epoch == len(EXPECTED) - 2
    assert (m.nodes[2].state, m.devices[2].capacity_bytes, sorted(m.buckets)) == (
        "down",
        2 << 40,
        ["docs"],
    )
    assert [p.name for p in m.pools.values()] == ["standard", "replicated"]
