"""The writer killed by tests/faults/test_crash.py (run as a program, not collected).

    python tests/faults/crash_child.py DIR SEED START_BATCH

Opens the LSM engine at DIR with a memtable small enough that flushes and compactions
run all the time, prints `ready <last batch found on open, or -1>`, then writes batches
START_BATCH, START_BATCH + 1, ... forever with `sync=True`. Batch `i` puts `n_i` keys
`batch_key(i, j)` with `batch_value(i, j)`, the marker `marker_key(i)` = `n_i`, and the
shared key `LAST_KEY` = `i` (overwritten by every batch). After each acknowledged write
it prints `ack <i> <n_i> <phase>`, the phase being `LsmEngine.phase()` at that moment,
and flushes stdout, so the parent knows exactly which batches must survive a kill -9.

The parent imports this file (by path) for the options and the key/value scheme, so
that both sides agree on them.
"""

from __future__ import annotations

import random
import sys
from typing import Any

from atoll.engine import WriteBatch, open_engine

OPTIONS: dict[str, Any] = {
    "memtable_size_bytes": 16 * 1024,
    "level0_compaction_trigger": 2,
    "level_base_bytes": 64 * 1024,
    "table_target_bytes": 32 * 1024,
    "block_size_bytes": 4 * 1024,
}
MAX_KEYS_PER_BATCH = 20
LAST_KEY = b"last"
BATCH_PREFIX = b"b"


def batch_key(i: int, j: int) -> bytes:
    return b"b%08d/k%02d" % (i, j)


def marker_key(i: int) -> bytes:
    return b"b%08d/n" % i


def batch_value(i: int, j: int) -> bytes:
    """Deterministic in (i, j), 12 to 100 bytes, so the parent can check content."""
    stamp = b"%d.%d;" % (i, j)
    return (stamp * (1 + (i * 31 + j * 7) % 12))[: 12 + (i * 13 + j * 29) % 89].ljust(12, b".")


def make_batch(i: int, n: int) -> WriteBatch:
    batch = WriteBatch()
    for j in range(n):
        batch.put(batch_key(i, j), batch_value(i, j))
    batch.put(marker_key(i), b"%d" % n)
    batch.put(LAST_KEY, b"%d" % i)
    return batch


def main(argv: list[str]) -> None:
    path, seed, start = argv[1], int(argv[2]), int(argv[3])
    rng = random.Random(seed)
    engine = open_engine(path, kind="lsm", **OPTIONS)
    last = engine.get(LAST_KEY)
    out = sys.stdout
    out.write(f"ready {int(last) if last is not None else -1}\n")
    out.flush()
    i = start
    while True:
        n = rng.randint(1, MAX_KEYS_PER_BATCH)
        engine.write(make_batch(i, n), sync=True)
        out.write(f"ack {i} {n} {engine.phase()}\n")  # type: ignore[attr-defined]
        out.flush()
        i += 1


if __name__ == "__main__":
    main(sys.argv)
