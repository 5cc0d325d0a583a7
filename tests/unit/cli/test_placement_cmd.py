"""`atoll placement simulate` through click: its JSON figures agree with the tables it
prints, recomputed here from the tables alone."""

from __future__ import annotations

import json
import math
from collections import Counter

from click.testing import CliRunner

from atoll.cli.main import main


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["placement", "simulate", *args])
    return result.exit_code, result.output


def changed(before: list[list[int]], after: list[list[int]]) -> int:
    return sum(
        a != b for ra, rb in zip(before, after, strict=True) for a, b in zip(ra, rb, strict=True)
    )


def test_json_figures_match_the_tables() -> None:
    code, out = run(
        "--hosts", "5", "--devices-per-host", "2", "--zones", "1", "--pool", "2+1", "--pgs", "128",
        "--json",
    )  # fmt: skip
    assert code == 0, out
    f = json.loads(out)
    before, after_add, after_remove = (
        f["tables"][n] for n in ("before", "after_add", "after_remove")
    )
    shards = 128 * 3
    loads = Counter(d for row in before for d in row)
    assert len(loads) == 10 and {str(d): n for d, n in loads.items()} == f["device_loads"]
    assert math.isclose(f["max_over_mean"], max(loads.values()) / (shards / 10))
    moved_add = changed(before, after_add)
    assert moved_add == f["moved_add"]
    # One host of two devices added to ten devices: ideal = shards x 2 / 12.
    assert math.isclose(f["move_add_ratio"], moved_add / (shards * 2 / 12))
    moved_remove = changed(before, after_remove)
    assert math.isclose(f["move_remove_ratio"], moved_remove / (shards * 2 / 10))
    # Host 1 (devices 1000, 1001) is gone after the removal; host 6 is in after the add.
    assert all(d // 1000 != 1 for row in after_remove for d in row)
    assert any(d // 1000 == 6 for row in after_add for d in row)
    for table in (before, after_add, after_remove):
        for row in table:
            hosts = Counter(d // 1000 for d in row)
            assert len(set(row)) == 3 and max(hosts.values()) == 1
    assert f["violations"] == 0


def test_table_output_and_bad_arguments() -> None:
    code, out = run(
        "--hosts", "3", "--devices-per-host", "2", "--zones", "1", "--pool", "4+2", "--pgs", "64"
    )
    assert code == 0, out
    assert "max device load / mean" in out and "too few devices left" in out
    code, out = run("--pool", "four")
    assert code == 2 and "K+M" in out
    code, out = run("--pgs", "100")
    assert code == 2 and "power of two" in out
    code, out = run("--hosts", "1", "--devices-per-host", "2", "--zones", "1", "--pool", "4+2")
    assert code == 1 and "needs 6 devices" in out
