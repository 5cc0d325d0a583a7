"""The engine benchmark's report: targets, markdown, JSON and the terminal tables.

Pure formatting over `EngineResult`s, except `write_report`, which writes the markdown
and JSON files. The targets are those of the engine issue, computed as ratios from
the numbers of one run, so that a report always judges itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from atoll.cli.bench_workloads import WORKLOADS, EngineResult, WorkloadResult

ROW_LABELS = {
    "fillseq": "fillseq (batch 100)",
    "fillrandom": "fillrandom (batch 100)",
    "fillrandom-single": "fillrandom (single op)",
    "overwrite": "overwrite (batch 100)",
    "readrandom": "readrandom",
    "readmissing": "readmissing",
    "readseq": "readseq (entries/s)",
    "readwhilewriting": "readwhilewriting (reader)",
    "compact": "compact_range (wall time)",
    "readrandom-compacted": "readrandom after compact_range",
    "fillrandom-sync": "fillrandom (single op, sync)",
}

Results = dict[str, EngineResult]


@dataclass(frozen=True)
class Target:
    """One target of the issue, judged from measured numbers."""

    label: str
    threshold: str
    measured: float | None
    verdict: str  # PASS, FAIL, or n/a (with the reason in detail)
    detail: str


def _ops(results: Results, engine: str, workload: str) -> tuple[float | None, str]:
    """Ops/s of one cell, or None and why not."""
    if engine not in results:
        return None, f"{engine} not run"
    wl = results[engine].workloads.get(workload)
    if wl is None:
        return None, f"{engine} {workload} not run"
    if wl.error is not None:
        return None, f"{engine} {workload}: {_short_error(wl.error)}"
    rate = wl.ops_per_s
    return rate, "" if rate is not None else f"{engine} {workload}: no operations"


def _short_error(error: str) -> str:
    """`skipped` or `error: <exception type>`; the whole message goes to the notes."""
    if error.startswith("skipped"):
        return "skipped"
    return "error: " + error.split(":", 1)[0]


def _ratio_target(
    results: Results,
    label: str,
    top: tuple[str, str],
    bottom: tuple[str, str],
    threshold: float,
    strict: bool = False,
) -> Target:
    a, why_a = _ops(results, *top)
    b, why_b = _ops(results, *bottom)
    sign = ">" if strict else "≥"
    if a is None or b is None or b == 0:
        return Target(label, f"{sign} {threshold:g}", None, "n/a", why_a or why_b)
    ratio = a / b
    ok = ratio > threshold if strict else ratio >= threshold
    detail = f"{top[0]} {top[1]} {a:,.0f}/s vs {bottom[0]} {bottom[1]} {b:,.0f}/s"
    return Target(label, f"{sign} {threshold:g}", ratio, "PASS" if ok else "FAIL", detail)


def compute_targets(results: Results) -> list[Target]:
    """The issue's targets for Atoll's LSM, as ratios from this run's numbers."""
    targets = [
        _ratio_target(
            results,
            "fillrandom batched, LSM / RocksDB ops/s",
            ("lsm", "fillrandom"),
            ("rocksdb", "fillrandom"),
            0.5,
        ),
        _ratio_target(
            results,
            "readrandom after compaction, LSM / RocksDB ops/s",
            ("lsm", "readrandom-compacted"),
            ("rocksdb", "readrandom-compacted"),
            0.75,
        ),
        _ratio_target(
            results,
            "LSM readmissing / LSM readrandom ops/s",
            ("lsm", "readmissing"),
            ("lsm", "readrandom"),
            2.0,
        ),
        _ratio_target(
            results,
            "random writes (fillrandom batched), LSM / LMDB ops/s",
            ("lsm", "fillrandom"),
            ("lmdb", "fillrandom"),
            1.0,
            strict=True,
        ),
        _ratio_target(
            results,
            "random writes (fillrandom single op), LSM / LMDB ops/s",
            ("lsm", "fillrandom-single"),
            ("lmdb", "fillrandom-single"),
            1.0,
            strict=True,
        ),
        _ratio_target(
            results,
            "random reads (readrandom), LMDB / LSM ops/s",
            ("lmdb", "readrandom"),
            ("lsm", "readrandom"),
            1.0,
            strict=True,
        ),
    ]
    lsm = results.get("lsm")
    wa = lsm.write_amplification if lsm is not None else None
    if wa is None:
        why = "lsm not run" if lsm is None else "not measured"
        fill = lsm.workloads.get("fillrandom") if lsm is not None else None
        if fill is not None and fill.error is not None:
            why = f"lsm fillrandom: {_short_error(fill.error)}"
        targets.append(Target("fillrandom write amplification, LSM", "≤ 10", None, "n/a", why))
    else:
        method = lsm.write_amplification_method if lsm is not None else ""
        verdict = "PASS" if wa <= 10 else "FAIL"
        targets.append(Target("fillrandom write amplification, LSM", "≤ 10", wa, verdict, method))
    return targets


# --- cell formatting ------------------------------------------------------------------


def format_us(value: float | None, sep: str = " ") -> str:
    if value is None:
        return "—"
    if value >= 1000:
        return f"{value / 1000:.3g}{sep}ms"
    return f"{value:.3g}{sep}µs"


def format_count(value: float) -> str:
    """1,234,567 as 1.23M, 45,678 as 45.7k: for the narrow terminal table."""
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.0f}"


def format_cell(wl: WorkloadResult | None, newline: str, compact: bool = False) -> str:
    """One workload on one engine: rate, then p50 and p99 (each on its own line).

    `compact` drops the labels and spaces, for a terminal table that fits 80 columns;
    its legend says what the lines are.
    """
    if wl is None:
        return ""
    if wl.error is not None:
        return _short_error(wl.error)
    count = format_count if compact else (lambda n: f"{n:,.0f}")
    if wl.latency_per == "call":
        text = f"{wl.seconds:.2f}{'' if compact else ' '}s"
    else:
        rate = wl.ops_per_s
        text = "—" if rate is None else f"{count(rate)}/s"
        if wl.p50_us is not None:
            if compact:
                text += f"{newline}{format_us(wl.p50_us, '')}{newline}{format_us(wl.p99_us, '')}"
            else:
                text += f"{newline}p50 {format_us(wl.p50_us)}{newline}p99 {format_us(wl.p99_us)}"
    if wl.capped:
        text += f"{newline}(capped)" if compact else f"{newline}(time cap: {wl.ops:,} ops)"
    if wl.expected_found is not None and wl.found != wl.expected_found:
        found, expected = wl.found or 0, wl.expected_found
        text += f"{newline}⚠found{newline}{count(found)}/{count(expected)}"
    return text


def _mib(value: int | None) -> str:
    return "—" if value is None else f"{value / (1 << 20):,.1f} MiB"


def _amp(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _wa(r: EngineResult, compact: bool) -> str:
    method = r.write_amplification_method
    if not method or r.write_amplification is None:
        return _amp(r.write_amplification)
    if compact:
        return (
            f"{_amp(r.write_amplification)}\n({'stats' if method == 'engine stats' else 'wchar'})"
        )
    return f"{_amp(r.write_amplification)} ({method})"


# (markdown label, terminal label, value); the value takes `compact`.
AMP_ROWS: list[tuple[str, str, Callable[[EngineResult, bool], str]]] = [
    ("write amplification, fillrandom", "WA, fillrandom", _wa),
    (
        "space amplification after fillrandom + flush",
        "SA after fill",
        lambda r, _: _amp(r.space_amplification_fill),
    ),
    (
        "space amplification after compact_range",
        "SA after compact",
        lambda r, _: _amp(r.space_amplification_compacted),
    ),
    ("disk after fillrandom + flush", "disk after fill", lambda r, _: _mib(r.disk_bytes_fill)),
    (
        "disk after compact_range",
        "disk after compact",
        lambda r, _: _mib(r.disk_bytes_compacted),
    ),
    ("live user data (key + value)", "live user data", lambda r, _: _mib(r.live_user_bytes)),
]


def _workload_rows(
    results: Results, workloads: Sequence[str], newline: str, compact: bool = False
) -> list[list[str]]:
    return [
        [
            ROW_LABELS[w],
            *(format_cell(r.workloads.get(w), newline, compact) for r in results.values()),
        ]
        for w in WORKLOADS
        if w in workloads
    ]


def _target_cells(target: Target) -> list[str]:
    measured = "—" if target.measured is None else f"{target.measured:.2f}"
    return [target.label, target.threshold, measured, target.verdict, target.detail]


# --- markdown -------------------------------------------------------------------------


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return [line(header), line(["---"] * len(header)), *(line(row) for row in rows)]


def _notes(results: Results) -> list[str]:
    notes: list[str] = []
    for engine, result in results.items():
        for workload, wl in result.workloads.items():
            if wl.error is not None and not wl.error.startswith("skipped"):
                notes.append(f"- {engine} {workload}: error: {wl.error}")
            if "writer_ops_per_s" in wl.extra:
                notes.append(
                    f"- {engine} {workload}: writer thread did {wl.extra['writer_ops']:,} puts"
                    f" ({wl.extra['writer_ops_per_s']:,.0f}/s)"
                )
    return notes


def render_markdown(
    title: str,
    env: dict[str, str],
    params: dict[str, str],
    results: Results,
    workloads: Sequence[str],
    targets: Sequence[Target],
) -> str:
    lines = [f"# {title}", ""]
    lines += ["## Environment", ""] + [f"- {k}: {v}" for k, v in env.items()] + [""]
    lines += ["## Parameters", ""] + [f"- {k}: {v}" for k, v in params.items()] + [""]
    lines += [
        "## Throughput and latency",
        "",
        "Each cell: operations per second (keys per second for batched rows, entries per"
        " second for readseq), then p50 and p99 latency. Batched rows give latency per"
        " batch of 100; the others per operation.",
        "",
    ]
    engines = list(results)
    lines += _md_table(["workload", *engines], _workload_rows(results, workloads, "<br>"))
    lines += ["", "## Write and space amplification", ""]
    lines += _md_table(
        ["measure", *engines],
        [[label, *(fn(r, False) for r in results.values())] for label, _, fn in AMP_ROWS],
    )
    lines += ["", "## Targets", ""]
    lines += _md_table(
        ["target", "threshold", "measured", "result", "from"], [_target_cells(t) for t in targets]
    )
    notes = _notes(results)
    if notes:
        lines += ["", "## Notes", "", *notes]
    return "\n".join(lines) + "\n"


def render_json(
    env: dict[str, str], params: dict[str, str], results: Results, targets: Sequence[Target]
) -> dict[str, Any]:
    return {
        "env": env,
        "params": params,
        "engines": {name: result.to_json() for name, result in results.items()},
        "targets": [asdict(t) for t in targets],
    }


def write_report(path: Path, markdown: str, data: dict[str, Any]) -> Path:
    """Write the markdown to `path` and the JSON next to it; returns the JSON's path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown)
    json_path = path.with_suffix(".json")
    json_path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return json_path


# --- terminal -------------------------------------------------------------------------


def print_tables(
    console: Console, results: Results, workloads: Sequence[str], targets: Sequence[Target]
) -> None:
    """The same three tables as the markdown, drawn with rich."""
    main = Table(
        title="Atoll engine benchmark",
        caption="Each cell: ops/s, p50, p99. Batched rows: keys/s and latency per batch"
        " of 100. The report file has the full numbers.",
        show_lines=True,
    )
    main.add_column("workload", style="bold", min_width=10)
    for engine in results:
        main.add_column(engine, justify="right", no_wrap=True)
    for row in _workload_rows(results, workloads, "\n", compact=True):
        main.add_row(*(escape(cell) for cell in row))
    console.print(main)

    amp = Table(
        title="Write and space amplification",
        caption="WA from the engine's stats or from wchar in /proc/self/io; SA = disk / live"
        " user bytes.",
    )
    amp.add_column("measure", style="bold", min_width=10)
    for engine in results:
        amp.add_column(engine, justify="right", no_wrap=True)
    for _, label, fn in AMP_ROWS:
        amp.add_row(label, *(escape(fn(r, True)) for r in results.values()))
    console.print(amp)

    goals = Table(title="Targets (ratios from this run)")
    goals.add_column("target", ratio=3)
    goals.add_column("threshold", no_wrap=True)
    goals.add_column("measured", justify="right", no_wrap=True)
    goals.add_column("result", ratio=1)
    styles = {"PASS": "green", "FAIL": "red"}
    for target in targets:
        label, threshold, measured, verdict, detail = _target_cells(target)
        style = styles.get(verdict, "yellow")
        result = f"[{style}]{verdict}[/{style}]"
        if verdict == "n/a":
            result += f" {escape(detail)}"
        goals.add_row(escape(label), escape(threshold), measured, result)
    console.print(goals)
