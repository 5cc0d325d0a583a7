"""The `atoll` command line: version output and a tiny engine benchmark run."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import atoll
from atoll.cli.main import main


def test_version_prints_package_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"atoll {atoll.__version__}"


def test_engine_bench_quick_prints_table_for_each_engine(tmp_path: Path) -> None:
    out = tmp_path / "engine-quick.md"
    args = [
        "engine",
        "bench",
        "--quick",
        "--keys",
        "2000",
        "--engines",
        "memory,lmdb",
        "--workloads",
        "fillrandom,readrandom",
        "--out",
        str(out),
        "--dir",
        str(tmp_path / "scratch"),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "memory" in result.output
    assert "lmdb" in result.output
    assert "fillrandom (batch 100)" in result.output
    assert "readrandom" in result.output
    report = out.read_text()
    assert "| workload | memory | lmdb |" in report
    assert "error" not in report.split("## Targets")[0]
    assert out.with_suffix(".json").exists()


def test_engine_bench_rejects_unknown_engine() -> None:
    result = CliRunner().invoke(main, ["engine", "bench", "--engines", "nope", "--no-report"])
    assert result.exit_code != 0
    assert "unknown engine nope" in result.output
