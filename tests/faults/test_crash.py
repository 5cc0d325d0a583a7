"""kill -9 of a real writer process, over and over, while it flushes and compacts.

A child (tests/faults/crash_child.py) writes batches with `sync=True` through an LSM
engine whose memtable is tiny, so that flushes and compactions run all the time, and
reports every acknowledged batch and the engine's phase on a pipe. The parent kills it
with SIGKILL at a random moment, waits for its worker processes to die with it, reopens
the directory itself and checks:

- every batch ever acknowledged (or seen whole by an earlier check) is present, whole,
  with the right values;
- no batch is partly applied: a batch is all of its keys (its marker key says how
  many) or none of them;
- the batches present are exactly 0..H, with H the last acknowledged batch or the one
  in flight when the child died, and the shared key `last` (overwritten by every
  batch) is H.

Then the next child resumes at H + 1 in the same directory. The test runs until at
least `MIN_KILLS` kills, `MIN_PER_PHASE` of them during a flush and as many during a
compaction (the phase the child reported with its last acknowledgement before the
kill), and fails with the counts if that takes more than `MAX_KILLS` kills or
`MAX_SECONDS`. The seed of the kill delays and batch sizes is printed; set
ATOLL_CRASH_SEED to reuse one (process timing still varies from run to run).
"""

from __future__ import annotations

import importlib.util
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from atoll.engine import open_engine

MIN_KILLS = 50
MIN_PER_PHASE = 5
MAX_KILLS = 400
MAX_SECONDS = 240.0
# The kill lands this long after the child reported `ready`: early kills hit recovery
# and the first flush (while the child starts its workers), later ones the steady
# state of flushes and compactions.
KILL_DELAY_S = (0.05, 1.5)
# Deadlines (not sleeps) for the child to start and for processes to go away.
START_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 10.0

CHILD_PATH = Path(__file__).with_name("crash_child.py")
SRC_DIR = Path(__file__).resolve().parents[2] / "src"


def _load_child() -> ModuleType:
    spec = importlib.util.spec_from_file_location("atoll_crash_child", CHILD_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


child = _load_child()


class LineReader:
    """Lines from a pipe, read without blocking past a deadline."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""
        self.eof = False

    def read(self, deadline: float, until_first: bool = False) -> list[str]:
        lines: list[str] = []
        while not self.eof and not (until_first and lines):
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                break
            ready, _, _ = select.select([self.fd], [], [], timeout)
            if not ready:
                break
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                self.eof = True
                break
            *complete, self.buf = (self.buf + chunk).split(b"\n")
            lines.extend(line.decode() for line in complete)
        return lines


def _worker_pids(parent_pid: int) -> list[int]:
    """Live engine worker processes started by `parent_pid` (they carry its pid as
    their first argument: `python -m atoll.engine.worker_pool PID ...`)."""
    module = b"atoll.engine.worker_pool"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if module in args[:-1] and args[args.index(module) + 1] == str(parent_pid).encode():
            found.append(int(entry))
    return found


def _wait_workers_gone(parent_pid: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        alive = _worker_pids(parent_pid)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.01)  # polling with a deadline


def check_database(path: str, durable: dict[int, int]) -> tuple[int, dict[int, int], list[str]]:
    """Reopen `path` and check it against the batches that must be there.

    `durable` maps batch id -> key count for every batch that must be present whole.
    Returns (highest batch present or -1, every batch present -> its key count,
    problems found)."""
    problems: list[str] = []
    seen: dict[int, dict[bytes, bytes]] = {}
    engine = open_engine(path, kind="lsm", **{**child.OPTIONS, "background": "thread"})
    try:
        for key, value in engine.scan(b"b", b"c"):
            if not (key[1:9].isdigit() and key[9:10] == b"/"):
                problems.append(f"unexpected key {key!r}")
                continue
            seen.setdefault(int(key[1:9]), {})[key[9:]] = value
        last = engine.get(child.LAST_KEY)
    finally:
        engine.close()

    present: dict[int, int] = {}
    for batch_id, items in sorted(seen.items()):
        marker = items.get(b"/n")
        if marker is None:
            problems.append(f"batch {batch_id} partly applied: no marker, keys {sorted(items)}")
            continue
        n = int(marker)
        expected = {
            child.batch_key(batch_id, j)[9:]: child.batch_value(batch_id, j) for j in range(n)
        }
        expected[b"/n"] = marker
        if items != expected:
            missing = sorted(set(expected) - set(items))
            extra = sorted(set(items) - set(expected))
            wrong = sorted(k for k in set(items) & set(expected) if items[k] != expected[k])
            problems.append(
                f"batch {batch_id} (n={n}) partly applied or wrong: missing {missing}, "
                f"extra {extra}, wrong values {wrong}"
            )
        present[batch_id] = n

    for batch_id, n in sorted(durable.items()):
        if batch_id not in present:
            problems.append(f"acknowledged batch {batch_id} (n={n}) is lost")
        elif present[batch_id] != n:
            problems.append(f"batch {batch_id} has n={present[batch_id]}, acknowledged n={n}")

    highest = max(present, default=-1)
    gaps = sorted(set(range(highest + 1)) - set(present))
    if gaps:
        problems.append(f"batches missing below the highest present ({highest}): {gaps[:20]}")
    want_last = None if highest < 0 else b"%d" % highest
    if last != want_last:
        problems.append(f"key 'last' is {last!r}, expected {want_last!r}")
    return highest, present, problems


def _phase_tally(phases: Counter[str]) -> tuple[int, int]:
    in_flush = sum(c for p, c in phases.items() if "flush" in p.split("+"))
    in_compaction = sum(c for p, c in phases.items() if "compaction" in p.split("+"))
    return in_flush, in_compaction


@pytest.mark.crash
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill9_during_flush_and_compaction_loses_no_acknowledged_batch(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    seed = int(os.environ.get("ATOLL_CRASH_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"\ncrash test seed {seed} (ATOLL_CRASH_SEED={seed} to reuse)")
    rng = random.Random(seed)
    db = str(tmp_path / "db")
    stderr_path = tmp_path / "child.stderr"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC_DIR), env.get("PYTHONPATH")) if p)

    durable: dict[int, int] = {}  # batch id -> key count: must survive every later crash
    phases: Counter[str] = Counter()
    next_batch = 0
    kills = 0
    acks_total = 0
    workers_seen = 0  # kills that found engine workers running: the check below bites
    started = time.monotonic()
    # Seconds spent in each stage of a round, for the report.
    spent = dict.fromkeys(["child start", "child writing", "kill", "workers exit", "check"], 0.0)

    def report() -> str:
        in_flush, in_compaction = _phase_tally(phases)
        return (
            f"seed {seed}: {kills} kills in {time.monotonic() - started:.1f}s, "
            f"{acks_total} batches acknowledged, highest batch {next_batch - 1}; "
            f"{workers_seen} kills with engine workers running; "
            f"kills by phase {dict(sorted(phases.items()))}; "
            f"during a flush {in_flush}, during a compaction {in_compaction}; "
            f"seconds spent {', '.join(f'{k} {v:.1f}' for k, v in spent.items())}"
        )

    while True:
        in_flush, in_compaction = _phase_tally(phases)
        if kills >= MIN_KILLS and in_flush >= MIN_PER_PHASE and in_compaction >= MIN_PER_PHASE:
            break
        if kills >= MAX_KILLS or time.monotonic() - started > MAX_SECONDS:
            pytest.fail(f"not enough kills during each phase before the cap: {report()}")

        child_seed = rng.randrange(1 << 32)
        delay = rng.uniform(*KILL_DELAY_S)
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, str(CHILD_PATH), db, str(child_seed), str(next_batch)],
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
                bufsize=0,
            )
        assert proc.stdout is not None
        t0 = time.monotonic()
        try:
            reader = LineReader(proc.stdout.fileno())
            first = reader.read(time.monotonic() + START_TIMEOUT_S, until_first=True)
            if not first or not first[0].startswith("ready "):
                proc.kill()
                proc.wait(EXIT_TIMEOUT_S)
                pytest.fail(
                    f"child did not start: {first!r}, exit {proc.returncode}, stderr:\n"
                    f"{stderr_path.read_text()[-3000:]}\n{report()}"
                )
            t1 = time.monotonic()
            spent["child start"] += t1 - t0
            found_on_open = int(first[0].split()[1])
            assert found_on_open == next_batch - 1, (
                f"child found batch {found_on_open} on open, expected {next_batch - 1}; {report()}"
            )
            lines = first[1:] + reader.read(time.monotonic() + delay)
            if reader.eof:
                proc.wait(EXIT_TIMEOUT_S)
                pytest.fail(
                    f"child exited by itself ({proc.returncode}); stderr:\n"
                    f"{stderr_path.read_text()[-3000:]}\n{report()}"
                )
            t2 = time.monotonic()
            spent["child writing"] += t2 - t1
            workers_seen += bool(_worker_pids(proc.pid))
            proc.send_signal(signal.SIGKILL)
            proc.wait(EXIT_TIMEOUT_S)
            # Everything the child printed before it died is acknowledged.
            lines += reader.read(time.monotonic() + EXIT_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(EXIT_TIMEOUT_S)
            proc.stdout.close()
        kills += 1

        acked: dict[int, int] = {}
        phase = "before-first-ack"
        for line in lines:
            tag, batch_id, n, phase = line.split()
            assert tag == "ack", line
            acked[int(batch_id)] = int(n)
        assert list(acked) == list(range(next_batch, next_batch + len(acked))), (
            f"child acknowledged batches out of order; {report()}"
        )
        phases[phase] += 1
        acks_total += len(acked)

        t3 = time.monotonic()
        spent["kill"] += t3 - t2
        survivors = _wait_workers_gone(proc.pid, EXIT_TIMEOUT_S)
        assert not survivors, (
            f"engine workers {survivors} of killed child {proc.pid} still running; {report()}"
        )

        t4 = time.monotonic()
        spent["workers exit"] += t4 - t3
        must_survive = {**durable, **acked}
        highest, present, problems = check_database(db, must_survive)
        last_acked = max(acked, default=next_batch - 1)
        if highest > last_acked + 1:
            problems.append(
                f"batch {highest} present but the child died writing batch {last_acked + 1}"
            )
        assert not problems, (
            f"after kill {kills} (phase {phase}, last acknowledged batch {last_acked}):\n"
            + "\n".join(problems[:30])
            + f"\n{report()}"
        )
        spent["check"] += time.monotonic() - t4
        durable = present  # whatever was seen whole must stay so
        next_batch = highest + 1

    print(report())
    record_property("crash_report", report())
    assert workers_seen, f"no kill found an engine worker process to outlive its parent; {report()}"
