"""`atoll placement simulate` through click: its JSON figures agree with the tables and
weights it prints, recomputed here from those alone; its table and exit status."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

from click.testing import CliRunner

from atoll.cli.main import main


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["placement", "simulate", *args])
    return result.exit_code, result.output


def simulate_json(*args: str) -> dict[str, Any]:
    code, out = run(*args, "--json")
    figures: dict[str, Any] = json.loads(out)
    assert code in (0, 1), out
    return figures


def changed(before: list[list[int]], after: list[list[int]]) -> int:
    return sum(
        a != b for ra, rb in zip(before, after, strict=True) for a, b in zip(ra, rb, strict=True)
    )


def check_figures(f: dict[str, Any], hosts: int, per_host: int, width: int) -> None:
    """Every figure of `f` from its tables and weights (device `h*1000+i` is on host h;
    host hosts+1 is added, host 1 removed)."""
    weights = {int(d): w for d, w in f["weights"].items()}
    tables = f["tables"]
    before = tables["before"]
    shards = f["pgs"] * width
    assert f["shards"] == shards
    old = [d for d in weights if d // 1000 <= hosts]
    added = [d for d in weights if d // 1000 == hosts + 1]
    left = [d for d in old if d // 1000 != 1]
    assert len(old) == hosts * per_host and len(added) == per_host

    loads = Counter(d for row in before for d in row)
    assert f["device_loads"] == {str(d): loads[d] for d in sorted(old)}

    def worst(table: list[list[int]], devices: list[int]) -> float:
        held = Counter(d for row in table for d in row)
        total = sum(weights[d] for d in devices)
        return max(held[d] / (shards * weights[d] / total) for d in devices)

    assert math.isclose(f["max_over_mean"], worst(before, old))
    assert math.isclose(f["max_over_mean_after_add"], worst(tables["after_add"], old + added))

    ideal_add = shards * sum(weights[d] for d in added) / sum(weights.values())
    assert math.isclose(f["ideal_add"], ideal_add)
    assert f["moved_add"] == changed(before, tables["after_add"])
    assert math.isclose(f["move_add_ratio"], f["moved_add"] / ideal_add)
    if "after_remove" in tables:
        after_remove = tables["after_remove"]
        assert math.isclose(f["max_over_mean_after_remove"], worst(after_remove, left))
        removed = sum(weights[d] for d in old if d // 1000 == 1)
        ideal_remove = shards * removed / sum(weights[d] for d in old)
        assert math.isclose(f["ideal_remove"], ideal_remove)
        assert f["moved_remove"] == changed(before, after_remove)
        assert math.isclose(f["move_remove_ratio"], f["moved_remove"] / ideal_remove)
        assert all(d // 1000 != 1 for row in after_remove for d in row)
    assert any(d // 1000 == hosts + 1 for row in tables["after_add"] for d in row)
    for table in tables.values():
        assert len(table) == f["pgs"]
        assert all(len(row) == len(set(row)) == width for row in table)
    assert f["violations"] == sum(f["violations_by_table"].values())


def test_json_figures_match_the_tables_without_zones() -> None:
    f = simulate_json(
        "--hosts", "5", "--devices-per-host", "2", "--zones", "1", "--pool", "2+1", "--pgs", "128"
    )  # fmt: skip
    check_figures(f, hosts=5, per_host=2, width=3)
    # Host domain, 5 hosts or more: at most ceil(3/5) = 1 shard per host in every PG.
    for table in f["tables"].values():
        assert all(len({d // 1000 for d in row}) == 3 for row in table)
    assert f["violations"] == 0


def test_json_figures_match_the_tables_with_zones_and_unequal_capacities() -> None:
    args = (
        "--hosts", "6", "--devices-per-host", "3", "--zones", "3", "--pool", "4+2",
        "--pgs", "256", "--capacity-spread", "0.4", "--seed", "7",
    )  # fmt: skip
    f = simulate_json(*args)
    check_figures(f, hosts=6, per_host=3, width=6)
    assert len(set(f["weights"].values())) > 1
    assert all(0.6 <= w <= 1.4 for w in f["weights"].values())
    # Zones z1..z3 (host h in z((h-1) % 3 + 1)): at most 2 shards of a PG per zone.
    for row in f["tables"]["before"]:
        assert max(Counter((d // 1000 - 1) % 3 for d in row).values()) <= 2
    # The same seed gives the same run; another seed other weights.
    again = simulate_json(*args)
    assert {k: v for k, v in again.items() if k != "seconds"} == {
        k: v for k, v in f.items() if k != "seconds"
    }
    other = simulate_json(*args[:-1], "8")
    assert other["weights"] != f["weights"]


def test_the_issue_scenario_meets_its_targets_in_the_table() -> None:
    code, out = run(
        "--hosts", "12", "--devices-per-host", "4", "--zones", "3", "--pool", "8+3",
        "--pgs", "1024",
    )  # fmt: skip
    assert code == 0, out
    assert "pool 8+3 (failure domain zone), 1024 PGs, 11264 shards" in out
    assert "12 hosts x 4 devices, 3 zones" in out
    assert "targets met" in out
    rows = {line.split("  ")[0]: line for line in out.splitlines()}
    assert rows["devices"].split()[1:] == ["48", "52", "44"]
    assert rows["domain violations"].split()[2:] == ["0", "0", "0", "0"]


def test_a_missed_target_exits_1_and_says_so() -> None:
    # 8 PGs on 4 devices: too few shards for the movement target.
    code, out = run("--hosts", "4", "--devices-per-host", "1", "--zones", "0", "--pool", "2+1", "--pgs", "8")  # fmt: skip
    assert code == 1 and "targets NOT met" in out


def test_too_few_devices_left_to_remove_a_host() -> None:
    f = simulate_json("--hosts", "3", "--devices-per-host", "2", "--zones", "1", "--pool", "4+2", "--pgs", "256")  # fmt: skip
    assert f["move_remove_ratio"] is None and "after_remove" not in f["tables"]
    check_figures(f, hosts=3, per_host=2, width=6)
    code, out = run("--hosts", "3", "--devices-per-host", "2", "--zones", "1", "--pool", "4+2", "--pgs", "256")  # fmt: skip
    assert code == 0 and "too few" in out


def test_bad_arguments_are_refused() -> None:
    code, out = run("--pool", "8x3")
    assert code == 2 and "expected K+M" in out
    code, out = run("--pgs", "1000")
    assert code == 2 and "not a power of two" in out
    code, out = run("--hosts", "1", "--devices-per-host", "2", "--pool", "4+2", "--pgs", "8")
    assert code == 1 and "needs 6 devices in service, the cluster has 2" in out
