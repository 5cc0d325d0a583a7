"""One client process of the KV benchmark (bench/kv.py starts several at once): the
same harness for Atoll and etcd, gRPC unary calls through grpc.aio with pre-serialized
request bytes and no (de)serializers, so neither system pays for a protobuf library on
the client. Does network I/O.

Both systems take the same request bytes: Atoll's `PutRequest` and etcd's `PutRequest`
are `key = 1, value = 2`; Atoll's `GetRequest` and etcd's `RangeRequest` are `key = 1`
with `serializable` (2 in Atoll, 7 in etcd) left false, so both reads are linearizable
(proto/atoll/kv.proto; etcd api/etcdserverpb/rpc.proto).

Protocol with bench/kv.py: the spec is a JSON argument; the process connects, prints
`ready`, waits for a line on stdin, runs (a warm-up, then the measured window; or, in
`load` mode, one put of each of its keys), and prints one JSON line of results:

    python bench/kv_client.py '{"system": "atoll", "op": "put", "target": "127.0.0.1:7101", ...}'
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

try:
    from atoll.proto import kv_pb2
except ImportError:  # not installed: use the checkout's src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from atoll.proto import kv_pb2

KEY_BYTES = 16
VALUE_BYTES = 256
KEY_FORMAT = b"bench-k-%08d"  # 16 bytes for indexes below 10**8
CONNECT_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 10.0
# After a failed call the coroutine waits this long, so an error does not become a
# tight loop that steals CPU from the servers.
ERROR_BACKOFF_S = 0.01
GO_TIMEOUT_S = 120.0
ATOLL_ERROR_METADATA_KEY = "atoll-kv-error-bin"

METHODS = {
    ("atoll", "put"): "/atoll.kv.v1.KV/Put",
    ("atoll", "get"): "/atoll.kv.v1.KV/Get",
    ("etcd", "put"): "/etcdserverpb.KV/Put",
    ("etcd", "get"): "/etcdserverpb.KV/Range",
}


@dataclass(frozen=True)
class Spec:
    system: str  # atoll | etcd
    op: str  # put | get | load (one put of each of this process's keys, unmeasured)
    target: str  # host:port of the endpoint every call goes to
    inflight: int  # calls in flight in this process
    process: int  # this process's index among `processes`
    processes: int
    keys: int  # the key space: indexes 0 .. keys-1
    warm_up_s: float
    duration_s: float
    seed: int


# -- wire encoding (protobuf, written by hand) -----------------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited(field_number: int, data: bytes) -> bytes:
    """One field of wire type 2 (bytes, string, message)."""
    return varint(field_number << 3 | 2) + varint(len(data)) + data


def key_of(index: int) -> bytes:
    key = KEY_FORMAT % index
    if len(key) != KEY_BYTES:
        raise ValueError(f"key index {index} does not make a {KEY_BYTES}-byte key")
    return key


def put_request(key: bytes, value: bytes) -> bytes:
    return length_delimited(1, key) + length_delimited(2, value)


def get_request(key: bytes) -> bytes:
    return length_delimited(1, key)


def value_of(rng: random.Random) -> bytes:
    return rng.randbytes(VALUE_BYTES)


def requests_for(spec: Spec) -> list[bytes]:
    """Puts: this process's share of the key space (every `processes`-th key), each with
    its own random value; gets: the whole key space in a seeded random order."""
    rng = random.Random(spec.seed * 1_000_003 + spec.process)
    if spec.op in ("put", "load"):
        mine = range(spec.process, spec.keys, spec.processes)
        return [put_request(key_of(i), value_of(rng)) for i in mine]
    order = list(range(spec.keys))
    rng.shuffle(order)
    return [get_request(key_of(i)) for i in order]


# -- the run ---------------------------------------------------------------------------------


def error_name(err: grpc.aio.AioRpcError) -> str:
    """The gRPC status, and for Atoll the KvError code beside it: `UNAVAILABLE/NOT_LEADER`."""
    name = err.code().name
    for key, value in err.trailing_metadata() or ():
        if key == ATOLL_ERROR_METADATA_KEY and isinstance(value, bytes):
            code = kv_pb2.KvError.FromString(value).code
            name += "/" + kv_pb2.KvError.Code.Name(code)
    return name


def cpu_s() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


class Run:
    def __init__(self, spec: Spec, call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]) -> None:
        self.spec = spec
        self.call = call
        self.requests = requests_for(spec)
        self.latencies_us: list[int] = []
        self.errors: Counter[str] = Counter()
        self.warm_up_errors: Counter[str] = Counter()
        self.ok = 0
        self.short_replies = 0  # gets whose reply cannot hold the value: a missing key

    async def measure(self) -> dict[str, Any]:
        spec = self.spec
        window_start = time.perf_counter() + spec.warm_up_s
        window_end = window_start + spec.duration_s
        cpu: list[tuple[float, float]] = []

        async def sampler() -> None:
            await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
            cpu.append(cpu_s())
            await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
            cpu.append(cpu_s())

        async def caller(first: int) -> None:
            requests, n = self.requests, len(self.requests)
            check_value = spec.op == "get"
            i = first
            while (start := time.perf_counter()) < window_end:
                request = requests[i % n]
                i += spec.inflight
                try:
                    reply = await self.call(request, timeout=REQUEST_TIMEOUT_S)
                except grpc.aio.AioRpcError as err:
                    end = time.perf_counter()
                    if window_start <= end <= window_end:
                        self.errors[error_name(err)] += 1
                    elif end < window_start:
                        self.warm_up_errors[error_name(err)] += 1
                    await asyncio.sleep(ERROR_BACKOFF_S)
                    continue
                end = time.perf_counter()
                if window_start <= end <= window_end:
                    if check_value and len(reply) <= VALUE_BYTES:
                        self.short_replies += 1
                    self.ok += 1
                    self.latencies_us.append(round((end - start) * 1e6))

        await asyncio.gather(sampler(), *(caller(k) for k in range(spec.inflight)))
        (user0, sys0), (user1, sys1) = cpu
        return {
            "ok": self.ok,
            "errors": dict(self.errors),
            "warm_up_errors": dict(self.warm_up_errors),
            "short_replies": self.short_replies,
            "window_s": window_end - window_start,
            "cpu_user_s": user1 - user0,
            "cpu_sys_s": sys1 - sys0,
            "latencies_us": self.latencies_us,
        }

    async def load(self) -> dict[str, Any]:
        """Put each of this process's keys once (so that gets find them)."""
        pending = iter(self.requests)

        async def caller() -> None:
            for request in pending:
                try:
                    await self.call(request, timeout=REQUEST_TIMEOUT_S)
                    self.ok += 1
                except grpc.aio.AioRpcError as err:
                    self.errors[error_name(err)] += 1

        start = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(self.spec.inflight)))
        return {"ok": self.ok, "errors": dict(self.errors), "seconds": time.perf_counter() - start}


async def run(spec: Spec) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    async with grpc.aio.insecure_channel(spec.target) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]
        method = METHODS[(spec.system, "put" if spec.op == "load" else spec.op)]
        call = channel.unary_unary(method)
        bench = Run(spec, call)
        await asyncio.wait_for(channel.channel_ready(), CONNECT_TIMEOUT_S)
        print("ready", flush=True)
        go = await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), GO_TIMEOUT_S)
        if not go:  # the parent went away
            return {"aborted": True}
        result = await (bench.load() if spec.op == "load" else bench.measure())
    result["spec"] = asdict(spec)
    return result


def main() -> int:
    spec = Spec(**json.loads(sys.argv[1]))
    result = asyncio.run(run(spec))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_total_s"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
