"""`atoll placement simulate`: the figures of `atoll.placement.simulate`, as a table for
an operator or as JSON with the tables and device weights, so that every figure can be
recomputed independently. Does terminal I/O and reads the clock (to time the run)."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from typing import Any

from atoll.placement.simulate import SimulationSpec, simulate

# Targets of issue 4 §2.
MAX_OVER_MEAN_TARGET = 1.10
MOVE_RATIO_TARGET = 1.2

PROFILE = re.compile(r"^\s*(\d{1,3})\s*\+\s*(\d{1,3})\s*$")


def parse_profile(text: str) -> tuple[int, int]:
    """`"8+3"` -> (8, 3); ValueError otherwise."""
    match = PROFILE.match(text)
    if match is None:
        raise ValueError(f"expected K+M (for example 8+3), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def figures(spec: SimulationSpec, seed: int) -> dict[str, Any]:
    """The simulation's figures, with the seed of the weights and the run's seconds."""
    started = time.perf_counter()
    result = simulate(spec, random.Random(seed)).figures()
    result["seed"] = seed
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def targets_met(f: dict[str, Any]) -> bool:
    ratios = [f["move_add_ratio"], f["move_remove_ratio"]]
    balance = [f["max_over_mean"], f["max_over_mean_after_add"], f["max_over_mean_after_remove"]]
    return (
        all(b is None or b <= MAX_OVER_MEAN_TARGET for b in balance)
        and all(r is None or r <= MOVE_RATIO_TARGET for r in ratios)
        and f["violations"] == 0
    )


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table_lines(f: dict[str, Any]) -> list[str]:
    """The figures as an aligned table, one column per PG table."""
    zones = f"{f['zones']} zones" if f["zones"] > 1 else "no zones"
    spread = ""
    if f["capacity_spread"]:
        spread = f", capacities 1 ± {f['capacity_spread']} (seed {f['seed']})"
    removed = "after_remove" in f["tables"]
    by_table = f["violations_by_table"]
    feasible = f["max_over_feasible_share"]
    rows = [
        ("", "before", f"+ host {f['added_host']}", f"- host {f['removed_host']}", "target"),
        (
            "devices",
            str(f["devices"]),
            str(f["devices"] + f["devices_per_host"]),
            str(f["devices"] - f["devices_per_host"]) if removed else "too few",
            "",
        ),
        (
            "max load / share",
            _num(f["max_over_mean"]),
            _num(f["max_over_mean_after_add"]),
            _num(f["max_over_mean_after_remove"]),
            f"<= {MAX_OVER_MEAN_TARGET:.2f}",
        ),
        (
            "max load / feasible",
            _num(feasible["before"]),
            _num(feasible["after_add"]),
            _num(feasible.get("after_remove")),
            "",
        ),
        ("shards moved", "", str(f["moved_add"]), _int(f["moved_remove"]), ""),
        ("ideal", "", _num(f["ideal_add"], 1), _num(f["ideal_remove"] if removed else None, 1), ""),
        (
            "moved / ideal",
            "",
            _num(f["move_add_ratio"]),
            _num(f["move_remove_ratio"]),
            f"<= {MOVE_RATIO_TARGET:.2f}",
        ),
        (
            "domain violations",
            str(by_table["before"]),
            str(by_table["after_add"]),
            _int(by_table.get("after_remove")),
            "0",
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [
        f"pool {f['pool']} (failure domain {f['failure_domain']}),"
        f" {f['pgs']} PGs, {f['shards']} shards",
        f"{f['hosts']} hosts x {f['devices_per_host']} devices, {zones}{spread}",
        "",
    ]
    lines += [
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]
    lines.append("")
    lines.append(
        f"targets {'met' if targets_met(f) else 'NOT met'}; computed in {f['seconds']:.2f} s"
    )
    for name, found in f["violation_details"].items():
        lines.extend(f"  {name}: {v}" for v in found)
    return lines


def _int(value: int | None) -> str:
    return "-" if value is None else str(value)


def run(spec: SimulationSpec, seed: int, as_json: bool, echo: Callable[[str], None]) -> bool:
    """Print the figures; True if every target is met."""
    f = figures(spec, seed)
    if as_json:
        echo(json.dumps(f, sort_keys=True))
    else:
        for line in table_lines(f):
            echo(line)
    return targets_met(f)
