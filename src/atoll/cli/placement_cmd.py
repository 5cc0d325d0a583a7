"""`atoll placement simulate`: the figures of `atoll.placement.simulate`, as a table
for an operator or as JSON with the tables themselves, so that every figure can be
recomputed independently. Does terminal I/O only."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from atoll.placement.simulate import simulate

# Issue 4 §2.
MAX_OVER_MEAN_TARGET = 1.10
MOVE_RATIO_TARGET = 1.2


def figures(
    hosts: int, devices_per_host: int, zones: int, k: int, m: int, pgs: int
) -> dict[str, Any]:
    started = time.perf_counter()
    result = simulate(hosts, devices_per_host, zones, k, m, pgs).figures()
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def verdict(value: float | None, target: float) -> str:
    if value is None:
        return "n/a"
    return "met" if value <= target else "NOT met"


def table_lines(f: dict[str, Any]) -> list[str]:
    remove = f["move_remove_ratio"]
    rows = [
        ("cluster", f"{f['hosts']} hosts, {f['devices']} devices, {f['zones']} zone(s)", ""),
        ("pool", f"{f['pool']}, {f['pgs']} PGs", ""),
        (
            "max device load / mean",
            f"{f['max_over_mean']:.3f} (min {f['min_over_mean']:.3f})",
            f"<= {MAX_OVER_MEAN_TARGET}: {verdict(f['max_over_mean'], MAX_OVER_MEAN_TARGET)}",
        ),
        (
            "moved on adding a host / ideal",
            f"{f['move_add_ratio']:.3f} ({f['moved_add']} of ideal {f['ideal_add']:.1f})",
            f"<= {MOVE_RATIO_TARGET}: {verdict(f['move_add_ratio'], MOVE_RATIO_TARGET)}",
        ),
        (
            "moved on removing a host / ideal",
            "too few devices left"
            if remove is None
            else f"{remove:.3f} ({f['moved_remove']} of ideal {f['ideal_remove']:.1f})",
            f"<= {MOVE_RATIO_TARGET}: {verdict(remove, MOVE_RATIO_TARGET)}",
        ),
        ("failure-domain violations", str(f["violations"]), "0: " + verdict(f["violations"], 0)),
        ("computing the three tables", f"{f['seconds']:.2f} s", ""),
    ]
    width = max(len(name) for name, _, _ in rows)
    lines = [
        f"{name:<{width}}  {value}" + (f"   [{target}]" if target else "")
        for name, value, target in rows
    ]
    for name, found in f["violation_details"].items():
        lines.extend(f"  {name}: {v}" for v in found)
    return lines


def run(
    hosts: int,
    devices_per_host: int,
    zones: int,
    k: int,
    m: int,
    pgs: int,
    as_json: bool,
    echo: Callable[[str], None],
) -> bool:
    """Print the figures; True if every target is met."""
    f = figures(hosts, devices_per_host, zones, k, m, pgs)
    if as_json:
        echo(json.dumps(f, sort_keys=True))
    else:
        for line in table_lines(f):
            echo(line)
    remove = f["move_remove_ratio"]
    return bool(
        f["max_over_mean"] <= MAX_OVER_MEAN_TARGET
        and f["move_add_ratio"] <= MOVE_RATIO_TARGET
        and (remove is None or remove <= MOVE_RATIO_TARGET)
        and f["violations"] == 0
    )
