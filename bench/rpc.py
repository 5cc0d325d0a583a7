"""atoll.rpc loopback benchmark: small round trips/s and bulk MB/s; writes
bench/results/rpc.md.

The server runs in a child process (this script with `--serve`), the client here, so
each side has its own process and event loop, as two nodes would. Run with the
project installed or `PYTHONPATH=src`:

    python bench/rpc.py [--seconds 5] [--inflight 64]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SMALL_MESSAGE = b"m" * 64
BULK_PAYLOAD_BYTES = 4 * 1024 * 1024
BULK_INFLIGHT = 4

try:
    import atoll.rpc as rpc
except ImportError:  # not installed: use the checkout's src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import atoll.rpc as rpc


async def _echo(message: bytes, payload: bytes | memoryview) -> tuple[bytes, None]:
    return message, None


async def _sink(message: bytes, payload: bytes | memoryview) -> tuple[bytes, None]:
    return b"%d" % len(payload), None


async def serve() -> None:
    server = rpc.RpcServer({"echo": _echo, "sink": _sink}, "127.0.0.1", 0)
    await server.start()
    print(server.port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
    await server.stop()


async def _run_for(seconds: float, workers: int, call: object) -> tuple[int, float]:
    count = 0
    start = time.perf_counter()
    end = start + seconds

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < end:
            await call()  # type: ignore[operator]
            count += 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    return count, time.perf_counter() - start


async def measure(port: int, seconds: float, inflight: int) -> dict[str, float]:
    client = await rpc.RpcClient.connect("127.0.0.1", port)
    payload = os.urandom(BULK_PAYLOAD_BYTES)
    try:
        await _run_for(0.5, inflight, lambda: client.call("echo", SMALL_MESSAGE))  # warm up
        small, small_s = await _run_for(
            seconds, inflight, lambda: client.call("echo", SMALL_MESSAGE)
        )
        bulk, bulk_s = await _run_for(
            seconds, BULK_INFLIGHT, lambda: client.call("sink", b"", payload, timeout_s=60)
        )
    finally:
        await client.close()
    return {
        "small_calls": small,
        "small_per_s": small / small_s,
        "bulk_calls": bulk,
        "bulk_mb_per_s": bulk * BULK_PAYLOAD_BYTES / bulk_s / 1e6,
    }


def report(figures: dict[str, float], seconds: float, inflight: int, load: str) -> str:
    try:
        import grpc  # noqa: F401

        grpc_line = "grpcio installed, but the comparison is not written yet"
    except ImportError:
        grpc_line = "grpcio not installed, comparison not run"
    return f"""# atoll.rpc loopback benchmark

## Environment

- date (UTC): {datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
- nproc: {os.cpu_count()}
- load average before/after: {load} / {" ".join(f"{x:.2f}" for x in os.getloadavg())}
- python: {platform.python_implementation()} {platform.python_version()}
- platform: {platform.platform()}
- setup: server in a child process, client in this one, one TCP connection on 127.0.0.1, no TLS

## Results

| Workload | Parameters | Result |
| --- | --- | --- |
| small round trips | {len(SMALL_MESSAGE)}-byte message, empty reply, {inflight} in flight, {seconds:g} s | **{figures["small_per_s"]:,.0f} calls/s** ({figures["small_calls"]:,} calls) |
| bulk upload | {BULK_PAYLOAD_BYTES // (1024 * 1024)} MiB payload per call, {BULK_INFLIGHT} in flight, {seconds:g} s | **{figures["bulk_mb_per_s"]:,.0f} MB/s** ({figures["bulk_calls"]:,} calls) |

Targets (the Raft issue): ≥ 20,000 small round trips/s per process, ≥ 600 MB/s bulk.

gRPC (grpc.aio): {grpc_line}.
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", action="store_true", help="run the server side only")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS / "rpc.md")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve())
        return 0
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        figures = asyncio.run(measure(port, args.seconds, args.inflight))
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
    text = report(figures, args.seconds, args.inflight, load)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
