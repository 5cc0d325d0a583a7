"""The whole erasure-coded path through the storage service (issue 4 §5); writes
bench/results/erasure-service.md and erasure-service.json.

One storage node, as a process of its own: an `RpcServer` serving `StorageService`
over 6 device directories on the local disk (real fsyncs, this script with
`--serve`), and a client in this process over one atoll.rpc connection, as a gateway
would be. For 4+2 with 1 MiB stripes:

- PUT: `StripeCodec.encode` of each stripe and the CRC-32C of each of its 6 blocks
  (in a worker thread), then `put_shard` to the 6 devices in parallel (6 client
  streams, stripes pipelined); the service writes each shard file to a temporary
  file, fsyncs, renames and fsyncs the directory before it answers.
- GET healthy: `get_shard` of the 4 data shards in parallel (the service reads and
  verifies every block; the client checks every chunk's CRC-32C), then per stripe
  `StripeCodec.decode` joined into a stripe buffer (a copy, as a gateway assembling
  the response would make) and that stripe's CRC-32C compared with the original's.
- GET degraded: the same with data shards 0 and 1 missing: shards 2..5 are read and
  the two missing ones rebuilt by the codec.

Figures are MB/s of object data (10^6 bytes), the median of `--repetitions`; each
repetition writes a new object, reads it back both ways, then deletes it (untimed). CPU per MB is process CPU time (user + system, all
threads) of the client and of the server over the run, divided by the object's MB.
Baselines measured in the same run say what bounds the service path: the disk
(the same bytes written by 6 threads with the same fsyncs, no service) and the
client's CPU work alone (encode + CRC, decode + join + CRC, no I/O).

    PYTHONPATH=src python bench/erasure_service.py [--object-mib 128] [--repetitions 5] [--profile]

`measure_service(...)` is the function `bench/erasure.py` can call for its section.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import datetime
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import crc32c

try:
    import atoll.storage as storage
except ImportError:  # not installed: use the checkout's src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import atoll.storage as storage

from atoll.erasure import StripeCodec, StripeLayout
from atoll.rpc import RpcClient, RpcServer

RESULTS = Path(__file__).resolve().parent / "results"
K, M = 4, 2
BLOCK_BYTES = 1024 * 1024
DEVICES = K + M
EPOCH = 1
POOL_ID, PG = 1, 0
PIPELINE_STRIPES = 8  # stripes encoded ahead of the slowest put stream
MISSING = (0, 1)  # the data shards a degraded read does without
MB = 1e6
SERVER_START_TIMEOUT_S = 30.0

# -- the storage node (child process) ------------------------------------------------------


async def _serve(base: Path, ready_fd: int) -> None:
    devices = {i: storage.DeviceConfig(str(base / f"disk{i}")) for i in range(DEVICES)}
    service = storage.StorageService(
        devices,
        check_epoch=lambda epoch: None,
        on_device_failure=lambda device_id, err: print(f"device {device_id} failed: {err}"),
    )
    await service.start()
    server = RpcServer(
        service.rpc_handlers(),
        "127.0.0.1",
        0,
        client_stream_handlers=service.rpc_stream_handlers(),
    )
    await server.start()
    os.write(ready_fd, f"{server.port}\n".encode())
    os.close(ready_fd)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()
        await service.stop()


def serve_main(base: Path, ready_fd: int, parent_pid: int) -> int:
    from atoll.base.lifetime import die_with_parent

    die_with_parent(parent_pid)
    for i in range(DEVICES):
        (base / f"disk{i}").mkdir(parents=True, exist_ok=True)
    asyncio.run(_serve(base, ready_fd))
    return 0


@contextlib.contextmanager
def storage_node(base: Path) -> Any:
    """Start the node process on `base`; yields (pid, port)."""
    read_fd, write_fd = os.pipe()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    child = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            str(base),
            "--ready-fd",
            str(write_fd),
            "--parent-pid",
            str(os.getpid()),
        ],
        pass_fds=(write_fd,),
        env=env,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as ready:
            line = ready.readline()
        if not line:
            raise RuntimeError(f"the storage node exited with {child.wait(SERVER_START_TIMEOUT_S)}")
        yield child.pid, int(line)
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(SERVER_START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def process_cpu_s(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process `pid` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks  # utime, stime


def machine_cpu() -> tuple[int, int, int]:
    """(busy, iowait, total) jiffies of all CPUs so far, from /proc/stat: every
    process on the machine, other tenants included."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = values[3], values[4]
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal
    return total - idle - iowait, iowait, total


# -- the client paths ------------------------------------------------------------------------


class Encoder:
    """Encodes stripes of `data` in one worker thread (a StripeCodec is one thread's)."""

    def __init__(self, layout: StripeLayout, data: bytes) -> None:
        self.codec = StripeCodec(layout)
        self.view = memoryview(data)
        self.block = layout.block_size

    def stripe(self, index: int) -> list[tuple[bytes | memoryview, int]]:
        """The 6 blocks of stripe `index` with their CRC-32C. Data blocks are views of
        the object (which does not change); parity is copied out of the codec's
        reused buffers, since the transport may hold a block until its put returns."""
        shards = self.codec.encode(self.view[index * self.block : (index + 1) * self.block])
        out: list[tuple[bytes | memoryview, int]] = []
        for i, shard in enumerate(shards):
            block = shard if i < K else bytes(shard)
            out.append((block, crc32c.crc32c(block)))
        return out


async def put_object(
    client: storage.StorageClient,
    layout: StripeLayout,
    data: bytes,
    key: str,
    worker: concurrent.futures.Executor,
) -> None:
    loop = asyncio.get_running_loop()
    encoder = Encoder(layout, data)
    stripes = layout.stripe_count(len(data))
    queues: list[asyncio.Queue[tuple[bytes | memoryview, int] | None]] = [
        asyncio.Queue(PIPELINE_STRIPES) for _ in range(layout.n)
    ]

    async def produce() -> None:
        for index in range(stripes):
            blocks = await loop.run_in_executor(worker, encoder.stripe, index)
            for queue, block in zip(queues, blocks, strict=True):
                await queue.put(block)
        for queue in queues:
            await queue.put(None)

    async def blocks_of(i: int) -> AsyncIterator[tuple[bytes | memoryview, int]]:
        while (block := await queues[i].get()) is not None:
            yield block

    await asyncio.gather(
        produce(),
        *(
            client.put_shard(
                i,
                storage.ShardId(POOL_ID, PG, "bench", key, "", 0, i),
                layout,
                blocks_of(i),
                epoch=EPOCH,
                data_length=len(data),
            )
            for i in range(layout.n)
        ),
    )


async def delete_object(client: storage.StorageClient, layout: StripeLayout, key: str) -> None:
    for i in range(layout.n):
        shard = storage.ShardId(POOL_ID, PG, "bench", key, "", 0, i)
        if not await client.delete(i, shard, epoch=EPOCH):
            raise AssertionError(f"shard {i} of {key} was not stored")


class Decoder:
    """Decodes stripes in one worker thread into a reused stripe buffer and checks
    each against the original stripe's CRC-32C."""

    def __init__(self, layout: StripeLayout, data_length: int, stripe_crcs: list[int]) -> None:
        self.layout = layout
        self.codec = StripeCodec(layout)
        self.data_length = data_length
        self.stripe_crcs = stripe_crcs
        self.out = bytearray(layout.block_size)

    def stripe(self, index: int, shards: dict[int, memoryview]) -> None:
        length = self.layout.stripe_length(self.data_length, index)
        pieces = self.codec.decode(shards, length)
        target = memoryview(self.out)
        at = 0
        for piece in pieces:
            size = memoryview(piece).nbytes
            target[at : at + size] = piece
            at += size
        if crc32c.crc32c(target[:length]) != self.stripe_crcs[index]:
            raise AssertionError(f"stripe {index} decoded wrong")


async def get_object(
    client: storage.StorageClient,
    layout: StripeLayout,
    key: str,
    read: Sequence[int],
    data_length: int,
    stripe_crcs: list[int],
    worker: concurrent.futures.Executor,
) -> None:
    loop = asyncio.get_running_loop()
    decoder = Decoder(layout, data_length, stripe_crcs)
    async with contextlib.AsyncExitStack() as stack:
        streams = {
            i: await stack.enter_async_context(
                contextlib.aclosing(
                    client.get_shard(
                        i, storage.ShardId(POOL_ID, PG, "bench", key, "", 0, i), epoch=EPOCH
                    )
                )
            )
            for i in read
        }
        for index in range(layout.stripe_count(data_length)):
            # A whole-shard read comes one block per chunk.
            shards = {i: await anext(stream) for i, stream in streams.items()}
            await loop.run_in_executor(worker, decoder.stripe, index, shards)


# -- baselines (no service) ------------------------------------------------------------------


def disk_baseline(base: Path, layout: StripeLayout, data: bytes) -> float:
    """Seconds to write the object's 6 shard files' bytes (as 1 MiB-stripe blocks)
    from 6 threads, each file fsynced, renamed and its directory fsynced, as the
    service does: what the disk allows."""
    shard_bytes = layout.shard_data_bytes(len(data))
    block = memoryview(data)[: layout.full_shard_bytes]

    def write(i: int) -> None:
        directory = base / f"disk{i}"
        directory.mkdir(parents=True, exist_ok=True)
        temp, final = directory / ".baseline.tmp", directory / "baseline"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            left = shard_bytes
            while left:
                left -= os.write(fd, block[: min(left, len(block))])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, final)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        final.unlink()

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(layout.n) as pool:
        list(pool.map(write, range(layout.n)))
    return time.perf_counter() - start


def cpu_baselines(layout: StripeLayout, data: bytes, stripe_crcs: list[int]) -> dict[str, float]:
    """MB/s of the client's own work with no I/O: encode + parity copy + 6 CRCs per
    stripe, and decode (2 missing) + join + CRC, one thread."""
    stripes = layout.stripe_count(len(data))
    encoder = Encoder(layout, data)
    start = time.perf_counter()
    encoded = [encoder.stripe(index) for index in range(stripes)]
    encode_s = time.perf_counter() - start
    decoder = Decoder(layout, len(data), stripe_crcs)
    start = time.perf_counter()
    for index, blocks in enumerate(encoded):
        decoder.stripe(
            index,
            {i: memoryview(blocks[i][0]) for i in range(layout.n) if i not in MISSING},
        )
    decode_s = time.perf_counter() - start
    return {
        "encode_crc_mb_s": len(data) / MB / encode_s,
        "decode_join_crc_mb_s": len(data) / MB / decode_s,
    }


# -- the measurement -------------------------------------------------------------------------


async def _timed(
    what: str, run: Any, server_pid: int, object_bytes: int, log: list[str]
) -> dict[str, float]:
    client0, server0, machine0 = os.times(), process_cpu_s(server_pid), machine_cpu()
    start = time.perf_counter()
    await run
    wall = time.perf_counter() - start
    client1, server1, machine1 = os.times(), process_cpu_s(server_pid), machine_cpu()
    client_cpu = (client1.user - client0.user) + (client1.system - client0.system)
    server_user, server_sys = (server1[0] - server0[0]), (server1[1] - server0[1])
    busy, iowait, total = (b - a for a, b in zip(machine0, machine1, strict=True))
    mb = object_bytes / MB
    log.append(f"{what}: {mb / wall:.0f} MB/s in {wall:.2f}s")
    return {
        "wall_s": wall,
        "mb_s": mb / wall,
        "client_cpu_ms_per_mb": client_cpu * 1000 / mb,
        "server_cpu_ms_per_mb": (server_user + server_sys) * 1000 / mb,
        "client_cpu_utilisation": client_cpu / wall,
        "server_cpu_utilisation": (server_user + server_sys) / wall,
        "server_system_share": server_sys / max(server_user + server_sys, 1e-9),
        "machine_busy": busy / max(total, 1),
        "machine_iowait": iowait / max(total, 1),
    }


PROFILE_S = 6
# Frames where a thread waits rather than works (py-spy's idle detection does not see
# these as idle): the executor's queue, the event loop's poll, the parent watchdog.
WAITING_FRAMES = (
    "concurrent/futures/thread.py:81",
    "selectors.py:",
    "lifetime.py:",
    "threading.py:",
)


async def _profile_phase(
    pid: int, raw: Path, phase: Callable[[], Awaitable[None]]
) -> list[tuple[str, float]]:
    """Run `phase` over and over while py-spy samples the server; its busiest frames."""
    spy = _start_py_spy(pid, raw)
    if spy is None:
        return []
    while spy.poll() is None:
        await phase()
    return top_frames(raw)


def _start_py_spy(pid: int, raw: Path) -> subprocess.Popen[bytes] | None:
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        return None
    return subprocess.Popen(
        [str(py_spy), "record", "--pid", str(pid), "--duration", str(PROFILE_S),
         "--format", "raw", "--output", str(raw), "--nonblocking", "--threads"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def measure_service(
    *,
    object_bytes: int = 128 * 1024 * 1024,
    repetitions: int = 5,
    base_dir: str | None = None,
    profile: bool = False,
    seed: int = 1,
) -> dict[str, Any]:
    """Run PUT, GET healthy and GET degraded `repetitions` times on a fresh node
    process over 6 device directories under `base_dir` (default: the system's
    temporary directory, on the local disk); returns every figure."""
    layout = StripeLayout(K, M, BLOCK_BYTES)
    data = random.Random(seed).randbytes(object_bytes)
    stripe_crcs = [
        crc32c.crc32c(data[i : i + BLOCK_BYTES]) for i in range(0, object_bytes, BLOCK_BYTES)
    ]
    base = Path(tempfile.mkdtemp(prefix="atoll-bench-storage-", dir=base_dir))
    log: list[str] = []
    runs: dict[str, list[dict[str, float]]] = {"put": [], "get_healthy": [], "get_degraded": []}
    profiles: dict[str, list[tuple[str, float]]] = {}
    try:
        with (
            storage_node(base) as (pid, port),
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="coder") as worker,
        ):
            rpc = await RpcClient.connect("127.0.0.1", port)
            client = storage.StorageClient(rpc, timeout_s=60.0)
            try:
                # Warm-up: connections, code paths, the codec's tables.
                await put_object(client, layout, data[: 8 * BLOCK_BYTES], "warm", worker)
                healthy = list(range(K))
                degraded = [i for i in range(K + M) if i not in MISSING]
                for rep in range(repetitions):
                    key = f"object-{rep}"
                    runs["put"].append(
                        await _timed(
                            f"put {rep}",
                            put_object(client, layout, data, key, worker),
                            pid,
                            object_bytes,
                            log,
                        )
                    )
                    for name, read in (("get_healthy", healthy), ("get_degraded", degraded)):
                        runs[name].append(
                            await _timed(
                                f"{name} {rep}",
                                get_object(
                                    client, layout, key, read, object_bytes, stripe_crcs, worker
                                ),
                                pid,
                                object_bytes,
                                log,
                            )
                        )
                    devices = await client.devices()
                    # Not timed: free the object's space (and its page cache) so every
                    # repetition starts from the same state.
                    await delete_object(client, layout, key)
                if profile:
                    profiles["put"] = await _profile_phase(
                        pid,
                        base / "put.raw.txt",
                        lambda: put_object(client, layout, data, "profiled", worker),
                    )
                    profiles["get_degraded"] = await _profile_phase(
                        pid,
                        base / "get.raw.txt",
                        lambda: get_object(
                            client, layout, "profiled", degraded, object_bytes, stripe_crcs, worker
                        ),
                    )
            finally:
                await rpc.close()
        disk_s = [disk_baseline(base / "baseline", layout, data) for _ in range(3)]
        cpu = cpu_baselines(layout, data, stripe_crcs)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    summary = {
        name: {field: statistics.median(run[field] for run in values) for field in values[0]}
        for name, values in runs.items()
    }
    return {
        "profile": f"{K}+{M}",
        "block_bytes": BLOCK_BYTES,
        "object_bytes": object_bytes,
        "repetitions": repetitions,
        "summary": summary,
        "runs": runs,
        "baselines": {
            "disk_write_fsync_mb_s": statistics.median(object_bytes / MB / s for s in disk_s),
            **cpu,
        },
        "device_used_bytes": [d.used_bytes for d in devices],
        "profiles": profiles,
        "log": log,
    }


# -- report ----------------------------------------------------------------------------------


def top_frames(raw_path: Path, count: int = 10) -> list[tuple[str, float]]:
    """The frames most often on top of a working thread's stack in a py-spy raw file,
    as (frame, share of the working samples); first ("(waiting)", share of all
    samples spent waiting)."""
    totals: dict[str, int] = {}
    samples = waiting = 0
    if not raw_path.exists():
        return []
    for line in raw_path.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        frame = stack.split(";")[-1]
        samples += int(number)
        if any(marker in frame for marker in WAITING_FRAMES):
            waiting += int(number)
            continue
        totals[frame] = totals.get(frame, 0) + int(number)
    working = samples - waiting
    if not working:
        return []
    ranked = sorted(totals.items(), key=lambda item: -item[1])[:count]
    return [("(waiting)", waiting / samples)] + [(frame, n / working) for frame, n in ranked]


def service_markdown(result: dict[str, Any]) -> str:
    """The section's Markdown (also for bench/erasure.py's report)."""
    s = result["summary"]
    b = result["baselines"]
    rows = [
        ("PUT: encode + CRC + put_shard x6 (fsync)", s["put"]),
        ("GET healthy: get_shard x4 + verify + join", s["get_healthy"]),
        ("GET degraded: get_shard x4 (0, 1 missing) + verify + decode", s["get_degraded"]),
    ]
    table = "\n".join(
        f"| {name} | **{r['mb_s']:,.0f}** | {r['client_cpu_ms_per_mb']:.2f} | "
        f"{r['server_cpu_ms_per_mb']:.2f} ({r['server_system_share']:.0%} kernel) | "
        f"{r['client_cpu_utilisation']:.2f} | {r['server_cpu_utilisation']:.2f} | "
        f"{r['machine_busy']:.0%} / {r['machine_iowait']:.0%} |"
        for name, r in rows
    )
    spread = "\n".join(
        f"- {name}: " + ", ".join(f"{run['mb_s']:,.0f}" for run in result["runs"][name])
        for name in ("put", "get_healthy", "get_degraded")
    )
    mib = result["object_bytes"] // (1024 * 1024)
    return f"""## Storage service path ({result["profile"]}, {result["block_bytes"] // 1024} KiB blocks, {mib} MiB objects)

| Path | MB/s of object data | client CPU ms/MB | server CPU ms/MB | client cores | server cores | machine busy / iowait |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
{table}

Medians of {result["repetitions"]} repetitions (each a new object, deleted after its GETs). CPU is user + system
time of each process over the run; "machine busy" is the share of all CPUs' time that
anything on the machine (other tenants included) was running, from /proc/stat.
Every run, MB/s:

{spread}

Baselines in the same run (no service, no network):

| Work | MB/s of object data |
| --- | ---: |
| disk: the 6 shard files' bytes written by 6 threads, fsync + rename + directory fsync | {b["disk_write_fsync_mb_s"]:,.0f} |
| client CPU alone: encode + parity copy + 6 CRC-32C per stripe, one thread | {b["encode_crc_mb_s"]:,.0f} |
| client CPU alone: decode (2 missing) + join + CRC-32C, one thread | {b["decode_join_crc_mb_s"]:,.0f} |
"""


def profile_markdown(result: dict[str, Any]) -> str:
    parts = []
    for phase, frames in result["profiles"].items():
        if not frames:
            continue
        (_, waiting), busy = frames[0], frames[1:]
        rows = "\n".join(f"| `{frame}` | {share:.1%} |" for frame, share in busy)
        parts.append(
            f"""
Server profile during back-to-back `{phase}` runs ({PROFILE_S} s of py-spy, all threads;
{waiting:.0%} of samples were threads waiting, the rest is split below):

| Frame on top of a working thread's stack | Share |
| --- | ---: |
{rows}
"""
        )
    return "".join(parts)


def environment(load_before: tuple[float, float, float]) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
    }


def markdown(env: dict[str, Any], result: dict[str, Any], bounds: str) -> str:
    load = (
        " ".join(f"{x:.2f}" for x in env["load_before"])
        + " / "
        + " ".join(f"{x:.2f}" for x in env["load_after"])
    )
    return f"""# Erasure-coded path through the storage service

Written by `bench/erasure_service.py` (issue 4 §5); every figure is in
`erasure-service.json` beside this file.

## Environment

- date (UTC): {env["date"]}
- nproc: {env["nproc"]}
- load average before/after: {load}
- python: {env["python"]}
- platform: {env["platform"]}
- setup: one storage node process (`RpcServer` + `StorageService`, 6 device directories
  under the system's temporary directory on the local ext4 disk, every shard file
  fsynced, renamed, directory fsynced) and the client in this process, one atoll.rpc
  connection on 127.0.0.1. The client encodes and decodes in one worker thread.
  GETs read files just written, so they come from the page cache, not the disk.

{service_markdown(result)}{profile_markdown(result)}
## What bounds it

{bounds}
"""


def bounds_text(result: dict[str, Any]) -> str:
    """What this run's figures say about the bound (every number derived from them)."""
    s, b = result["summary"], result["baselines"]
    put, disk = s["put"], b["disk_write_fsync_mb_s"]
    lines = [
        f"- **PUT** ran at {put['mb_s']:,.0f} MB/s, {put['mb_s'] / disk:.0%} of what the disk "
        f"took for the same bytes with the same fsyncs and no service ({disk:,.0f} MB/s). "
        f"Meanwhile the server process used {put['server_cpu_utilisation']:.2f} cores "
        f"({put['server_system_share']:.0%} of it in the kernel), the client "
        f"{put['client_cpu_utilisation']:.2f}, and the machine's CPUs were "
        f"{put['machine_busy']:.0%} busy ({put['machine_iowait']:.0%} iowait).",
    ]
    for name, label in (("get_healthy", "GET healthy"), ("get_degraded", "GET degraded")):
        r = s[name]
        lines.append(
            f"- **{label}** ran at {r['mb_s']:,.0f} MB/s with the server at "
            f"{r['server_cpu_utilisation']:.2f} cores ({r['server_system_share']:.0%} kernel), "
            f"the client at {r['client_cpu_utilisation']:.2f}, the machine "
            f"{r['machine_busy']:.0%} busy."
        )
    for phase, frames in result["profiles"].items():
        if len(frames) > 1:
            top = ", ".join(f"`{frame.split(' ')[0]}` {share:.0%}" for frame, share in frames[1:4])
            lines.append(f"- Where the server's working threads were during `{phase}`: {top}.")
    kernel = statistics.mean(s[name]["server_system_share"] for name in s)
    lines.append(
        "- Per byte of object data the server copies 1.5 bytes (4+2) from the socket into "
        "its buffers and 1.5 into the page cache on PUT, and checksums them twice (the "
        "sender's CRC, then the file's); on GET it reads 1 byte from the page cache, "
        "checksums it and copies it into the socket. Kernel time, where those copies run, "
        f"was {kernel:.0%} of the server's CPU time (mean of the three paths)."
    )
    ceilings = ", ".join(
        f"{label} {1000 / s[name]['server_cpu_ms_per_mb']:,.0f}"
        for name, label in (
            ("put", "PUT"),
            ("get_healthy", "GET"),
            ("get_degraded", "degraded GET"),
        )
    )
    lines.append(
        f"- At these CPU costs one core of server time carries about: {ceilings} MB/s "
        f"(and the client's {s['put']['client_cpu_ms_per_mb']:.2f} ms/MB on PUT, "
        f"{s['get_healthy']['client_cpu_ms_per_mb']:.2f} on GET, come on top on the same machine)."
    )
    busiest = max(r["machine_busy"] for r in s.values())
    if busiest >= 0.9:
        lines.append(
            f"- The machine's CPUs were {min(r['machine_busy'] for r in s.values()):.0%}-"
            f"{busiest:.0%} busy during the paths: with client, server and other tenants on "
            f"{os.cpu_count()} CPUs, these runs were CPU-bound, not disk-bound."
        )
    lines.append(
        f"- The client's coding work alone runs at {b['encode_crc_mb_s']:,.0f} MB/s (encode "
        f"+ CRC) and {b['decode_join_crc_mb_s']:,.0f} MB/s (decode + join + CRC) on one "
        "thread, several times the service path: the codec is not the bound."
    )
    return "\n".join(lines)


async def _main_async(args: argparse.Namespace) -> int:
    load_before = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    result = await measure_service(
        object_bytes=args.object_mib * 1024 * 1024,
        repetitions=args.repetitions,
        profile=args.profile,
    )
    for line in result["log"]:
        print(line)
    env = environment(load_before)
    text = markdown(env, result, bounds_text(result))
    (RESULTS / "erasure-service.md").write_text(text)
    (RESULTS / "erasure-service.json").write_text(
        json.dumps({"environment": env, **result}, indent=2) + "\n"
    )
    print(text)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--object-mib", type=int, default=128)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="py-spy the server (last run)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve_main(Path(args.serve), args.ready_fd, args.parent_pid)
    return asyncio.run(_main_async(args))


if __name__ == "__main__":
    sys.exit(main())
