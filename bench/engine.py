"""Engine benchmark: Atoll's LSM and LMDB engines beside RocksDB, LevelDB and SQLite.

Writes bench/results/engine.md and bench/results/engine.json (or, with --quick,
engine-quick.md/json, which git ignores). The work is done by `atoll.cli.engine_bench`,
the same code as `atoll engine bench`; this file only fixes the report's location to
this directory, wherever it is run from. Run it with the project installed
(`make bench`), or with `PYTHONPATH=src`:

    python bench/engine.py                 # the full run: 1,000,000 keys
    python bench/engine.py --quick         # 100,000 keys, under two minutes
    python bench/engine.py --engines lsm,rocksdb --workloads fillrandom,readrandom
"""

from __future__ import annotations

import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark with `argv` (the options of `atoll engine bench`)."""
    try:
        from atoll.cli.main import bench
    except ImportError:  # not installed: use the checkout's src/
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        from atoll.cli.main import bench

    args = list(sys.argv[1:] if argv is None else argv)
    if "--out" not in args and "--no-report" not in args:
        name = "engine-quick.md" if "--quick" in args else "engine.md"
        args += ["--out", str(RESULTS / name)]
    import click

    try:
        code = bench.main(args=args, prog_name="bench/engine.py", standalone_mode=False)
    except click.ClickException as err:
        err.show()
        return err.exit_code
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
