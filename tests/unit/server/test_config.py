"""The node config file (src/atoll/server/config.py): the cluster-map keys, joining,
and the errors for inconsistent files."""

from __future__ import annotations

from pathlib import Path

import pytest

from atoll.server.config import ConfigFileError, load

BASE = (
    'node_id = 4\ndata_dir = "/d"\nrpc_address = "127.0.0.1:7004"\nkv_address = "127.0.0.1:7104"\n'
)
MEMBERS = '[[nodes]]\nid = 4\nrpc = "127.0.0.1:7004"\nkv = "127.0.0.1:7104"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_a_member_with_devices_zone_and_bootstrap(tmp_path: Path) -> None:
    text = (
        BASE
        + 'zone = "z1"\nrack = "r2"\nheartbeat_interval_s = 0.5\ndown_after_s = 4\n'
        + MEMBERS
        + '[[devices]]\npath = "/srv/a"\n[[devices]]\npath = "/srv/b"\ncapacity_bytes = 1024\n'
        + "[bootstrap]\nhosts = 3\ndevices_per_host = 2\n"
    )
    config = load(write(tmp_path, text))
    assert config.member and (config.zone, config.rack) == ("z1", "r2")
    assert [(d.path, d.capacity_bytes) for d in config.devices] == [
        (Path("/srv/a"), 0),
        (Path("/srv/b"), 1024),
    ]
    assert config.bootstrap is not None and config.bootstrap.hosts == 3
    assert (config.heartbeat_interval_s, config.down_after_s) == (0.5, 4.0)


def test_join_from_the_file_or_the_command_line(tmp_path: Path) -> None:
    joiner = write(tmp_path, BASE)
    with pytest.raises(ConfigFileError, match="set join"):
        load(joiner)  # neither [[nodes]] nor join
    config = load(joiner, join="127.0.0.1:7001")
    assert config.join == "127.0.0.1:7001" and not config.member
    in_file = write(tmp_path, 'join = "127.0.0.1:7002"\n' + BASE)
    assert load(in_file).join == "127.0.0.1:7002"
    assert load(in_file, join="127.0.0.1:7003").join == "127.0.0.1:7003"
    with pytest.raises(ConfigFileError, match="lists no"):
        load(write(tmp_path, BASE + MEMBERS), join="127.0.0.1:7001")
    with pytest.raises(ConfigFileError, match="join"):
        load(joiner, join="nowhere")


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ("heartbeat_interval_s = 5\ndown_after_s = 2\n", "heartbeat_interval_s"),
        ('[[devices]]\npath = "/a"\n[[devices]]\npath = "/a"\n', "distinct"),
        ("[bootstrap]\nhosts = 0\ndevices_per_host = 1\n", "bootstrap"),
        ("gc_grace_s = -1\n", "gc_grace_s"),
        ("gc_interval_s = 0\n", "gc_interval_s"),
        ("stripe_bytes = 4095\n", "stripe_bytes"),
        (f"stripe_bytes = {(64 << 20) + 1}\n", "stripe_bytes"),
    ],
)
def test_inconsistent_files_are_refused(tmp_path: Path, extra: str, match: str) -> None:
    tables_last = extra.startswith("[")
    text = BASE + MEMBERS + extra if tables_last else BASE + extra + MEMBERS
    with pytest.raises(ConfigFileError, match=match):
        load(write(tmp_path, text))


def test_garbage_collection_timers(tmp_path: Path) -> None:
    default = load(write(tmp_path, BASE + MEMBERS))
    assert (default.gc_grace_s, default.gc_interval_s) == (3600.0, 600.0)
    custom = load(write(tmp_path, BASE + "gc_grace_s = 0\ngc_interval_s = 2.5\n" + MEMBERS))
    assert (custom.gc_grace_s, custom.gc_interval_s) == (0.0, 2.5)


def test_stripe_bytes_defaults_to_4_mib_and_can_be_set(tmp_path: Path) -> None:
    assert load(write(tmp_path, BASE + MEMBERS)).stripe_bytes == 4 << 20
    assert load(write(tmp_path, BASE + "stripe_bytes = 65536\n" + MEMBERS)).stripe_bytes == 65536


def test_s3_address_is_optional_and_validated(tmp_path: Path) -> None:
    assert load(write(tmp_path, BASE + MEMBERS)).s3_address == ""
    assert load(write(tmp_path, BASE + 's3_address = ""\n' + MEMBERS)).s3_address == ""
    config = load(write(tmp_path, BASE + 's3_address = "127.0.0.1:9000"\n' + MEMBERS))
    assert config.s3_address == "127.0.0.1:9000"
    for bad in ('"9000"', '"127.0.0.1:0"', '"127.0.0.1:http"', "9000"):
        with pytest.raises(ConfigFileError, match="s3_address: expected host:port"):
            load(write(tmp_path, BASE + f"s3_address = {bad}\n" + MEMBERS))
    with pytest.raises(ConfigFileError, match="also the rpc or kv address"):
        load(write(tmp_path, BASE + 's3_address = "127.0.0.1:7104"\n' + MEMBERS))


def test_lease_reads_is_on_unless_turned_off_and_must_be_a_boolean(tmp_path: Path) -> None:
    assert load(write(tmp_path, BASE + MEMBERS)).lease_reads is True
    assert load(write(tmp_path, BASE + "lease_reads = false\n" + MEMBERS)).lease_reads is False
    for bad in ('"yes"', "1"):
        with pytest.raises(ConfigFileError, match="lease_reads: expected true or false"):
            load(write(tmp_path, BASE + f"lease_reads = {bad}\n" + MEMBERS))
