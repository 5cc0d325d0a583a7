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
    ],
)
def test_inconsistent_files_are_refused(tmp_path: Path, extra: str, match: str) -> None:
    tables_last = extra.startswith("[")
    text = BASE + MEMBERS + extra if tables_last else BASE + extra + MEMBERS
    with pytest.raises(ConfigFileError, match=match):
        load(write(tmp_path, text))
