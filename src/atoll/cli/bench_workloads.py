"""The engine benchmark's workloads and measurements, db_bench style.

`run_engine` drives one `BenchStore` through the workloads of a `BenchPlan` in order
and returns an `EngineResult`: throughput, p50/p99 latency, write and space
amplification. Each workload is bounded by an operation cap and a time cap, and a
workload that raises becomes an error entry rather than ending the run. Does file I/O,
reads the clock and starts one writer thread (readwhilewriting).

Measurement conventions (repeated in the report):

- Throughput is operations over wall-clock time of the closed loop, as in db_bench.
- Latency of an operation is the time between consecutive completions in that loop
  (one clock read per operation); for batched workloads it is per batch of 100.
- Write amplification of fillrandom: the engine's own `write_amplification` stat where
  it has one (Atoll's LSM compacts in child processes, which `/proc/self/io` cannot
  see); otherwise the growth of `wchar` in `/proc/self/io` (all threads of this
  process) from the first write until the engine is idle after a flush, over the user
  bytes written (key + value).
- Space amplification: bytes allocated on disk under the engine's directory
  (`st_blocks * 512`) over the user bytes of live data, after fillrandom and a flush,
  and again after `compact_range`.
"""

from __future__ import annotations

import itertools
import random
import shutil
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from atoll.cli.bench_stores import BenchStore, open_store

KEY_SIZE_BYTES = 16
VALUE_POOL_SIZE = 1 << 16

# Every workload, in the order they are reported.
WORKLOADS = (
    "fillseq",
    "fillrandom",
    "fillrandom-single",
    "overwrite",
    "readrandom",
    "readmissing",
    "readseq",
    "readwhilewriting",
    "compact",
    "readrandom-compacted",
    "fillrandom-sync",
)
# Workloads that run on the database loaded by fillrandom (batched).
BASE_WORKLOADS = frozenset(WORKLOADS) - {"fillseq", "fillrandom-single", "fillrandom-sync"}


@dataclass(frozen=True)
class BenchPlan:
    """Every parameter of one benchmark run."""

    key_count: int
    read_count: int
    time_cap_s: float
    sync_ops_max: int
    settle_timeout_s: float
    settle_poll_s: float
    workloads: tuple[str, ...] = WORKLOADS
    batch_size: int = 100
    value_size_bytes: int = 100
    writer_ops_per_s: int = 10_000
    # readwhilewriting reads at least this long, so the writer's puts fill memtables.
    readwhilewriting_min_s: float = 0.0
    seed: int = 1

    @property
    def entry_bytes(self) -> int:
        return KEY_SIZE_BYTES + self.value_size_bytes


@dataclass
class WorkloadResult:
    """One workload on one engine. `ops` counts entries for readseq, 0 for compact."""

    ops: int = 0
    seconds: float = 0.0
    p50_us: float | None = None
    p99_us: float | None = None
    latency_per: str = "op"
    capped: bool = False
    found: int | None = None
    expected_found: int | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ops_per_s(self) -> float | None:
        if self.error is not None or self.seconds <= 0 or self.ops == 0:
            return None
        return self.ops / self.seconds

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ops_per_s"] = self.ops_per_s
        return data


@dataclass
class EngineResult:
    """Everything measured on one engine."""

    name: str
    workloads: dict[str, WorkloadResult] = field(default_factory=dict)
    write_amplification: float | None = None
    write_amplification_method: str = ""
    space_amplification_fill: float | None = None
    space_amplification_compacted: float | None = None
    disk_bytes_fill: int | None = None
    disk_bytes_compacted: int | None = None
    live_user_bytes: int | None = None
    fill_user_bytes: int | None = None
    fill_wchar_bytes: int | None = None
    fill_write_bytes: int | None = None
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["workloads"] = {name: wl.to_json() for name, wl in self.workloads.items()}
        return data


class KeySpace:
    """Keys and values, all derived from the plan's seed.

    Existing keys are `%016d` of even numbers, missing ones of odd numbers, so missing
    keys interleave with existing ones (every lookup reaches the data, none is a
    trivial out-of-range miss).
    """

    def __init__(self, plan: BenchPlan) -> None:
        self.key_count = plan.key_count
        self.ordered = [b"%016d" % (2 * i) for i in range(plan.key_count)]
        self.fill_order = self.ordered.copy()
        random.Random(plan.seed).shuffle(self.fill_order)
        size = plan.value_size_bytes
        pool = random.Random(plan.seed + 1).randbytes(VALUE_POOL_SIZE * size)
        self._values = [pool[i * size : (i + 1) * size] for i in range(VALUE_POOL_SIZE)]

    def values(self, offset: int) -> Iterator[bytes]:
        """An endless stream of values; different offsets give different streams."""
        return itertools.islice(itertools.cycle(self._values), offset % VALUE_POOL_SIZE, None)

    def present(self, count: int, loaded: int, rng: random.Random) -> list[bytes]:
        """`count` keys drawn with replacement from the first `loaded` of fill_order."""
        return [self.fill_order[rng.randrange(loaded)] for _ in range(count)]

    def missing(self, count: int, rng: random.Random) -> list[bytes]:
        return [b"%016d" % (2 * rng.randrange(self.key_count) + 1) for _ in range(count)]


# --- measurement helpers -------------------------------------------------------------


def read_proc_io() -> dict[str, int] | None:
    """This process's I/O counters (Linux), or None where /proc is unavailable."""
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return None
    counters: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        counters[name.strip()] = int(value)
    return counters


def disk_bytes(path: str) -> int:
    """Bytes allocated on disk to every file under `path` (st_blocks * 512)."""
    total = 0
    for file in Path(path).rglob("*"):
        try:
            stat = file.lstat()
        except FileNotFoundError:
            continue  # removed by a compaction between listing and stat
        if file.is_file():
            total += stat.st_blocks * 512
    return total


def percentiles_us(latencies_ns: array[int]) -> tuple[float | None, float | None]:
    if not latencies_ns:
        return None, None
    import numpy as np  # here, so that `atoll --help` does not pay for it

    values = np.frombuffer(latencies_ns, dtype=np.int64)
    p50, p99 = np.percentile(values, [50, 99])
    return float(p50) / 1000.0, float(p99) / 1000.0


def settle(store: BenchStore, plan: BenchPlan) -> float:
    """Wait until the store is idle and its disk footprint stops changing; seconds waited.

    Stable means three polls in a row with the same directory size, the same `wchar`,
    the same engine write amplification, and no background work reported.
    """
    if not store.on_disk:
        return 0.0
    start = time.monotonic()
    last: tuple[object, ...] | None = None
    stable = 0
    while time.monotonic() - start < plan.settle_timeout_s:
        io = read_proc_io() or {}
        size = disk_bytes(store.path) if store.on_disk else 0
        signature = (size, io.get("wchar"), store.engine_write_amplification())
        if store.is_idle() and signature == last:
            stable += 1
            if stable >= 3:
                break
        else:
            stable = 0
        last = signature
        time.sleep(plan.settle_poll_s)
    return time.monotonic() - start


def _finish(result: WorkloadResult, start_ns: int, end_ns: int, lat: array[int]) -> None:
    result.seconds = (end_ns - start_ns) / 1e9
    result.p50_us, result.p99_us = percentiles_us(lat)


def time_batches(
    put_batch: Callable[[Sequence[tuple[bytes, bytes]]], None],
    keys: Sequence[bytes],
    values: Iterator[bytes],
    batch_size: int,
    time_cap_s: float,
) -> WorkloadResult:
    """Write `keys` in batches of `batch_size`; latency is per batch."""
    result = WorkloadResult(latency_per=f"batch of {batch_size}")
    clock = time.perf_counter_ns
    lat: array[int] = array("q")
    add = lat.append
    start = prev = clock()
    deadline = start + int(time_cap_s * 1e9)
    for first in range(0, len(keys), batch_size):
        put_batch(list(zip(keys[first : first + batch_size], values, strict=False)))
        now = clock()
        add(now - prev)
        prev = now
        result.ops = min(first + batch_size, len(keys))
        if now > deadline:
            break
    result.capped = result.ops < len(keys)
    _finish(result, start, prev, lat)
    return result


def time_puts(
    put: Callable[[bytes, bytes], None],
    keys: Sequence[bytes],
    values: Iterator[bytes],
    time_cap_s: float,
) -> WorkloadResult:
    """Write `keys` one operation each."""
    result = WorkloadResult()
    clock = time.perf_counter_ns
    lat: array[int] = array("q")
    add = lat.append
    start = prev = clock()
    deadline = start + int(time_cap_s * 1e9)
    for key, value in zip(keys, values, strict=False):  # values is endless
        put(key, value)
        now = clock()
        add(now - prev)
        prev = now
        if now > deadline:
            break
    result.ops = len(lat)
    result.capped = result.ops < len(keys)
    _finish(result, start, prev, lat)
    return result


def time_gets(
    get: Callable[[bytes], bytes | None],
    keys: Sequence[bytes],
    time_cap_s: float,
    min_duration_s: float = 0.0,
) -> WorkloadResult:
    """Look up `keys` one at a time, counting how many were found.

    With `min_duration_s`, start over from the first key until that long has passed.
    """
    result = WorkloadResult()
    clock = time.perf_counter_ns
    lat: array[int] = array("q")
    add = lat.append
    found = 0
    count = len(keys)
    start = prev = clock()
    deadline = start + int(time_cap_s * 1e9)
    min_end = start + int(min_duration_s * 1e9)
    for key in itertools.cycle(keys) if min_duration_s > 0 else keys:
        if get(key) is not None:
            found += 1
        now = clock()
        add(now - prev)
        prev = now
        if now > deadline or (now >= min_end and len(lat) >= count):
            break
    result.ops = len(lat)
    result.found = found
    result.capped = result.ops < len(keys)
    _finish(result, start, prev, lat)
    return result


def time_scan(entries: Iterable[tuple[bytes, bytes]], time_cap_s: float) -> WorkloadResult:
    """Iterate a full scan, counting entries; no latency (one call)."""
    result = WorkloadResult(latency_per="scan")
    clock = time.perf_counter_ns
    count = 0
    start = clock()
    deadline = start + int(time_cap_s * 1e9)
    for _ in entries:
        count += 1
        if count & 4095 == 0 and clock() > deadline:
            result.capped = True
            break
    result.seconds = (clock() - start) / 1e9
    result.ops = count
    return result


# --- the workloads -------------------------------------------------------------------


class EngineRun:
    """One engine through the plan: fresh directories under `scratch`, in order."""

    def __init__(
        self,
        name: str,
        plan: BenchPlan,
        keyspace: KeySpace,
        scratch: Path,
        progress: Callable[[str, str, WorkloadResult], None],
    ) -> None:
        self.name = name
        self.plan = plan
        self.keys = keyspace
        self.scratch = scratch
        self.progress = progress
        self.result = EngineResult(name)
        self.loaded = 0

    def run(self) -> EngineResult:
        wanted = set(self.plan.workloads)
        if "fillseq" in wanted:
            self._fresh("fillseq", self._fillseq)
        if "fillrandom-single" in wanted:
            self._fresh("fillrandom-single", self._fillrandom_single)
        if wanted & BASE_WORKLOADS:
            self._base(wanted)
        if "fillrandom-sync" in wanted:
            self._fresh("fillrandom-sync", self._fillrandom_sync, sync=True)
        return self.result

    def _record(self, workload: str, result: WorkloadResult) -> None:
        self.result.workloads[workload] = result
        if result.error is not None and result.error not in self.result.errors:
            self.result.errors.append(result.error)
        self.progress(self.name, workload, result)

    def _fresh(
        self, workload: str, body: Callable[[BenchStore], WorkloadResult], sync: bool = False
    ) -> None:
        path = self.scratch / self.name / workload
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            store = open_store(self.name, str(path), sync=sync)
            try:
                result = body(store)
            finally:
                store.close()
        except Exception as err:  # a workload boundary: report the failure, go on
            result = WorkloadResult(error=_describe(err))
        finally:
            shutil.rmtree(path, ignore_errors=True)
        self._record(workload, result)

    def _fillseq(self, store: BenchStore) -> WorkloadResult:
        plan = self.plan
        return time_batches(
            store.put_batch,
            self.keys.ordered,
            self.keys.values(0),
            plan.batch_size,
            plan.time_cap_s,
        )

    def _fillrandom_single(self, store: BenchStore) -> WorkloadResult:
        return time_puts(store.put, self.keys.fill_order, self.keys.values(0), self.plan.time_cap_s)

    def _fillrandom_sync(self, store: BenchStore) -> WorkloadResult:
        keys = self.keys.fill_order[: self.plan.sync_ops_max]
        result = time_puts(store.put_sync, keys, self.keys.values(0), self.plan.time_cap_s)
        result.extra["ops_max"] = len(keys)
        return result

    def _base(self, wanted: set[str]) -> None:
        """fillrandom (batched) and every workload that runs on its database."""
        path = self.scratch / self.name / "fillrandom"
        steps: list[tuple[str, Callable[[BenchStore], WorkloadResult]]] = [
            ("overwrite", self._overwrite),
            ("readrandom", self._readrandom),
            ("readmissing", self._readmissing),
            ("readseq", self._readseq),
            ("readwhilewriting", self._readwhilewriting),
            ("compact", self._compact),
            ("readrandom-compacted", self._readrandom),
        ]
        if "readrandom-compacted" in wanted:
            wanted = wanted | {"compact"}
        failed: str | None = None
        store: BenchStore | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            store = open_store(self.name, str(path))
            fill = self._fillrandom(store)
        except Exception as err:  # a workload boundary: report the failure, go on
            fill = WorkloadResult(error=_describe(err))
        if fill.error is not None:
            failed = f"skipped: fillrandom failed ({fill.error})"
        if "fillrandom" in wanted:
            self._record("fillrandom", fill)
        try:
            for workload, body in steps:
                if workload not in wanted:
                    continue
                if failed is not None or store is None:
                    self._record(workload, WorkloadResult(error=failed))
                    continue
                try:
                    result = body(store)
                except Exception as err:  # a workload boundary: report it, go on
                    result = WorkloadResult(error=_describe(err))
                self._record(workload, result)
        finally:
            try:
                if store is not None:
                    store.close()
            finally:
                shutil.rmtree(path, ignore_errors=True)

    def _fillrandom(self, store: BenchStore) -> WorkloadResult:
        plan = self.plan
        io_before = read_proc_io()
        result = time_batches(
            store.put_batch,
            self.keys.fill_order,
            self.keys.values(0),
            plan.batch_size,
            plan.time_cap_s,
        )
        self.loaded = result.ops
        flush_start = time.monotonic()
        store.flush()
        result.extra["settle_s"] = settle(store, plan)
        result.extra["flush_s"] = time.monotonic() - flush_start
        io_after = read_proc_io()
        self._amplification(store, io_before, io_after)
        return result

    def _amplification(
        self,
        store: BenchStore,
        io_before: dict[str, int] | None,
        io_after: dict[str, int] | None,
    ) -> None:
        res = self.result
        res.fill_user_bytes = res.live_user_bytes = self.loaded * self.plan.entry_bytes
        if io_before is not None and io_after is not None:
            res.fill_wchar_bytes = io_after["wchar"] - io_before["wchar"]
            res.fill_write_bytes = io_after.get("write_bytes", 0) - io_before.get("write_bytes", 0)
        engine_wa = store.engine_write_amplification()
        if engine_wa is not None:
            res.write_amplification = engine_wa
            res.write_amplification_method = "engine stats"
        elif res.fill_wchar_bytes is not None and res.fill_user_bytes and store.on_disk:
            res.write_amplification = res.fill_wchar_bytes / res.fill_user_bytes
            res.write_amplification_method = "/proc/self/io wchar"
        if store.on_disk and res.live_user_bytes:
            res.disk_bytes_fill = disk_bytes(store.path)
            res.space_amplification_fill = res.disk_bytes_fill / res.live_user_bytes

    def _overwrite(self, store: BenchStore) -> WorkloadResult:
        plan = self.plan
        keys = self.keys.present(plan.key_count, self.loaded, random.Random(plan.seed + 2))
        result = time_batches(
            store.put_batch, keys, self.keys.values(7919), plan.batch_size, plan.time_cap_s
        )
        # Let the compactions it caused finish, so the reads that follow measure the
        # shape of the tree and not a race with background work.
        result.extra["settle_s"] = settle(store, plan)
        return result

    def _readrandom(self, store: BenchStore) -> WorkloadResult:
        plan = self.plan
        keys = self.keys.present(plan.read_count, self.loaded, random.Random(plan.seed + 3))
        result = time_gets(store.get, keys, plan.time_cap_s)
        result.expected_found = result.ops
        return result

    def _readmissing(self, store: BenchStore) -> WorkloadResult:
        plan = self.plan
        keys = self.keys.missing(plan.read_count, random.Random(plan.seed + 4))
        result = time_gets(store.get, keys, plan.time_cap_s)
        result.expected_found = 0
        return result

    def _readseq(self, store: BenchStore) -> WorkloadResult:
        result = time_scan(store.scan(), self.plan.time_cap_s)
        result.latency_per = "scan"
        if not result.capped:
            result.found = result.ops
            result.expected_found = self.loaded
        return result

    def _readwhilewriting(self, store: BenchStore) -> WorkloadResult:
        plan = self.plan
        keys = self.keys.present(plan.read_count, self.loaded, random.Random(plan.seed + 5))
        writer_keys = self.keys.present(1 << 16, self.loaded, random.Random(plan.seed + 6))
        stop = threading.Event()
        report: dict[str, Any] = {}
        writer = threading.Thread(
            target=_paced_writer,
            args=(
                store,
                writer_keys,
                self.keys.values(104729),
                plan.writer_ops_per_s,
                stop,
                report,
            ),
            name="bench-writer",
            daemon=True,
        )
        writer.start()
        try:
            result = time_gets(store.get, keys, plan.time_cap_s, plan.readwhilewriting_min_s)
        finally:
            stop.set()
            writer.join()
        result.expected_found = result.ops
        result.extra.update(report)
        if "writer_error" in report:
            result.error = f"writer thread: {report['writer_error']}"
        return result

    def _compact(self, store: BenchStore) -> WorkloadResult:
        settle(store, self.plan)  # the writer of readwhilewriting may have left work
        start = time.monotonic()
        store.compact()
        compact_s = time.monotonic() - start
        result = WorkloadResult(seconds=compact_s, latency_per="call")
        result.extra["settle_s"] = settle(store, self.plan)
        if store.on_disk and self.result.live_user_bytes:
            self.result.disk_bytes_compacted = disk_bytes(store.path)
            self.result.space_amplification_compacted = (
                self.result.disk_bytes_compacted / self.result.live_user_bytes
            )
        return result


def _paced_writer(
    store: BenchStore,
    keys: Sequence[bytes],
    values: Iterator[bytes],
    ops_per_s: int,
    stop: threading.Event,
    report: dict[str, Any],
) -> None:
    """Overwrite existing keys at a steady `ops_per_s` until `stop` is set."""
    done = 0
    start = time.perf_counter()
    try:
        writer = store.thread_writer()
        try:
            while not stop.is_set():
                due = int((time.perf_counter() - start) * ops_per_s)
                while done < due and not stop.is_set():
                    writer.put(keys[done % len(keys)], next(values))
                    done += 1
                stop.wait(0.001)
        finally:
            writer.close()
    except Exception as err:  # the thread's boundary: hand the failure to the reader
        report["writer_error"] = _describe(err)
    elapsed = time.perf_counter() - start
    report["writer_ops"] = done
    report["writer_ops_per_s"] = done / elapsed if elapsed > 0 else 0.0


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
