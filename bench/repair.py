"""Repair benchmark (issue 6 §5): on a 4-node `atoll dev` cluster (2 devices each,
`standard` pool 4+2), with `--gib` GiB of objects written, `kill -9` one node and time
it to `down`, to `out` and back to full verified redundancy (`degraded_pgs == 0`);
repair MB/s of rebuilt shard data with the rate limit off; and foreground GET latency
(1 MiB objects through node 1's gateway) during repair with the default rate limit,
against its quiet value. Writes bench/results/repair.md and repair.json
(repair-quick.md/json with `--quick`).

Two kinds of run, each on a fresh cluster (started, filled, measured, stopped):

- **unthrottled** (`--set repair_bytes_per_s=0 --set repair_shards_max=6 --set
  repair_pgs_max=4`): fill, wait until healthy, quiet GET
  latency, `kill -9` the victim, poll status every 0.5 s until no PG is degraded; no
  foreground load during repair. Repeated `--repeats` times (default 3), each on a
  fresh cluster: on this shared 2-vCPU VM one run's rate moves by 10-15% from run to
  run, so the target is judged on the median of the runs, and each run is in the report.
- **default limit** (`repair_bytes_per_s` not set: the node default): the same, with
  the foreground GET workers running from the kill until the cluster is healthy again;
  each GET is counted in the phase it started in (killed, down, out = repairing).

Both runs set `down_after_s`, `out_after_s` and `repair_interval_s=1`. Status is the
meta leader's status document (`meta.status`, what `atoll status --json` prints),
read in this process through `atoll.meta.client.MetaClient`, so that polling every
0.5 s does not start a Python process each time. The S3 client is bench/s3.py's lean
asyncio client (SigV4, one keep-alive connection per request in flight). Every process
the script starts is stopped at the end, on failure and on Ctrl-C or SIGTERM too.

    python bench/repair.py [--gib 3] [--down-after 5] [--out-after 20] [--victim 4]
    python bench/repair.py --quick          # 0.3 GiB, short windows: a smoke run
    python bench/repair.py --only unthrottled --shards-max 6 --pgs-max 4  # its concurrency
    python bench/repair.py --report-only bench/results/repair.json  # rewrite repair.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kv_clusters import machine_cpu_s, tree_cpu_s
from s3 import (
    GIB,
    MB,
    MIB,
    RESULTS,
    LeanClient,
    S3Failure,
    _fmt,
    _met,
    _own_cpu_s,
    cancel_on_sigterm,
    df_line,
    latency_ms,
    load_and_others,
    node_log_lines,
    others_seen,
    render_failure,
    render_machine,
    report_start,
    run_main,
    spawn_dev,
    stop_dev,
    wait_dev,
    write_report,
)
from s3 import _say as say
from s3 import machine_info as s3_machine_info

try:
    from atoll.meta.client import MetaClient
except ImportError:  # not installed: use the checkout's src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from atoll.meta.client import MetaClient

BUCKET = "repairbench"
READ_BYTES = 1 * MIB  # the foreground GETs: whole 1 MiB objects
BASE_BYTES = 64 * MIB  # every object is a slice of one random buffer, at its own offset
POLL_S = 0.5
STATUS_TIMEOUT_S = 5.0
DEV_START_TIMEOUT_S = 180.0
DEV_STOP_TIMEOUT_S = 60.0
PUT_TIMEOUT_S = 300.0
GET_TIMEOUT_S = 60.0
ERROR_PAUSE_S = 0.05
ERROR_SAMPLES_MAX = 5
HEALTHY_TIMEOUT_S = 600.0  # a freshly filled cluster to no degraded PG
ANNOUNCEMENT = "Ctrl-C stops the cluster."
LOG_LINES_MAX = 60

# Targets (issue 6 §5).
REPAIR_MB_PER_S_MIN = 100.0
REDUNDANCY_SLACK_S = 120.0  # full redundancy within out_after_s + this, for 3 GiB
P99_RATIO_MAX = 3.0

UNTHROTTLED = "unthrottled"
RUNS = (
    # name, repair_bytes_per_s setting (None: the node default), foreground GETs during repair
    (UNTHROTTLED, 0, False),
    ("default_limit", None, True),
)


# -- the cluster -------------------------------------------------------------------------------


class DevCluster:
    """`atoll dev --nodes 4 --devices-per-node 2 --s3-port 0 --set ...` in a temp dir
    under `base`, in a session of its own; `stop` is idempotent and leaves no process.
    `stop` reads the node logs, then removes the dir (unless `keep`)."""

    def __init__(self, base: Path, settings: list[str], keep: bool) -> None:
        self.base = base
        self.settings = settings
        self.keep = keep
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.document: dict[str, Any] = {}
        self.log: dict[str, Any] = {}

    @property
    def root(self) -> Path:
        assert self.dir is not None
        return self.dir / "cluster"

    def command(self, root: str | None = None) -> list[str]:
        """`atoll dev` with its arguments, in `root` (default: the cluster's dir)."""
        where = root if root is not None else str(self.root)
        args = ["dev", "--dir", where, "--nodes", "4", "--devices-per-node", "2"]
        args += ["--s3-port", "0"]
        for setting in self.settings:
            args += ["--set", setting]
        return [sys.executable, "-m", "atoll.cli", *args]

    def start(self) -> float:
        started = time.monotonic()
        self.dir = Path(tempfile.mkdtemp(prefix="atoll-repair-bench-", dir=self.base))
        out = self.dir / "dev.log"
        self.proc = spawn_dev(self.command(), out, {"PYTHONUNBUFFERED": "1"})
        wait_dev(
            self.proc,
            out,
            lambda: ANNOUNCEMENT in out.read_text(errors="replace"),
            DEV_START_TIMEOUT_S,
        )
        self.document = json.loads((self.root / "cluster.json").read_text())
        return time.monotonic() - started

    def node(self, node_id: int) -> dict[str, Any]:
        return next(n for n in self.document["nodes"] if n["id"] == node_id)

    def rpc_addresses(self) -> list[str]:
        return [str(n["rpc"]) for n in self.document["nodes"]]

    def kill(self, node_id: int) -> None:
        os.kill(int(self.node(node_id)["pid"]), signal.SIGKILL)

    def cpu_s(self) -> float:
        """CPU seconds of `atoll dev` and everything under it (nodes, KV gateways,
        engine workers)."""
        return tree_cpu_s(self.proc.pid) if self.proc is not None else 0.0

    def leftovers(self) -> list[int]:
        """Processes whose command line names this cluster's dir (its nodes, their KV
        gateways and engine workers): only ours, whatever became of the pids in
        cluster.json."""
        if self.dir is None:
            return []
        mark = str(self.root).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                with contextlib.suppress(OSError):
                    if mark in (entry / "cmdline").read_bytes():
                        found.append(int(entry.name))
        return found

    def stop(self) -> None:
        """SIGCONT to its processes (a stopped node could not exit), SIGTERM to `atoll
        dev` (it stops its nodes), SIGKILL to its session if it does not stop in time,
        then SIGKILL to any process of this cluster still there."""
        if self.proc is not None:
            self._stop(self.proc)
            self.proc = None
        if self.dir is not None:
            self.log = read_logs(self.root)
            if not self.keep:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        for pid in self.leftovers():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGCONT)
        stop_dev(proc, DEV_STOP_TIMEOUT_S, say)
        for pid in self.leftovers():
            say(f"SIGKILL to pid {pid}, left over")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


# Node log lines kept whole, in time order: node states, Raft membership, repair passes.
_EVENT = re.compile(
    r"marking it (down|out|up)|removed from group|leads the meta group|repair: pass at"
    r"|not rebuilt|stale shard"
)
_LEVEL = re.compile(r" (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
# Lines counted by kind (a message with its numbers and names blanked): warnings and
# errors, and the repairer's listings that failed.
_COUNTED = re.compile(r" (WARNING|ERROR|CRITICAL) |Traceback|repair: cannot list")
_BLANK = (
    (re.compile(r"\?versionId=[0-9a-f]+"), ""),
    (re.compile(r"[0-9a-f]{16,}"), "<hex>"),
    (re.compile(r"repairbench/\S+"), "<object>"),
    (re.compile(r"(/[\w.+-]+){2,}"), "<path>"),
    (re.compile(r"\d+(\.\d+)?"), "N"),
)
EVENTS_MAX = 80
KINDS_MAX = 25


def read_logs(root: Path) -> dict[str, Any]:
    """From the node logs: the event lines (`_EVENT`) in time order ("node-N: line"),
    and the warnings, errors and failed listings counted by kind, each with its first
    line."""
    events: list[str] = []
    kinds: dict[str, list[Any]] = {}
    for node, line in node_log_lines(root):
        if _EVENT.search(line):
            events.append(f"{node}: {line.strip()[:300]}")
        if _COUNTED.search(line):
            level = _LEVEL.search(line)
            message = line[level.end() :] if level else line
            for pattern, blank in _BLANK:
                message = pattern.sub(blank, message)
            kind = message.strip()[:160]
            if kind in kinds:
                kinds[kind][0] += 1
            else:
                kinds[kind] = [1, f"{node}: {line.strip()[:400]}"]
    events.sort(key=lambda e: e.split(": ", 1)[1])
    if len(events) > EVENTS_MAX:
        half = EVENTS_MAX // 2
        events = [
            *events[:half],
            f"... {len(events) - EVENTS_MAX} lines left out ...",
            *events[-half:],
        ]
    counted = sorted(kinds.items(), key=lambda kv: -kv[1][0])[:KINDS_MAX]
    return {
        "events": events,
        "counts": [{"kind": k, "lines": n, "first": first} for k, (n, first) in counted],
    }


CLUSTERS: list[DevCluster] = []
"""Every cluster started, so that `main` can stop what is left whatever happens."""


# -- S3 ----------------------------------------------------------------------------------------


@dataclass
class Objects:
    """What the fill wrote: keys and (offset, size) into the shared random buffer."""

    base: memoryview
    big: dict[str, tuple[int, int]] = field(default_factory=dict)
    small: dict[str, tuple[int, int]] = field(default_factory=dict)

    def body(self, spec: tuple[int, int]) -> memoryview:
        offset, size = spec
        return self.base[offset : offset + size]


async def fill(
    client: LeanClient, objects: Objects, total: int, object_bytes: int, reads: int, conc: int
) -> dict[str, Any]:
    """PUT `reads` objects of READ_BYTES (the foreground GETs' set), then objects of
    `object_bytes` until `total` bytes in all, `conc` at a time (worker w through
    gateway w mod 4); a failed PUT is retried once, then counted and skipped."""
    rng = random.Random(7)
    plan: list[tuple[str, int, bool]] = [(f"read/{i:05d}", READ_BYTES, True) for i in range(reads)]
    left = total - reads * READ_BYTES
    i = 0
    while left > 0:
        size = min(object_bytes, left)
        plan.append((f"fill/{i:06d}", size, False))
        left -= size
        i += 1
    queue: asyncio.Queue[tuple[str, int, bool]] = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)
    errors: Counter[str] = Counter()
    samples: list[dict[str, Any]] = []
    written = 0

    async def worker(w: int) -> None:
        nonlocal written
        while not queue.empty():
            key, size, small = queue.get_nowait()
            spec = (rng.randrange(0, len(objects.base) - size + 1), size)
            for attempt in range(2):
                try:
                    await client.call(
                        w, "PUT", f"/{BUCKET}/{key}", PUT_TIMEOUT_S, objects.body(spec)
                    )
                except (S3Failure, TimeoutError, OSError, ValueError) as err:
                    kind = err.kind if isinstance(err, S3Failure) else type(err).__name__
                    errors[kind] += 1
                    if len(samples) < ERROR_SAMPLES_MAX:
                        samples.append({"key": key, "attempt": attempt, "error": str(err)[:300]})
                    await asyncio.sleep(1.0)
                    continue
                (objects.small if small else objects.big)[key] = spec
                written += size
                break

    started = time.monotonic()
    await asyncio.gather(*(worker(w) for w in range(conc)))
    seconds = time.monotonic() - started
    return {
        "objects": len(objects.big) + len(objects.small),
        "read_objects": len(objects.small),
        "bytes": written,
        "seconds": seconds,
        "mb_per_s": written / MB / seconds if seconds else math.nan,
        "concurrency": conc,
        "errors": dict(errors),
        "error_samples": samples,
    }


@dataclass
class Sample:
    started: float  # time.monotonic()
    ms: float
    ok: bool


class Foreground:
    """`conc` workers GETting random 1 MiB objects through one gateway (each body
    compared with what was written) until stopped; every request kept with its start."""

    def __init__(self, client: LeanClient, objects: Objects, conc: int) -> None:
        self.client = client
        self.objects = objects
        self.conc = conc
        self.samples: list[Sample] = []
        self.errors: Counter[str] = Counter()
        self.error_samples: list[dict[str, Any]] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.origin = time.monotonic()  # error samples carry their start, s after this

    def start(self) -> None:
        self.origin = time.monotonic()
        self._tasks = [asyncio.create_task(self._worker(w)) for w in range(self.conc)]

    async def stop(self) -> None:
        self._stop.set()
        _, pending = await asyncio.wait(self._tasks, timeout=GET_TIMEOUT_S + 5)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _worker(self, w: int) -> None:
        rng = random.Random(1000 + w)
        keys = sorted(self.objects.small)
        while not self._stop.is_set():
            key = rng.choice(keys)
            started = time.monotonic()
            t0 = time.perf_counter()
            ok = False
            try:
                body = (await self.client.call(w, "GET", f"/{BUCKET}/{key}", GET_TIMEOUT_S)).body
                if body != self.objects.body(self.objects.small[key]):
                    raise S3Failure("wrong body", {"key": key, "bytes": len(body)})
                ok = True
            except (S3Failure, TimeoutError, OSError, ValueError) as err:
                kind = err.kind if isinstance(err, S3Failure) else type(err).__name__
                self.errors[kind] += 1
                if len(self.error_samples) < ERROR_SAMPLES_MAX:
                    detail = err.detail if isinstance(err, S3Failure) else {"error": str(err)}
                    self.error_samples.append(
                        {"kind": kind, "key": key, "t_s": round(started - self.origin, 2), **detail}
                    )
            self.samples.append(Sample(started, (time.perf_counter() - t0) * 1000, ok))
            if not ok:
                await asyncio.sleep(ERROR_PAUSE_S)


def latency_summary(samples: list[Sample], seconds: float) -> dict[str, Any]:
    ok = sorted(s.ms for s in samples if s.ok)
    return {
        "gets": len(ok),
        "failed": sum(1 for s in samples if not s.ok),
        "seconds": seconds,
        "gets_per_s": len(ok) / seconds if seconds > 0 else math.nan,
        **latency_ms(ok),
    }


async def quiet_latency(
    client: LeanClient, objects: Objects, conc: int, seconds: float, cluster: DevCluster
) -> dict[str, Any]:
    fg = Foreground(client, objects, conc)
    cpu = CpuMeter(cluster)
    started = time.monotonic()
    fg.start()
    await asyncio.sleep(seconds)
    await fg.stop()
    result = latency_summary(fg.samples, time.monotonic() - started)
    result.update(cpu.read(), errors=dict(fg.errors), error_samples=fg.error_samples)
    return result


Cpu = tuple[float, float, float]
"""CPU seconds so far: the cluster's (`atoll dev` and everything under it), this
process's, and the whole machine's busy time."""


def cpu_now(cluster: DevCluster) -> Cpu:
    return cluster.cpu_s(), sum(_own_cpu_s()), machine_cpu_s()[0]


def cpu_pct(a: Cpu, b: Cpu, wall_s: float) -> dict[str, float]:
    """% of a core used between `a` and `b` by the cluster, this process and the rest
    of the machine."""
    wall_s = max(wall_s, 1e-9)
    cluster, own, busy = (b[i] - a[i] for i in range(3))
    return {
        "cluster_cpu_pct": 100 * cluster / wall_s,
        "client_cpu_pct": 100 * own / wall_s,
        "others_cpu_pct": 100 * (busy - cluster - own) / wall_s,
    }


class CpuMeter:
    """`cpu_pct` since it was made."""

    def __init__(self, cluster: DevCluster) -> None:
        self.cluster = cluster
        self.t0 = time.monotonic()
        self.cpu0 = cpu_now(cluster)

    def read(self) -> dict[str, float]:
        return cpu_pct(self.cpu0, cpu_now(self.cluster), time.monotonic() - self.t0)


# -- status ------------------------------------------------------------------------------------


async def status(meta: MetaClient) -> dict[str, Any] | None:
    """The meta leader's status document, or None if none answers in time."""
    try:
        return await asyncio.wait_for(meta.status(), STATUS_TIMEOUT_S)
    except Exception:  # no leader (an election), a refused call, a timeout
        return None


def repaired_bytes(doc: dict[str, Any], exclude: int) -> int:
    return sum(
        int(n["repair"]["repaired_bytes"])
        for n in doc["nodes"]
        if n["id"] != exclude and n.get("repair")
    )


async def wait_healthy(meta: MetaClient, timeout_s: float) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    last: dict[str, Any] | None = None
    while time.monotonic() - started < timeout_s:
        doc = await status(meta)
        if doc is not None:
            last = doc
            if doc["degraded_pgs"] == 0 and all(n["state"] == "up" for n in doc["nodes"]):
                return time.monotonic() - started, doc
        await asyncio.sleep(POLL_S)
    raise RuntimeError(f"not healthy within {timeout_s:.0f} s; last status: {_brief(last)}")


def _brief(doc: dict[str, Any] | None) -> str:
    if doc is None:
        return "(no answer)"
    states = {n["id"]: n["state"] for n in doc["nodes"]}
    return (
        f"degraded_pgs {doc['degraded_pgs']}/{doc['pgs']}, bytes_to_repair"
        f" {doc['bytes_to_repair']}, rate {doc['repair_bytes_per_s']}, eta {doc['repair_eta_s']},"
        f" nodes {states}"
    )


async def leader_of(meta: MetaClient, cluster: DevCluster) -> int | None:
    """The node id of the meta leader (the address MetaClient last reached it at)."""
    if await status(meta) is None:
        return None
    leader = getattr(meta, "_leader", None)
    return next((int(n["id"]) for n in cluster.document["nodes"] if n["rpc"] == leader), None)


async def watch_repair(
    meta: MetaClient,
    cluster: DevCluster,
    victim: int,
    killed: float,
    baseline: int,
    cpu0: Cpu,
    timeout_s: float,
) -> dict[str, Any]:
    """Poll status every POLL_S from the kill until no PG is degraded (with the victim
    out): times to down, out and healthy (s after the kill), the survivors' repaired
    bytes since `baseline`, the peak cluster repair rate, every poll (with the CPU
    used so far), and the CPU used in each phase (`cpu0`: at the kill)."""
    timeline: list[dict[str, Any]] = []
    marks: dict[str, float] = {}
    peak_rate = 0.0
    peak_to_repair = 0
    peak_degraded = 0
    unanswered = 0
    last: dict[str, Any] | None = None
    while True:
        t = time.monotonic() - killed
        if t > timeout_s:
            raise RuntimeError(
                f"node {victim} not back to full redundancy within {timeout_s:.0f} s of the kill"
                f" ({', '.join(f'{k} at {v:.1f} s' for k, v in marks.items()) or 'not even down'});"
                f" last status: {_brief(last)}"
            )
        doc = await status(meta)
        t = time.monotonic() - killed
        cpu = [round(v, 3) for v in cpu_now(cluster)]
        if doc is None:
            unanswered += 1
            timeline.append({"t": round(t, 2), "answer": False, "cpu": cpu})
        else:
            last = doc
            state = next(n["state"] for n in doc["nodes"] if n["id"] == victim)
            rebuilt = repaired_bytes(doc, victim) - baseline
            peak_rate = max(peak_rate, float(doc["repair_bytes_per_s"]))
            peak_to_repair = max(peak_to_repair, int(doc["bytes_to_repair"]))
            peak_degraded = max(peak_degraded, int(doc["degraded_pgs"]))
            timeline.append(
                {
                    "t": round(t, 2),
                    "state": state,
                    "degraded_pgs": doc["degraded_pgs"],
                    "bytes_to_repair": doc["bytes_to_repair"],
                    "repair_bytes_per_s": doc["repair_bytes_per_s"],
                    "repair_eta_s": doc["repair_eta_s"],
                    "repaired_bytes": rebuilt,
                    "cpu": cpu,
                }
            )
            if state in ("down", "out") and "down" not in marks:
                marks["down"] = t
                say(f"node {victim} down {t:.1f} s after the kill")
            if state == "out" and "out" not in marks:
                marks["out"] = t
                say(f"node {victim} out {t:.1f} s after the kill")
                if PROFILE is not None:
                    start_profiles(cluster, victim, PROFILE)
            if "out" in marks and doc["degraded_pgs"] == 0:
                marks["healthy"] = t
                say(f"no PG degraded {t:.1f} s after the kill; {rebuilt / MB:,.0f} MB rebuilt")
                break
        await asyncio.sleep(max(0.0, POLL_S - (time.monotonic() - killed - t)))
    assert last is not None
    rebuilt = repaired_bytes(last, victim) - baseline
    window = marks["healthy"] - marks["out"]
    first_moved = next((p["t"] for p in timeline if p.get("repaired_bytes", 0) > 0), math.nan)
    last_moved = next(
        (p["t"] for p in timeline if rebuilt > 0 and p.get("repaired_bytes", 0) >= rebuilt),
        math.nan,
    )
    at = {p["t"]: tuple(p["cpu"]) for p in timeline} | {0.0: cpu0}
    spans = {"killed": (0.0, "down"), "down": ("down", "out"), "repairing": ("out", "healthy")}
    cpu_by_phase = {}
    for phase, (lo, hi) in spans.items():
        t_lo = 0.0 if lo == 0.0 else round(marks[str(lo)], 2)
        t_hi = round(marks[hi], 2)
        cpu_by_phase[phase] = cpu_pct(at[t_lo], at[t_hi], t_hi - t_lo)
    return {
        "cpu_by_phase": cpu_by_phase,
        "down_s": marks["down"],
        "out_s": marks["out"],
        "healthy_s": marks["healthy"],
        "out_to_healthy_s": window,
        "repaired_bytes": rebuilt,
        "repair_mb_per_s": rebuilt / MB / window if window > 0 else math.nan,
        # Between the first poll that saw rebuilt bytes and the first that saw the final
        # count: the rate while bytes were moving, without the detection and the
        # verification passes around it.
        "moving_from_s": first_moved,
        "moving_until_s": last_moved,
        "moving_mb_per_s": (
            rebuilt / MB / (last_moved - first_moved) if last_moved > first_moved else math.nan
        ),
        "peak_repair_bytes_per_s": peak_rate,
        "peak_bytes_to_repair": peak_to_repair,
        "peak_degraded_pgs": peak_degraded,
        "pgs": last["pgs"],
        "final_states": {str(n["id"]): n["state"] for n in last["nodes"]},
        "final_bytes_to_repair": last["bytes_to_repair"],
        "unanswered_polls": unanswered,
        "timeline": timeline,
    }


# -- one run -----------------------------------------------------------------------------------


UNTHROTTLED_SHARDS = 6
SLICE_S = 5  # the repairing phase's foreground latency, by slices of this many seconds
UNTHROTTLED_PGS = 4
PROFILE: Path | None = None  # --profile DIR
PROFILE_S = 30


def start_profiles(cluster: DevCluster, victim: int, where: Path) -> None:
    """py-spy (collapsed stacks, `--nonblocking`: pausing the nodes 97 times a second
    slowed repair by half) of every surviving node process for
    PROFILE_S seconds from the moment the victim is out: where repair spends its CPU.
    py-spy stops by itself after the duration."""
    where.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).parent / "py-spy")
    for node in cluster.document["nodes"]:
        if node["id"] == victim or not node.get("pid"):
            continue
        out = where / f"node-{node['id']}.txt"
        command = [spy, "record", "--pid", str(node["pid"]), "--duration", str(PROFILE_S)]
        subprocess.Popen(
            [*command, "--rate", "97", "--nonblocking", "--format", "raw", "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        say(f"profiling node {node['id']} into {out}")


def settings_for(args: argparse.Namespace, rate: int | None) -> list[str]:
    settings = [
        f"down_after_s={args.down_after:g}",
        f"out_after_s={args.out_after:g}",
        "repair_interval_s=1",
    ]
    if rate is not None:
        # Rate limits off: no byte rate, and as many shards at once as help.
        settings += [
            f"repair_bytes_per_s={rate}",
            f"repair_shards_max={args.shards_max}",
            f"repair_pgs_max={args.pgs_max}",
        ]
    return settings


async def one_run(
    name: str, rate: int | None, foreground: bool, args: argparse.Namespace, base: memoryview
) -> dict[str, Any]:
    cluster = DevCluster(Path(args.tmp), settings_for(args, rate), args.keep)
    CLUSTERS.append(cluster)
    record: dict[str, Any] = {
        "name": name,
        "settings": cluster.settings,
        "command": "atoll " + " ".join(cluster.command("DIR")[3:]),
        "foreground_during_repair": foreground,
        **load_and_others("before"),
    }
    meta: MetaClient | None = None
    try:
        say(f"{name}: starting {' '.join(cluster.settings)}")
        record["start_s"] = await asyncio.to_thread(cluster.start)
        say(f"{name}: up in {record['start_s']:.0f} s in {cluster.root}")
        meta = MetaClient(cluster.rpc_addresses())
        endpoints = [str(n["s3"]) for n in cluster.document["nodes"]]
        keys = (cluster.document["access_key"], cluster.document["secret_key"])
        objects = Objects(base)
        async with (
            LeanClient(endpoints, *keys) as writer,
            LeanClient([cluster.node(1)["s3"]], *keys) as reader,
        ):
            await writer.create_bucket(BUCKET, 60.0)
            total = int(args.gib * GIB)
            record["fill"] = await fill(
                writer, objects, total, args.object_mib * MIB, args.read_objects, args.fill_conc
            )
            f = record["fill"]
            say(
                f"{name}: wrote {f['objects']} objects, {f['bytes'] / GIB:.2f} GiB in"
                f" {f['seconds']:.0f} s ({f['mb_per_s']:.0f} MB/s), errors {f['errors'] or 0}"
            )
            if not objects.small:
                raise RuntimeError("no 1 MiB object was written: nothing to read")
            record["healthy_after_fill_s"], doc = await wait_healthy(meta, HEALTHY_TIMEOUT_S)
            record["used_bytes"] = sum(int(d["used_bytes"]) for d in doc["devices"])
            record["pools"] = doc["pools"]
            victim_devices = [d["id"] for d in doc["devices"] if d["node"] == args.victim]
            record["victim_used_bytes"] = sum(
                int(d["used_bytes"]) for d in doc["devices"] if d["id"] in victim_devices
            )
            say(f"{name}: healthy {record['healthy_after_fill_s']:.1f} s after the fill")
            record["quiet"] = await quiet_latency(
                reader, objects, args.read_conc, args.latency_s, cluster
            )
            q = record["quiet"]
            say(
                f"{name}: quiet GET 1 MiB c{args.read_conc}: p50 {q['p50_ms']:.1f} ms,"
                f" p99 {q['p99_ms']:.1f} ms, {q['gets']} GETs, errors {q['errors'] or 0}"
            )
            record["leader_before_kill"] = await leader_of(meta, cluster)
            doc = await status(meta)
            baseline = repaired_bytes(doc, args.victim) if doc else 0
            record["repaired_bytes_before_kill"] = baseline
            fg = Foreground(reader, objects, args.read_conc) if foreground else None
            record["victim"] = args.victim
            say(
                f"{name}: kill -9 node {args.victim} (pid {cluster.node(args.victim)['pid']};"
                f" meta leader: node {record['leader_before_kill']})"
            )
            cpu0 = cpu_now(cluster)
            killed = time.monotonic()
            cluster.kill(args.victim)
            if fg is not None:
                fg.start()
            try:
                record["repair"] = await watch_repair(
                    meta,
                    cluster,
                    args.victim,
                    killed,
                    baseline,
                    cpu0,
                    args.out_after + args.down_after + args.repair_timeout,
                )
            finally:
                if fg is not None:
                    await fg.stop()
            r = record["repair"]
            say(
                f"{name}: down {r['down_s']:.1f} s, out {r['out_s']:.1f} s, healthy"
                f" {r['healthy_s']:.1f} s after the kill; {r['repaired_bytes'] / MB:,.0f} MB"
                f" rebuilt: {r['repair_mb_per_s']:.1f} MB/s over out->healthy,"
                f" peak {r['peak_repair_bytes_per_s'] / MB:.1f} MB/s"
            )
            if fg is not None:
                record["during"] = phases(fg, killed, r)
                record["during"]["errors"] = dict(fg.errors)
                record["during"]["error_samples"] = fg.error_samples
                rep = record["during"]["repairing"]
                say(
                    f"{name}: GET during repair: p50 {rep['p50_ms']:.1f} ms, p99"
                    f" {rep['p99_ms']:.1f} ms ({rep['gets']} GETs); quiet p99 {q['p99_ms']:.1f} ms"
                )
            record["after"] = await status(meta)
    except Exception as err:
        record["failure"] = f"{type(err).__name__}: {err}"
        say(f"{name}: FAILED: {record['failure']}")
    finally:
        if meta is not None:
            with contextlib.suppress(Exception):
                await meta.close()
        await asyncio.to_thread(cluster.stop)
        record["log"] = cluster.log
        record.update(load_and_others("after"))
        say(f"{name}: stopped")
    if record.get("after"):
        after = record.pop("after")
        record["after"] = {
            k: after[k]
            for k in ("degraded_pgs", "bytes_to_repair", "repair_eta_s", "pgs", "degraded_reads")
        } | {"nodes": {str(n["id"]): (n["state"], n["repair"]) for n in after["nodes"]}}
    return record


def phases(fg: Foreground, killed: float, r: dict[str, Any]) -> dict[str, Any]:
    """The foreground GETs by the phase they started in: killed (not yet marked down),
    down (degraded reads, nothing rebuilt yet), repairing (out, until healthy)."""
    bounds = {
        "killed": (0.0, r["down_s"]),
        "down": (r["down_s"], r["out_s"]),
        "repairing": (r["out_s"], r["healthy_s"]),
    }
    out = {}
    for phase, (lo, hi) in bounds.items():
        chosen = [s for s in fg.samples if lo <= s.started - killed < hi]
        out[phase] = latency_summary(chosen, hi - lo) | r["cpu_by_phase"][phase]
    # Where in the repair the slow GETs were: p99 and max of each 5 s from out.
    lo, hi = bounds["repairing"]
    slices = []
    for start in range(0, max(1, math.ceil(hi - lo)), SLICE_S):
        chosen = [
            s.ms for s in fg.samples if s.ok and start <= s.started - killed - lo < start + SLICE_S
        ]
        if chosen:
            chosen.sort()
            p99 = chosen[min(len(chosen) - 1, math.ceil(0.99 * len(chosen)) - 1)]
            slices.append(
                {"from_s": start, "gets": len(chosen), "p99_ms": p99, "max_ms": chosen[-1]}
            )
    out["repairing"]["slices"] = slices
    return out


# -- the run -----------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    return s3_machine_info(clients=False) | {"tmp": disk_of(Path(tempfile.gettempdir()))}


def disk_of(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = df_line(path, 10)
        if lines:
            return " ".join(lines[-1].split())
    return ""


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    report = report_start(
        machine_info,
        {
            "quick": args.quick,
            "gib": args.gib,
            "object_mib": args.object_mib,
            "read_objects": args.read_objects,
            "fill_concurrency": args.fill_conc,
            "read_concurrency": args.read_conc,
            "latency_s": args.latency_s,
            "down_after_s": args.down_after,
            "out_after_s": args.out_after,
            "victim": args.victim,
            "repeats": args.repeats,
        },
    )
    report["runs"] = {}
    base = memoryview(random.Random(1).randbytes(BASE_BYTES))
    for name, rate, foreground in RUNS:
        if args.only and name != args.only:
            continue
        repeats = args.repeats if name == UNTHROTTLED else 1
        for n in range(repeats):
            run_name = name if n == 0 else f"{name}-{n + 1}"
            report["runs"][run_name] = await one_run(run_name, rate, foreground, args, base)
    report.update(load_and_others("after"))
    report["run_s"] = time.monotonic() - started
    report["verdicts"] = verdicts(report)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="0.3 GiB, short windows (smoke run)")
    parser.add_argument("--gib", type=float, help="GiB of objects written (default 3; quick 0.3)")
    parser.add_argument("--object-mib", type=int, default=8, help="size of the fill's objects")
    parser.add_argument(
        "--read-objects", type=int, help="1 MiB objects for the GETs (128; quick 32)"
    )
    parser.add_argument("--fill-conc", type=int, default=8, help="PUTs in flight during the fill")
    parser.add_argument("--read-conc", type=int, default=4, help="foreground GETs in flight")
    parser.add_argument("--latency-s", type=float, help="quiet GET window, s (20; quick 5)")
    parser.add_argument("--down-after", type=float, default=5.0, help="down_after_s")
    parser.add_argument("--out-after", type=float, default=20.0, help="out_after_s")
    parser.add_argument("--victim", type=int, default=4, choices=(2, 3, 4), help="node killed")
    parser.add_argument(
        "--repair-timeout", type=float, help="most s from out to healthy (600; quick 120)"
    )
    parser.add_argument("--tmp", default=tempfile.gettempdir(), help="where the clusters' data go")
    parser.add_argument("--keep", action="store_true", help="keep the clusters' dirs")
    parser.add_argument("--out", type=Path, help="the JSON (default bench/results/repair.json)")
    parser.add_argument("--report-only", type=Path, help="rewrite the report from this JSON")
    parser.add_argument(
        "--only", choices=[name for name, _, _ in RUNS], help="one kind of run only"
    )
    parser.add_argument(
        "--repeats", type=int, help="unthrottled runs, each on a fresh cluster (3; quick 1)"
    )
    parser.add_argument(
        "--shards-max",
        type=int,
        default=UNTHROTTLED_SHARDS,
        help="repair_shards_max of the unthrottled run",
    )
    parser.add_argument(
        "--pgs-max", type=int, default=UNTHROTTLED_PGS, help="repair_pgs_max of the unthrottled run"
    )
    parser.add_argument(
        "--profile", type=Path, help=f"py-spy the survivors for {PROFILE_S} s from out, into DIR"
    )
    args = parser.parse_args()
    global PROFILE
    PROFILE = args.profile
    if args.report_only:
        report = json.loads(args.report_only.read_text())
        args.report_only.with_suffix(".md").write_text(render(report))
        return 0
    quick = args.quick
    args.gib = args.gib if args.gib is not None else (0.3 if quick else 3.0)
    args.read_objects = args.read_objects or (32 if quick else 128)
    args.latency_s = args.latency_s or (5.0 if quick else 20.0)
    args.repair_timeout = args.repair_timeout or (120.0 if quick else 600.0)
    args.repeats = args.repeats or (1 if quick else 3)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.out is None:
        args.out = RESULTS / ("repair-quick.json" if quick else "repair.json")
    return run_main(_main(args), CLUSTERS)


async def _main(args: argparse.Namespace) -> int:
    cancel_on_sigterm()
    report = await run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_report(report, args.out, render)
    for v in report["verdicts"]:
        say(f"{v['what']}: {v['value']} (target {v['target']}): {_met(v['met'])}")
    failed = [n for n, r in report["runs"].items() if "failure" in r]
    return 1 if failed else 0


# -- the report --------------------------------------------------------------------------------


def verdicts(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The three targets of issue 6 §5, each with its figure and whether it is met
    (None when the run that measures it failed)."""
    runs = report["runs"]
    args = report["args"]
    out = []
    repairs = [r["repair"] for _, r in unthrottled_runs(runs)]
    rates = [r["repair_mb_per_s"] for r in repairs]
    rate = statistics.median(rates) if rates else None
    shown = _fmt(rate, 1)
    if len(rates) > 1:
        shown += f" (median of {len(rates)} runs: {', '.join(_fmt(x, 1) for x in rates)})"
    out.append(
        {
            "what": "unthrottled repair, MB/s of rebuilt shard data (out -> healthy)",
            "value": shown,
            "target": f">= {REPAIR_MB_PER_S_MIN:g}",
            "met": None if rate is None else rate >= REPAIR_MB_PER_S_MIN,
        }
    )
    limit = args["out_after_s"] + REDUNDANCY_SLACK_S
    # The slowest run: each of them must reach full redundancy in time.
    healthy = max((r["healthy_s"] for r in repairs), default=None)
    out.append(
        {
            "what": f"kill -9 to full verified redundancy, s, {args['gib']:g} GiB (unthrottled"
            + (f", slowest of {len(repairs)} runs)" if len(repairs) > 1 else ")"),
            "value": _fmt(healthy, 1),
            "target": f"<= out_after_s + {REDUNDANCY_SLACK_S:g} = {limit:g}"
            + ("" if args["gib"] >= 3 else " (set for 3 GiB)"),
            "met": None if healthy is None else healthy <= limit,
        }
    )
    limited = runs.get("default_limit", {})
    ratio = None
    if "during" in limited and "quiet" in limited:
        quiet = limited["quiet"]["p99_ms"]
        during = limited["during"]["repairing"]["p99_ms"]
        if not math.isnan(quiet) and not math.isnan(during) and quiet > 0:
            ratio = during / quiet
    out.append(
        {
            "what": "default limit: foreground GET p99 during repair / quiet p99",
            "value": "-" if ratio is None else f"{ratio:.2f}x",
            "target": f"<= {P99_RATIO_MAX:g}x",
            "met": None if ratio is None else ratio <= P99_RATIO_MAX,
        }
    )
    return out


def unthrottled_runs(runs: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every unthrottled run that finished, with its name, in run order (a failed run
    counts in none of the verdicts; the report says it failed)."""
    return [
        (name, r)
        for name, r in runs.items()
        if (name == UNTHROTTLED or name.startswith(UNTHROTTLED + "-")) and r.get("repair")
    ]


def median_unthrottled(runs: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The unthrottled run of the median rate (the lower middle one of an even count)."""
    named = sorted(unthrottled_runs(runs), key=lambda item: item[1]["repair"]["repair_mb_per_s"])
    return named[(len(named) - 1) // 2] if named else None


def bounds_section(run: dict[str, Any] | None, machine: dict[str, Any], name: str) -> list[str]:
    """What bounds the unthrottled rate: the cluster's CPU per rebuilt MB over the
    repairing phase of run `name` (the median one), and the rate the machine's CPUs
    would allow at that cost."""
    repair = (run or {}).get("repair") or {}
    if "cpu_by_phase" not in repair or not repair.get("repaired_bytes"):
        return []
    busy = repair["cpu_by_phase"]["repairing"]
    cluster_pct = float(busy["cluster_cpu_pct"])
    mb = repair["repaired_bytes"] / MB
    ms_per_mb = 10 * cluster_pct * repair["out_to_healthy_s"] / mb
    cpus = int(machine.get("nproc") or 1)
    ceiling = 1000 * cpus / ms_per_mb
    return [
        "## What bounds the unthrottled rate",
        "",
        f"- In the median run ({name}), from out to healthy the cluster's processes used {cluster_pct:.0f}% of a core"
        f" (others on the machine {float(busy['others_cpu_pct']):.0f}%) out of {cpus} vCPUs:"
        f" **{ms_per_mb:.1f} ms of CPU per rebuilt MB**. At that cost all {cpus} vCPUs"
        f" would rebuild at most {ceiling:.0f} MB/s, so the rate is bound by CPU, not by the"
        " disk or by the rate limits (off here).",
        "- Per rebuilt byte of a 4+2 shard the cluster reads k = 4 source shards from the page"
        " cache (each block's CRC-32C checked by the service that reads it): one on the"
        " rebuilding node, two on a second node, which combines them (`storage.combine_shards`,"
        " ISA-L) and sends their partial sum, and one on the third, sent as it is; so two"
        " streams cross loopback atoll.rpc (checked again on arrival). The rebuilding node"
        " sums the pieces by their decode coefficients (ISA-L), writes and fsyncs the"
        " rebuilt shard (its CRC-32C computed once), and reads it back verified; every PG"
        " whose members changed is listed on all its members by each node that holds a"
        " position of it (`storage.list_pgs`, 64 PGs per call). Python drives each of these"
        " steps (asyncio, thread-pool hand-offs) a block at a time (1 MiB at 4+2 with the"
        " default 4 MiB stripes) and the kernel copies every byte through the sockets and"
        " the page cache (perf -a for 8 s of an unthrottled repair, 2026-11-28, with partial"
        " sums, share of the machine's samples: 38% in the kernel, 9% of all in copies from the"
        " page cache and sockets; 43% in the Python interpreter; 5% CRC-32C; 4% ISA-L; 4%"
        " idle).",
        "- Fixed cost against cost per byte (2026-11-28, runs of 3, 0.3 and 0.02 GiB): about"
        " 3.4 CPU-seconds per repair whatever its size (listing 1,536 PGs on all six members"
        " by each of the three survivors, the index reads, the passes, the map and Raft"
        " changes; 15% of this 3 GiB run's CPU) and about 15 ms per rebuilt MB.",
        "- The end waits for the busiest node: the new positions of the killed node's PGs"
        " fall unevenly on the survivors (in one run 226, 236 and 279 shards), and a node"
        " rebuilds only its own positions.",
        "",
    ]


def render(report: dict[str, Any]) -> str:
    """repair.md from the run's JSON."""
    lines: list[str] = []
    add = lines.append
    args = report["args"]
    machine = report["machine"]
    runs = report["runs"]
    add("# Repair benchmark: kill -9 of a node, down, out, rebuilt")
    add("")
    add(
        f"{args['gib']:g} GiB of objects in the `standard` pool (4+2) of a 4-node `atoll dev`"
        " cluster (2 devices per node); one node killed with `kill -9` (issue 6 §5). Written"
        " by `bench/repair.py`; every figure, and every status poll, is in the JSON beside this"
        " file. MB is 10^6 bytes."
    )
    add("")
    if args["quick"]:
        add(
            "**Quick run (`--quick`)**: a smoke run of the script with a tenth of the data and"
            " short latency windows, not the result; the targets are set for 3 GiB."
        )
        add("")
    failed = {n: r["failure"] for n, r in runs.items() if "failure" in r}
    if failed:
        add(f"**Not a result**: {', '.join(failed)} failed (see Failures below).")
        add("")
    add("## Against the targets")
    add("")
    add("| Target | Measured | Needed | Met |")
    add("| --- | ---: | --- | --- |")
    for v in report.get("verdicts", []):
        add(f"| {v['what']} | {v['value']} | {v['target']} | {_met(v['met'])} |")
    add("")
    middle = median_unthrottled(runs)
    lines += bounds_section(middle[1] if middle else None, machine, middle[0] if middle else "")
    add("## Results")
    add("")
    add(
        "Times are seconds after the `kill -9`, as first seen by a status poll (every"
        f" {POLL_S:g} s). Rebuilt: the survivors' `repaired_bytes` (shard bytes written and"
        " read back verified) since just before the kill; MB/s is that over out -> healthy"
        " (which includes the passes that list every PG before the first byte moves and the"
        " heartbeats that report the last ones); out -> first byte: to the first poll that saw"
        " rebuilt bytes;"
        ' "while moving" is over the polls from the first that saw rebuilt bytes to the'
        " first that saw the final count. Peak rate: the highest `repair_bytes_per_s` of"
        " the status (the sum of the nodes' rates over their last 10 s)."
    )
    add("")
    add(
        "| Run | repair_bytes_per_s | down | out | healthy | out -> healthy | out -> first byte |"
        " Rebuilt MB |"
        " MB/s (out -> healthy) | MB/s while moving | Peak rate MB/s | Peak bytes_to_repair MB |"
        " Peak degraded PGs / PGs | Cluster % core (out -> healthy) | Others % core (out -> healthy) |"
    )
    add(
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        " ---: | ---: |"
    )
    for name, r in runs.items():
        rep = r.get("repair")
        limit = next(
            (s.split("=", 1)[1] for s in r["settings"] if s.startswith("repair_bytes_per_s")), None
        )
        limit_text = (
            "0 (no limit)"
            if limit == "0"
            else (limit or "default (32 MiB/s, 1 shard at once, per node)")
        )
        if rep is None:
            add(f"| {name} | {limit_text} | failed | | | | | | | | | | | | |")
            continue
        add(
            f"| {name} | {limit_text} | {rep['down_s']:.1f} | {rep['out_s']:.1f} |"
            f" **{rep['healthy_s']:.1f}** | {rep['out_to_healthy_s']:.1f} |"
            f" {_fmt(rep['moving_from_s'] - rep['out_s'], 1)} |"
            f" {rep['repaired_bytes'] / MB:,.0f} | **{_fmt(rep['repair_mb_per_s'], 1)}** |"
            f" {_fmt(rep['moving_mb_per_s'], 1)} | {rep['peak_repair_bytes_per_s'] / MB:,.1f} |"
            f" {rep['peak_bytes_to_repair'] / MB:,.0f} | {rep['peak_degraded_pgs']} / {rep['pgs']} |"
            f" {rep['cpu_by_phase']['repairing']['cluster_cpu_pct']:.0f} |"
            f" {rep['cpu_by_phase']['repairing']['others_cpu_pct']:.0f} |"
        )
    add("")
    add(
        f"Foreground GETs: whole 1 MiB objects (of {args['read_objects']} written), random keys,"
        f" {args['read_concurrency']} in flight, through node 1's gateway (the victim is node"
        f" {args['victim']}), each body compared with what was written. Quiet: {args['latency_s']:g} s"
        " on the healthy cluster before the kill. During: from the kill until healthy, each GET"
        " counted in the phase it started in. Latency is nearest-rank over the GETs that"
        " succeeded. CPU in % of one core over the phase: others is the rest of the machine"
        " (other users of this VM), which moves latency as much as repair does on 2 cores."
    )
    add("")
    add(
        "| Run | Phase | Seconds | GETs | Failed | GETs/s | p50 ms | p99 ms | max ms | p99 / quiet p99 |"
        " Cluster % core | Others % core |"
    )
    add("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in runs.items():
        if "quiet" not in r:
            continue
        quiet = r["quiet"]
        rows = [("quiet (healthy, before the kill)", quiet)]
        names = {
            "killed": "killed, not yet down",
            "down": "down (degraded reads)",
            "repairing": "out -> healthy (repair)",
        }
        rows += [(names[p], s) for p, s in r.get("during", {}).items() if p in names]
        for phase, s in rows:
            ratio = (
                s["p99_ms"] / quiet["p99_ms"]
                if quiet["p99_ms"]
                and not math.isnan(s["p99_ms"])
                and not math.isnan(quiet["p99_ms"])
                else math.nan
            )
            bold = phase.startswith("out")
            add(
                f"| {name} | {phase} | {s['seconds']:.1f} | {s['gets']:,} | {s['failed']} |"
                f" {_fmt(s['gets_per_s'])} | {_fmt(s['p50_ms'], 1)} |"
                f" {'**' if bold else ''}{_fmt(s['p99_ms'], 1)}{'**' if bold else ''} |"
                f" {_fmt(s['max_ms'], 1)} | {_fmt(ratio, 2)}x |"
                f" {_fmt(s.get('cluster_cpu_pct'))} | {_fmt(s.get('others_cpu_pct'))} |"
            )
    add("")
    add("## Setup")
    add("")
    for name, r in runs.items():
        add(f"- **{name}**: `{r['command']}`; up in {_fmt(r.get('start_s'))} s.")
        fill_ = r.get("fill")
        if fill_:
            add(
                f"  Fill: {fill_['objects']:,} objects ({fill_['read_objects']} of 1 MiB, the rest of"
                f" {args['object_mib']} MiB), {fill_['bytes'] / GIB:.2f} GiB in {fill_['seconds']:.0f} s"
                f" ({fill_['mb_per_s']:,.0f} MB/s, {fill_['concurrency']} PUTs in flight over the 4"
                f" gateways), errors: {fill_['errors'] or 0}; healthy"
                f" {_fmt(r.get('healthy_after_fill_s'), 1)} s after it; devices held"
                f" {r.get('used_bytes', 0) / GIB:.2f} GiB, the victim's"
                f" {r.get('victim_used_bytes', 0) / GIB:.2f} GiB."
            )
        if "leader_before_kill" in r:
            add(
                f"  Meta leader before the kill: node {r['leader_before_kill']}"
                + (
                    " (the victim: an election came first)"
                    if r["leader_before_kill"] == r.get("victim")
                    else ""
                )
                + f"; status polls unanswered after the kill: {r.get('repair', {}).get('unanswered_polls', '-')}."
            )
    add(
        "- **Client**: bench/s3.py's lean asyncio S3 client (SigV4 header auth, one keep-alive"
        " connection per request in flight), one process; objects are slices at random offsets of"
        f" one {BASE_BYTES // MIB} MiB random buffer. Status: the meta leader's status document"
        " (what `atoll status --json` prints) read in-process through `MetaClient`."
    )
    add(
        "- **CPU** (% of one core, from /proc): the cluster is `atoll dev` and every process"
        " under it; others is the rest of the machine (test runs of other users of this VM)."
    )
    add("")
    add("## Environment")
    add("")
    render_machine(report, runs, add, (f"- data on: {machine.get('tmp', '')}",))
    others = others_seen(report, runs)
    if others:
        add(f"- **other work on the machine** during the run ({len(others)} command lines seen):")
        for cmd in others[:8]:
            add(f"  - `{cmd}`")
    else:
        add("- no other test run or benchmark was seen at the start or end of any run")
    add(f"- platform: {machine['platform']}; python: {machine['python']}")
    if "event_loop" in machine:  # reports from before atoll.base.loop have none
        add(f"- Atoll's event loop: {machine['event_loop']}")
    add(f"- atoll git rev: {machine['atoll']}")
    add(f"- run time: {report['run_s']:.0f} s")
    add("")
    add("## Node logs")
    add("")
    for name, r in runs.items():
        log = r.get("log", {})
        if log.get("events"):
            add(f"{name}: node states, Raft membership and repair passes")
            add("")
            add("```")
            lines.extend(log["events"])
            add("```")
            add("")
        if log.get("counts"):
            add(
                f"{name}: warnings, errors and failed repair listings by kind (numbers and names"
                " blanked), with the first line of each"
            )
            add("")
            add("| Lines | Kind | First |")
            add("| ---: | --- | --- |")
            for c in log["counts"]:
                first = c["first"].replace("|", "\\|")
                kind = c["kind"].replace("|", "\\|")
                add(f"| {c['lines']:,} | `{kind}` | `{first[:300]}` |")
            add("")
    add("## Failures and errors")
    add("")
    anything = False
    for name, r in runs.items():
        if "failure" in r:
            anything = True
            render_failure(name, r["failure"], add)
        for what, part in (
            ("fill", r.get("fill")),
            ("quiet GETs", r.get("quiet")),
            ("GETs during", r.get("during")),
        ):
            if part and part.get("errors"):
                anything = True
                add(f"- {name} {what}: {part['errors']}")
                for s in part.get("error_samples", [])[:3]:
                    add(f"  - `{json.dumps(s)[:600]}`")
    if not anything:
        add("None: every run finished and every request succeeded.")
    add("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.exit(main())
