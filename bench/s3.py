"""S3 benchmark (issue 5 §6): PUT and GET of 4 KiB objects (ops/s) and 64 MiB objects
(MB/s) at concurrency 1, 16 and 64, with p50/p99 latency and the client's own CPU per
operation, against Atoll's dev cluster (3 nodes x 2 devices, default pool), OpenStack
Swift with s3api and Ceph RGW, all on this machine and started by this script in the
same run; the local disk's fsync'd sequential write speed is the ceiling. Then py-spy
profiles of Atoll's node processes during extra small and large PUT and GET cells,
with each thread's and child process's CPU from /proc. Writes bench/results/s3.md,
s3.json and the folded profiles (s3-profile-*.txt).

The client is one lean asyncio process, because boto3 costs about 4 ms of CPU per
small request and would be the bottleneck on two cores: SigV4 header auth through
atoll.gateway.sigv4's canonical functions with UNSIGNED-PAYLOAD, over a minimal
HTTP/1.1 protocol on asyncio transports with one keep-alive connection per request in
flight. aiohttp's client (`AiohttpHttp`, the same calls) costs about twice the CPU per
small request; one GET cell per target runs through it too, as a calibration. At
start-up, per target, the lean client is checked against boto3: objects it PUTs read
back through boto3 with the same sha256, and the other way round; and the lean
signer's signature equals `sign_request`'s.

The targets run one at a time (started, checked, measured, stopped), so that an idle
peer (Ceph's monitor, manager and OSDs) does not take CPU from the one being measured.
Large bodies stream from one shared buffer in 1 MiB writes under the transport's flow
control (never a copy per request), and large GETs are counted as they arrive, not
kept. Every wait is bounded; every process the script starts is stopped at the end,
on failure and on Ctrl-C or SIGTERM too. Run as root with the project installed
(`pip install -e '.[dev,bench]'`: boto3 and py-spy) or `PYTHONPATH=src`; the peer
scripts install their Debian packages if they are missing. A full run takes about 15
minutes:

    python bench/s3.py [--seconds 10] [--only atoll|swift|ceph] [--quick]
    python bench/s3.py --report-only bench/results/s3.json [--notes NOTES.md]  # rewrite s3.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import hashlib
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

try:
    from atoll.base import loop as event_loop
    from atoll.gateway import sigv4
except ImportError:  # not installed: use the checkout's src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from atoll.base import loop as event_loop
    from atoll.gateway import sigv4

from kv_clusters import (
    PROBE_LABEL,
    command_line,
    descendants,
    machine_cpu_s,
    machine_probe,
    probe_text,
    tree_cpu_s,
)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
PEERS_DIR = ROOT.parent / "shared" / "peers"
TARGETS = ("atoll", "swift", "ceph")
OPS = ("put", "get")
CONCURRENCIES = (1, 16, 64)
KIB, MIB, GIB = 1024, 1024 * 1024, 1024 * 1024 * 1024
MB = 1e6
SIZES = {"4KiB": 4 * KIB, "64MiB": 64 * MIB}
SMALL, LARGE = "4KiB", "64MiB"
CHUNK_BYTES = 1 * MIB  # a large body is streamed and read in pieces of this size
REGION = "us-east-1"
BUCKET = "s3bench"
ERROR_PAUSE_S = 0.05  # a worker waits this long after a failed request
ERROR_SAMPLES_MAX = 5  # failed requests kept, with their reply, per cell
SMALL_REQUEST_TIMEOUT_S = 30.0
LARGE_REQUEST_TIMEOUT_S = 600.0
DRAIN_TIMEOUT_S = 600.0  # after a cell's deadline, for requests in flight to finish
CHECK_TIMEOUT_S = 120.0
CONNECT_TIMEOUT_S = 10.0
ATOLL_START_TIMEOUT_S = 150.0
ATOLL_STOP_TIMEOUT_S = 60.0
PEER_START_TIMEOUT_S = 900.0  # includes an apt-get install on a fresh machine
PEER_STOP_TIMEOUT_S = 120.0
CEPH_GC_TIMEOUT_S = 300.0
DISK_CEILING_BYTES = 1 * GIB
DISK_CHUNK_BYTES = 8 * MIB
DISK_RUNS = 3  # at the start of the run, and 2 more at its end
PROFILE_RATE_HZ = 50  # 100 Hz on three nodes took 90% of a core and set off elections
PROFILE_SECONDS = 10.0
PROFILE_TOP = 12
# Before each cell, wait (at most `--quiet-wait` seconds) until the rest of the machine
# (other users of this shared VM) uses less than this much CPU, in % of one core.
QUIET_OTHERS_PCT = 30.0
QUIET_SAMPLE_S = 1.0
CALIBRATION = (SMALL, 16)  # the GET cell also run through aiohttp's client
PROFILE_PLAN = (("put", SMALL, 64), ("get", SMALL, 64), ("put", LARGE, 16), ("get", LARGE, 16))
QUICK_SECONDS, QUICK_WARM_UP_S = 2.0, 1.0
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


# -- signing -----------------------------------------------------------------------------------


class Signer:
    """SigV4 header auth for the lean client: `atoll.gateway.sigv4`'s canonical request,
    string to sign and signing key, over three signed headers (host,
    x-amz-content-sha256, x-amz-date), with the date, scope and key recomputed once a
    second instead of per request. `check_signer` compares it with `sign_request`."""

    SIGNED = ("host", "x-amz-content-sha256", "x-amz-date")

    def __init__(self, access_key: str, secret_key: str, clock: Callable[[], float]) -> None:
        self._access_key = access_key
        self._secret_key = secret_key
        self._clock = clock
        self._keys = sigv4.SigningKeyCache(4)
        self._second = -1
        self._amz_date = ""
        self._scope = sigv4.CredentialScope("19700101", REGION)
        self._key = b""
        self._prefix = ""

    def _refresh(self, second: int) -> None:
        self._second = second
        self._amz_date = sigv4.format_amz_date(second)
        self._scope = sigv4.CredentialScope(self._amz_date[:8], REGION)
        self._key = self._keys.get(self._secret_key, self._scope)
        self._prefix = (
            f"{sigv4.ALGORITHM} Credential={self._access_key}/{self._scope}, "
            f"SignedHeaders={';'.join(self.SIGNED)}, Signature="
        )

    def headers(
        self, method: str, path: str, host: str, payload_hash: str = sigv4.UNSIGNED_PAYLOAD
    ) -> dict[str, str]:
        """The auth headers of a request without a query string; `path` is sent as is."""
        second = int(self._clock())
        if second != self._second:
            self._refresh(second)
        block = f"host:{host}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{self._amz_date}\n"
        canonical = sigv4.canonical_request(
            method, sigv4.canonical_uri(path), "", block, self.SIGNED, payload_hash
        )
        signature = sigv4.sign(
            self._key, sigv4.string_to_sign(self._amz_date, self._scope, canonical)
        )
        return {
            "Host": host,
            "x-amz-content-sha256": payload_hash,
            "x-amz-date": self._amz_date,
            "Authorization": self._prefix + signature,
        }


def check_signer() -> dict[str, Any]:
    """The lean signer against `sigv4.sign_request` on the same request, and its CPU
    cost per request."""
    now_s = 1_790_000_000.0
    signer = Signer("AKBENCH", "bench-secret-key", lambda: now_s)
    ours = signer.headers("PUT", "/s3bench/k-0001", "127.0.0.1:9000")
    request = sigv4.Request(
        "PUT", "/s3bench/k-0001", (), sigv4.Headers([("host", "127.0.0.1:9000")])
    )
    theirs = sigv4.sign_request(
        request, access_key="AKBENCH", secret_key="bench-secret-key", region=REGION, now_s=now_s
    ).headers.get("authorization")
    if ours["Authorization"] != theirs:
        raise RuntimeError(f"lean signer disagrees with sign_request: {ours} vs {theirs}")
    n = 20_000
    live = Signer("AKBENCH", "bench-secret-key", time.time)
    started = time.process_time()
    for i in range(n):
        live.headers("GET", f"/s3bench/k-{i:08d}", "127.0.0.1:9000")
    lean_us = (time.process_time() - started) / n * 1e6
    started = time.process_time()
    for i in range(n // 4):
        sigv4.sign_request(
            sigv4.Request(
                "GET", f"/s3bench/k-{i:08d}", (), sigv4.Headers([("host", "127.0.0.1:9000")])
            ),
            access_key="AKBENCH",
            secret_key="bench-secret-key",
            region=REGION,
            now_s=time.time(),
        )
    full_us = (time.process_time() - started) / (n // 4) * 1e6
    return {"matches_sign_request": True, "lean_us": lean_us, "sign_request_us": full_us}


# -- the lean client ---------------------------------------------------------------------------


class S3Failure(Exception):
    """A request that did not get the reply it needed; `kind` is what the cell counts."""

    def __init__(self, kind: str, detail: dict[str, Any]) -> None:
        super().__init__(kind)
        self.kind = kind
        self.detail = detail


_CODE = re.compile(rb"<Code>([^<]{1,64})</Code>")
Sink = Callable[[bytes], None]
"""Takes a 2xx reply's body piece by piece instead of keeping it."""


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes  # empty when a sink took it


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time. The reply's body is
    delimited by Content-Length, chunked transfer coding or the end of the connection
    (RFC 9112 §6.3); a 2xx body goes to the request's sink if it has one."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reusable = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._reply: asyncio.Future[Reply] | None = None
        self._sink: Sink | None = None
        self._method = "GET"
        self._reset()

    def _reset(self) -> None:
        self._head = bytearray()
        self._in_head = True
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._remaining = -1  # body bytes still due; -1: until the connection ends
        self._chunked = False
        self._chunk_buffer = bytearray()
        self._chunk_left = 0  # data bytes of the current chunk still due
        self._chunk_crlf = False
        self._keep_alive = True

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=CHUNK_BYTES)
        self.reusable = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._writable.set()
        if self._reply is not None and not self._reply.done():
            if not self._in_head and self._remaining == -1 and not self._chunked:
                self._finish()  # a body delimited by the end of the connection
            else:
                self._reply.set_exception(ConnectionResetError(f"connection lost: {exc}"))

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        if self._reply is None or self._reply.done():
            self.reusable = False  # bytes nobody asked for
            return
        if self._in_head:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            rest = bytes(self._head[end + 4 :])
            if not self._parse_head(bytes(self._head[:end])):
                self._head = bytearray()  # a 1xx reply: the real one follows
                if rest:
                    self.data_received(rest)
                return
            if self._reply.done():  # a reply without a body
                if rest:
                    self.reusable = False
                return
            data = rest
        if self._chunked:
            self._chunked_data(data)
        else:
            self._plain_data(data)

    # parsing

    def _parse_head(self, head: bytes) -> bool:
        """False for an interim (1xx) reply."""
        lines = head.decode("latin-1").split("\r\n")
        self._status = int(lines[0].split(" ", 2)[1])
        if 100 <= self._status < 200:
            return False
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self._headers = headers
        self._in_head = False
        self._keep_alive = headers.get("connection", "").lower() != "close"
        if self._status in (204, 304) or self._method == "HEAD":
            self._remaining = 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunked = True
        elif "content-length" in headers:
            self._remaining = int(headers["content-length"])
        else:
            self._keep_alive = False
        if self._remaining == 0:
            self._finish()
        return True

    def _take(self, data: bytes) -> None:
        if self._sink is not None and 200 <= self._status < 300:
            self._sink(data)
        else:
            self._body += data

    def _plain_data(self, data: bytes) -> None:
        if self._remaining == -1:
            self._take(data)
            return
        if len(data) > self._remaining:
            self.reusable = False  # more than the reply: the stream is out of step
            data = data[: self._remaining]
        if data:
            self._take(data)
            self._remaining -= len(data)
        if self._remaining == 0:
            self._finish()

    def _chunked_data(self, data: bytes) -> None:
        buffer = self._chunk_buffer
        buffer += data
        while True:
            if self._chunk_left > 0:  # the current chunk's data
                n = min(self._chunk_left, len(buffer))
                if n == 0:
                    return
                self._take(bytes(buffer[:n]))
                del buffer[:n]
                self._chunk_left -= n
                if self._chunk_left > 0:
                    return
                self._chunk_crlf = True
            if self._chunk_crlf:  # the CRLF after a chunk's data
                if len(buffer) < 2:
                    return
                del buffer[:2]
                self._chunk_crlf = False
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(buffer[:line_end]).split(b";", 1)[0].strip(), 16)
            if size == 0:  # the last chunk; trailer lines up to an empty line
                if buffer.find(b"\r\n\r\n", line_end) >= 0:
                    self._finish()
                return
            del buffer[: line_end + 2]
            self._chunk_left = size

    def _finish(self) -> None:
        reply, body = self._reply, bytes(self._body)
        if not self._keep_alive:
            self.reusable = False
        status, headers = self._status, self._headers
        self._reset()
        if reply is not None and not reply.done():
            reply.set_result(Reply(status, headers, body))

    # requests

    def abort(self) -> None:
        """Give up on the request in progress (timed out, cancelled) and the connection."""
        self.reusable = False
        if self._reply is not None and not self._reply.done():
            self._reply.cancel()
        if self.transport is not None:
            self.transport.close()

    async def request(
        self, head: bytes, body: memoryview | None, sink: Sink | None, method: str
    ) -> Reply:
        """Send `head` (the request line and headers, CRLF CRLF) and `body`, and wait for
        the whole reply. The caller bounds the time and drops the connection on error."""
        assert self.transport is not None
        self._method = method
        self._sink = sink
        self._reply = asyncio.get_running_loop().create_future()
        if body is None or len(body) <= CHUNK_BYTES:
            self.transport.write(head + bytes(body) if body is not None else head)
        else:
            self.transport.write(head)
            for start in range(0, len(body), CHUNK_BYTES):
                if self._reply.done() or not self.reusable:
                    break  # the server answered (an error) before the body was sent
                self.transport.write(body[start : start + CHUNK_BYTES])
                if not self._writable.is_set():
                    await self._writable.wait()
        return await self._reply


class RawHttp:
    """HTTP/1.1 straight over asyncio's transports: one pooled keep-alive connection per
    request in flight, requests formatted as text. A few times less client CPU per
    small request than aiohttp's client (see the report's calibration)."""

    name = "raw"

    def __init__(self, endpoints: list[str]) -> None:
        self._addresses = []
        for endpoint in endpoints:
            url = URL(endpoint)
            assert url.host is not None and url.port is not None
            self._addresses.append((url.host, url.port, url.raw_authority))
        self._idle: list[list[_Connection]] = [[] for _ in endpoints]

    async def close(self) -> None:
        for idle in self._idle:
            for conn in idle:
                if conn.transport is not None:
                    conn.transport.close()
            idle.clear()

    def host(self, worker: int) -> str:
        return self._addresses[worker % len(self._addresses)][2]

    async def call(
        self,
        worker: int,
        method: str,
        path: str,
        headers: dict[str, str],
        timeout_s: float,
        body: memoryview | None = None,
        sink: Sink | None = None,
    ) -> Reply:
        index = worker % len(self._addresses)
        host, port, _ = self._addresses[index]
        idle = self._idle[index]
        conn: _Connection | None = None
        while idle and conn is None:
            candidate = idle.pop()
            if candidate.reusable:
                conn = candidate
        if conn is None:
            loop = asyncio.get_running_loop()
            _, fresh = await asyncio.wait_for(
                loop.create_connection(_Connection, host, port), CONNECT_TIMEOUT_S
            )
            conn = fresh
        return await self._exchange(conn, idle, method, path, headers, timeout_s, body, sink)

    async def _exchange(
        self,
        conn: _Connection,
        idle: list[_Connection],
        method: str,
        path: str,
        headers: dict[str, str],
        timeout_s: float,
        body: memoryview | None,
        sink: Sink | None,
    ) -> Reply:
        lines = [f"{method} {path} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None or method in ("PUT", "POST"):
            lines.append(f"Content-Length: {len(body) if body is not None else 0}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        try:
            async with asyncio.timeout(timeout_s):
                reply = await conn.request(head, body, sink, method)
        except BaseException:
            conn.abort()
            raise
        if conn.reusable:
            idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()
        return reply


class AiohttpHttp:
    """The same calls through aiohttp's client (one session, keep-alive connections):
    for the report's calibration of client CPU per request."""

    name = "aiohttp"

    def __init__(self, endpoints: list[str]) -> None:
        self._endpoints = [(URL(e), URL(e).raw_authority) for e in endpoints]
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S),
        )

    async def close(self) -> None:
        await self._session.close()

    def host(self, worker: int) -> str:
        return self._endpoints[worker % len(self._endpoints)][1]

    async def call(
        self,
        worker: int,
        method: str,
        path: str,
        headers: dict[str, str],
        timeout_s: float,
        body: memoryview | None = None,
        sink: Sink | None = None,
    ) -> Reply:
        base, _ = self._endpoints[worker % len(self._endpoints)]
        data: Any = None
        if body is not None:
            headers = {**headers, "Content-Length": str(len(body))}
            data = bytes(body) if len(body) <= CHUNK_BYTES else _chunks(body)
        async with self._session.request(
            method,
            base.with_path(path, encoded=True),
            data=data,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            if sink is not None and resp.status // 100 == 2:
                async for piece in resp.content.iter_chunked(CHUNK_BYTES):
                    sink(piece)
                return Reply(resp.status, dict(resp.headers), b"")
            return Reply(resp.status, dict(resp.headers), await resp.read())


async def _chunks(source: memoryview) -> AsyncIterator[memoryview]:
    for start in range(0, len(source), CHUNK_BYTES):
        yield source[start : start + CHUNK_BYTES]


class LeanClient:
    """The S3 calls the benchmark makes (PUT, GET, DELETE of objects, create the bucket),
    signed by `Signer`, over `RawHttp` or `AiohttpHttp`. Worker `w` uses endpoint
    `w % len(endpoints)`."""

    def __init__(
        self, endpoints: list[str], access_key: str, secret_key: str, http: str = "raw"
    ) -> None:
        self.endpoints = endpoints
        self.signer = Signer(access_key, secret_key, time.time)
        self.http_name = http
        self.http: RawHttp | AiohttpHttp | None = None

    async def __aenter__(self) -> LeanClient:
        self.http = (
            RawHttp(self.endpoints) if self.http_name == "raw" else AiohttpHttp(self.endpoints)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.http is not None:
            await self.http.close()

    async def call(
        self,
        worker: int,
        method: str,
        path: str,
        timeout_s: float,
        body: memoryview | None = None,
        sink: Sink | None = None,
    ) -> Reply:
        """A request whose reply must be 2xx, else S3Failure with the reply's S3 error."""
        assert self.http is not None
        headers = self.signer.headers(method, path, self.http.host(worker))
        reply = await self.http.call(worker, method, path, headers, timeout_s, body, sink)
        if reply.status // 100 != 2:
            code = _CODE.search(reply.body)
            kind = f"HTTP {reply.status}" + (f" {code.group(1).decode()}" if code else "")
            raise S3Failure(
                kind,
                {
                    "request": f"{method} {self.endpoints[worker % len(self.endpoints)]}{path}",
                    "status": reply.status,
                    "headers": {
                        k: v for k, v in reply.headers.items() if k.lower().startswith("x-")
                    },
                    "body": reply.body.decode(errors="replace")[:1500],
                },
            )
        return reply

    async def put(self, worker: int, key: str, source: memoryview, timeout_s: float) -> int:
        await self.call(worker, "PUT", f"/{BUCKET}/{key}", timeout_s, source)
        return len(source)

    async def get_small(self, worker: int, key: str, timeout_s: float) -> bytes:
        return (await self.call(worker, "GET", f"/{BUCKET}/{key}", timeout_s)).body

    async def get_streamed(
        self, worker: int, key: str, timeout_s: float, digest: Any = None
    ) -> int:
        """GET, counting the body's bytes as they arrive (and hashing them into `digest`
        if given) without keeping them."""
        received = 0

        def sink(piece: bytes) -> None:
            nonlocal received
            received += len(piece)
            if digest is not None:
                digest.update(piece)

        await self.call(worker, "GET", f"/{BUCKET}/{key}", timeout_s, sink=sink)
        return received

    async def create_bucket(self, bucket: str = BUCKET, timeout_s: float = CHECK_TIMEOUT_S) -> None:
        try:
            await self.call(0, "PUT", f"/{bucket}", timeout_s, memoryview(b""))
        except S3Failure as err:
            if "BucketAlreadyOwnedByYou" not in err.kind:
                raise

    async def delete(self, worker: int, key: str) -> None:
        await self.call(worker, "DELETE", f"/{BUCKET}/{key}", CHECK_TIMEOUT_S)


# -- correctness against boto3 -----------------------------------------------------------------


def _boto3_client(endpoint: str, access_key: str, secret_key: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=REGION,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            connect_timeout=10,
            read_timeout=CHECK_TIMEOUT_S,
        ),
    )


async def check_against_boto3(client: LeanClient, target: Target) -> dict[str, Any]:
    """Lean PUT -> boto3 GET and boto3 PUT -> lean GET, for a small and a multi-chunk
    object on every endpoint; the sha256 of what was read must equal what was written."""
    boto = [_boto3_client(e, target.access_key, target.secret_key) for e in target.endpoints]
    rng = random.Random(5)
    checked = []
    for size in (SMALL_BYTES_CHECK, LARGE_BYTES_CHECK):
        data = rng.randbytes(size)
        want = hashlib.sha256(data).hexdigest()
        for i, b in enumerate(boto):
            key = f"check/lean-{size}-{i}"
            await client.put(i, key, memoryview(data), CHECK_TIMEOUT_S)
            got: bytes = await asyncio.to_thread(_boto3_get, b, key)
            _same(target.name, f"lean PUT {key}, boto3 GET", want, hashlib.sha256(got).hexdigest())
            key = f"check/boto3-{size}-{i}"
            await asyncio.to_thread(b.put_object, Bucket=BUCKET, Key=key, Body=data)
            digest = hashlib.sha256()
            await client.get_streamed(i, key, CHECK_TIMEOUT_S, digest)
            _same(target.name, f"boto3 PUT {key}, lean GET", want, digest.hexdigest())
            checked.append(size)
    return {"objects_checked": len(checked) * 2, "sizes": [SMALL_BYTES_CHECK, LARGE_BYTES_CHECK]}


SMALL_BYTES_CHECK = 4 * KIB
LARGE_BYTES_CHECK = 5 * MIB + 1  # several streamed chunks, and multi-stripe on Atoll


def _boto3_get(client: Any, key: str) -> bytes:
    return bytes(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def _same(target: str, what: str, want: str, got: str) -> None:
    if want != got:
        raise RuntimeError(f"{target}: {what}: sha256 {got} != {want}")


# -- targets -----------------------------------------------------------------------------------


@dataclass
class Target:
    """A running S3 service: where it listens, its credentials, and its processes."""

    name: str
    endpoints: list[str]
    access_key: str
    secret_key: str
    root_pids: Callable[[], list[int]]
    description: str
    version: str = ""
    start_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def server_cpu_s(self) -> float:
        return sum(tree_cpu_s(pid) for pid in self.root_pids())


class AtollRunner:
    """`atoll dev --nodes 3 --devices-per-node 2 --s3-port 0` on a temp dir (on the same
    filesystem as the disk ceiling's file), in a session of its own."""

    name = "atoll"

    def __init__(self, base: Path, keep: bool) -> None:
        self.base = base
        self.keep = keep
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_events: list[str] = []

    def start(self) -> Target:
        started = time.monotonic()
        self.dir = Path(tempfile.mkdtemp(prefix="atoll-s3-bench-", dir=self.base))
        command = [sys.executable, "-m", "atoll.cli", "dev", "--dir", str(self.dir / "cluster")]
        command += ["--nodes", "3", "--devices-per-node", "2", "--s3-port", "0"]
        self.proc = spawn_dev(command, self.dir / "dev.log")
        cluster_file = self.dir / "cluster" / "cluster.json"
        wait_dev(self.proc, self.dir / "dev.log", cluster_file.exists, ATOLL_START_TIMEOUT_S)
        cluster = json.loads(cluster_file.read_text())
        nodes = cluster["nodes"]
        proc = self.proc
        return Target(
            name="atoll",
            endpoints=[n["s3"] for n in nodes],
            access_key=cluster["access_key"],
            secret_key=cluster["secret_key"],
            root_pids=lambda: [proc.pid],
            description=(
                "`atoll dev --nodes 3 --devices-per-node 2 --s3-port 0`: three node processes"
                " (each with its S3 gateway in-process, its KV gateway process and two device"
                " directories), default pool; the client spreads its connections over the"
                " three gateways (worker w uses node w mod 3)"
            ),
            version=_git_rev(),
            start_s=time.monotonic() - started,
            extra={"node_pids": {str(n["id"]): n["pid"] for n in nodes}, "dir": str(self.dir)},
        )

    def stop(self) -> None:
        if self.proc is not None:
            stop_dev(self.proc, ATOLL_STOP_TIMEOUT_S)
            with contextlib.suppress(ProcessLookupError):  # anything left in its session
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None
        if self.dir is not None:
            self.log_events = _log_events(self.dir / "cluster")
        if self.dir is not None and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def spawn_dev(
    command: list[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`command` (`atoll dev ...`) in a session of its own, its output to `log_path`, with
    the checkout's src/ first on PYTHONPATH and `env` added to the environment."""
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])}
    full_env.update(env or {})
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
        )


def wait_dev(
    proc: subprocess.Popen[bytes], log_path: Path, ready: Callable[[], bool], timeout_s: float
) -> None:
    """Until `ready()`: RuntimeError with the log's tail if `proc` exits or `timeout_s`
    passes first."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"atoll dev did not come up (exit {proc.poll()}):\n{tail}")
        time.sleep(0.2)


def stop_dev(
    proc: subprocess.Popen[bytes], timeout_s: float, say: Callable[[str], None] | None = None
) -> None:
    """SIGTERM to `atoll dev` if it runs (it stops its nodes); SIGKILL to its session if it
    has not exited within `timeout_s` (said through `say` if given)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            if say is not None:
                say("atoll dev did not stop in time: SIGKILL to its session")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # its group: it is still alive
            proc.wait(10)


def node_log_lines(cluster: Path) -> Iterator[tuple[str, str]]:
    """(node, line) for every line of the node logs of the cluster in `cluster`, node by
    node ("node-N"); a log that cannot be read is passed over."""
    for log_file in sorted(cluster.glob("node-*/node.log")):
        try:
            text = log_file.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            yield log_file.parent.name, line


_LOG_EVENT = re.compile(r"WARNING|ERROR|CRITICAL|Traceback|leads the|failed|lost|timed out")
_LOG_NOISE = re.compile(r"bootstrap failed|join failed")
LOG_EVENTS_MAX = 40


def _log_events(cluster: Path) -> list[str]:
    """The node log lines worth a reader's attention (leader changes, failures), after
    start-up's retries: "node N: line"."""
    events = [
        f"{node}: {line.strip()[:300]}"
        for node, line in node_log_lines(cluster)
        if _LOG_EVENT.search(line) and not _LOG_NOISE.search(line)
    ]
    return sorted(events, key=lambda e: e.split(": ", 1)[1])[:LOG_EVENTS_MAX]


class PeerRunner:
    """One of ../shared/peers/start_*.sh: `start` (wipes and starts), `stop`."""

    def __init__(
        self, name: str, script: Path, endpoint: str, keys: tuple[str, str], pid_file: Path
    ) -> None:
        self.name = name
        self.script = script
        self.endpoint = endpoint
        self.keys = keys
        self.pid_file = pid_file
        self.started = False

    def _run(self, action: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(self.script), action],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd="/tmp",
            check=False,
        )

    def root_pids(self) -> list[int]:
        try:
            return [int(line.split()[0]) for line in self.pid_file.read_text().splitlines()]
        except (OSError, ValueError, IndexError):
            return []

    def start(self) -> Target:
        started = time.monotonic()
        self.started = True
        try:
            done = self._run("start", PEER_START_TIMEOUT_S)
        except subprocess.TimeoutExpired as err:
            raise RuntimeError(
                f"{self.script.name} start took over {PEER_START_TIMEOUT_S} s"
            ) from err
        if done.returncode != 0:
            raise RuntimeError(
                f"{self.script.name} start failed (exit {done.returncode}):\n"
                f"{(done.stdout + done.stderr)[-3000:]}"
            )
        return Target(
            name=self.name,
            endpoints=[self.endpoint],
            access_key=self.keys[0],
            secret_key=self.keys[1],
            root_pids=self.root_pids,
            description=PEER_DESCRIPTIONS[self.name],
            version=PEER_VERSIONS[self.name](),
            start_s=time.monotonic() - started,
            extra={"start_output": done.stdout.strip().splitlines()[-1:]},
        )

    def stop(self) -> None:
        if self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._run("stop", PEER_STOP_TIMEOUT_S)
            self.started = False


PEER_DESCRIPTIONS = {
    "swift": (
        "`start_swift.sh`: OpenStack Swift, proxy with s3api + tempauth (2 workers), object"
        " server (2 workers), container and account servers, 3 replicas over 4 devices"
        " (plain directories), memcached"
    ),
    "ceph": (
        "`start_ceph.sh`: Ceph 1 mon, 1 mgr, 3 bluestore OSDs on sparse files, 3 replicas,"
        " one radosgw (beast frontend)"
    ),
}


def _package_version(package: str) -> str:
    try:
        return subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


PEER_VERSIONS: dict[str, Callable[[], str]] = {
    "swift": lambda: _package_version("swift"),
    "ceph": lambda: _package_version("radosgw"),
}


RUNNERS: list[AtollRunner | PeerRunner] = []
"""Every runner made, so that `main` can stop what is left if the event loop dies."""


def make_runner(name: str, args: argparse.Namespace) -> AtollRunner | PeerRunner:
    runner = _make_runner(name, args)
    RUNNERS.append(runner)
    return runner


def _make_runner(name: str, args: argparse.Namespace) -> AtollRunner | PeerRunner:
    if name == "atoll":
        return AtollRunner(Path(args.tmp), args.keep)
    if name == "swift":
        return PeerRunner(
            "swift",
            args.peers / "start_swift.sh",
            "http://127.0.0.1:28080",
            ("test:tester", "testing"),
            Path("/tmp/swift/run/pids"),
        )
    return PeerRunner(
        "ceph",
        args.peers / "start_ceph.sh",
        "http://127.0.0.1:27480",
        ("cephtest", "cephtestsecret"),
        Path("/tmp/ceph/pids"),
    )


def ceph_gc() -> None:
    """Let RGW's garbage collector free the tails of deleted objects now (it waits two
    hours by default), so that the sparse 10 GiB OSD files do not fill up."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(
            ["radosgw-admin", "-c", "/tmp/ceph/ceph.conf", "gc", "process", "--include-all"],
            capture_output=True,
            timeout=CEPH_GC_TIMEOUT_S,
            check=False,
        )


def _own_cpu_s() -> tuple[float, float]:
    """(user, system) CPU seconds of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


# -- one cell ----------------------------------------------------------------------------------


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not sorted_values:
        return math.nan
    return sorted_values[max(1, math.ceil(q * len(sorted_values))) - 1]


def latency_ms(sorted_ms: list[float]) -> dict[str, float]:
    """p50, p99 (nearest-rank) and max of sorted latencies in ms; NaN for none."""
    return {
        "p50_ms": _percentile(sorted_ms, 0.50),
        "p99_ms": _percentile(sorted_ms, 0.99),
        "max_ms": sorted_ms[-1] if sorted_ms else math.nan,
    }


@dataclass
class Cell:
    """What a cell does: `op` on objects of `size` with `concurrency` requests in flight;
    small cells measure a window after a warm-up, large ones whole requests."""

    target: str
    op: str
    size: str
    concurrency: int
    seconds: float
    warm_up_s: float


async def run_cell(
    client: LeanClient,
    target: Target,
    cell: Cell,
    payload: dict[str, memoryview],
    keys: list[str],
    during: Callable[[], Awaitable[Any]] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Run `cell`; its results and the keys it wrote (a PUT) or read (a GET).

    Small objects: workers loop until warm-up + seconds; ops/s counts requests that
    completed inside the measured window (after the warm-up); p50/p99 are over those.
    Large objects: workers start requests until `seconds` have passed and every one is
    waited for; MB/s is the bytes of completed requests over the time from the first
    start to the last completion, so only whole objects count; p50/p99 over all.
    Client CPU per op is this process's CPU over the whole cell over the requests it
    completed; server CPU is the target's process trees over the same time."""
    size = SIZES[cell.size]
    small = cell.size == SMALL
    source = payload[cell.size]
    timeout_s = SMALL_REQUEST_TIMEOUT_S if small else LARGE_REQUEST_TIMEOUT_S
    warm_up_s = cell.warm_up_s if small else 0.0
    done: list[tuple[float, float, int]] = []  # (start, end, bytes) of each completed request
    errors: Counter[str] = Counter()
    samples: list[dict[str, Any]] = []
    written: list[str] = []
    tag = f"{cell.size}-c{cell.concurrency}-{int(time.time())}"

    async def one(worker: int, n: int, rng: random.Random) -> int:
        if cell.op == "put":
            key = f"{tag}/w{worker}-{n}"
            got = await client.put(worker, key, source, timeout_s)
            written.append(key)
            return got
        key = rng.choice(keys)
        if small:
            data = await client.get_small(worker, key, timeout_s)
            if data != source:
                raise S3Failure("wrong body", {"request": f"GET {key}", "bytes": len(data)})
            return len(data)
        got = await client.get_streamed(worker, key, timeout_s)
        if got != size:
            raise S3Failure("short body", {"request": f"GET {key}", "bytes": got})
        return got

    async def worker(w: int, stop_at: float) -> None:
        rng = random.Random(w)
        n = 0
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                got = await one(w, n, rng)
            except asyncio.CancelledError:
                raise
            except S3Failure as err:
                errors[err.kind] += 1
                if len(samples) < ERROR_SAMPLES_MAX:
                    samples.append({"kind": err.kind, **err.detail})
                await asyncio.sleep(ERROR_PAUSE_S)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as err:
                kind = type(err).__name__
                errors[kind] += 1
                if len(samples) < ERROR_SAMPLES_MAX:
                    samples.append(
                        {"kind": kind, "request": f"{cell.op} w{w} n{n}", "error": str(err)}
                    )
                await asyncio.sleep(ERROR_PAUSE_S)
            else:
                done.append((started, time.perf_counter(), got))
            n += 1

    server0, machine0 = target.server_cpu_s(), machine_cpu_s()
    cpu0 = _own_cpu_s()
    start = time.perf_counter()
    stop_at = start + warm_up_s + cell.seconds
    tasks = [asyncio.create_task(worker(w, stop_at)) for w in range(cell.concurrency)]
    profiler = asyncio.ensure_future(during()) if during is not None else None
    drained = True
    try:
        finished, pending = await asyncio.wait(
            tasks, timeout=warm_up_s + cell.seconds + DRAIN_TIMEOUT_S
        )
        if pending:
            drained = False
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for task in finished:
            task.result()
        if profiler is not None:
            await profiler
    finally:
        for task in tasks:
            task.cancel()
    end = time.perf_counter()
    cpu1 = _own_cpu_s()
    server1, machine1 = target.server_cpu_s(), machine_cpu_s()
    wall_s = end - start
    if small:
        lo, hi = start + warm_up_s, start + warm_up_s + cell.seconds
        measured = [d for d in done if lo <= d[1] <= hi]
        window_s = cell.seconds
    else:
        measured = done
        window_s = (max(d[1] for d in done) - start) if done else math.nan
    latencies = sorted((e - s) * 1000 for s, e, _ in measured)
    ops = len(measured)
    client_cpu_s = (cpu1[0] - cpu0[0]) + (cpu1[1] - cpu0[1])
    server_cpu_s = server1 - server0
    machine_busy_s = machine1[0] - machine0[0]
    result = {
        "target": cell.target,
        "op": cell.op,
        "size": cell.size,
        "concurrency": cell.concurrency,
        "ops": ops,
        "ops_total": len(done),
        "window_s": window_s,
        "wall_s": wall_s,
        "ops_per_s": ops / window_s if ops else 0.0,
        "mb_per_s": sum(b for _, _, b in measured) / MB / window_s if ops else 0.0,
        **latency_ms(latencies),
        "errors": dict(errors),
        "error_samples": samples,
        "drained": drained,
        "client_cpu_s": client_cpu_s,
        "client_cpu_user_s": cpu1[0] - cpu0[0],
        "client_cpu_sys_s": cpu1[1] - cpu0[1],
        "client_cpu_us_per_op": 1e6 * client_cpu_s / len(done) if done else math.nan,
        "client_cpu_pct": 100 * client_cpu_s / wall_s,
        "server_cpu_pct": 100 * server_cpu_s / wall_s,
        "server_cpu_ms_per_op": 1000 * server_cpu_s / len(done) if done else math.nan,
        "server_cpu_ms_per_mb": (
            1000 * server_cpu_s / (sum(b for _, _, b in done) / MB) if done else math.nan
        ),
        "others_cpu_pct": 100 * (machine_busy_s - server_cpu_s - client_cpu_s) / wall_s,
        "load_after": os.getloadavg()[0],
    }
    return result, written if cell.op == "put" else []


# -- profiles ----------------------------------------------------------------------------------


async def py_spy(pid: int, out: Path, seconds: float, delay_s: float) -> dict[str, Any]:
    """`py-spy record` of one process for `seconds`, raw (collapsed) stacks, all threads,
    after `delay_s` (the cell's warm-up)."""
    await asyncio.sleep(delay_s)
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    proc = await asyncio.create_subprocess_exec(
        exe,
        "record",
        "-p",
        str(pid),
        "-d",
        str(int(seconds)),
        "-r",
        str(PROFILE_RATE_HZ),
        "--format",
        "raw",
        "--threads",
        "--nonblocking",
        "-o",
        str(out),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), seconds + 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return {"pid": pid, "exit": proc.returncode, "output": output.decode(errors="replace")[-500:]}


_RAW = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_LINE_NO = re.compile(r":\d+\)")
# Innermost match wins: (substring of a frame, what that time is).
_LAYERS = (
    ("atoll/gateway/sigv4", "SigV4 verification (atoll.gateway.sigv4)"),
    ("atoll/gateway/payload", "request body reading and digests (atoll.gateway.payload)"),
    ("atoll/gateway/checksums", "request body reading and digests (atoll.gateway.payload)"),
    ("atoll/gateway/", "S3 gateway: HTTP handlers, object data path (atoll.gateway)"),
    ("atoll/objects/", "object manifests (atoll.objects)"),
    ("atoll/erasure/", "erasure coding (atoll.erasure)"),
    ("atoll/storage/", "storage service: shard files (atoll.storage)"),
    ("atoll/kv/", "KV client and service (atoll.kv)"),
    ("atoll/multiraft/", "Raft host, log store (atoll.multiraft, atoll.raft)"),
    ("atoll/raft/", "Raft host, log store (atoll.multiraft, atoll.raft)"),
    ("atoll/engine/", "storage engine (atoll.engine)"),
    ("atoll/rpc/", "atoll.rpc framing"),
    ("atoll/meta/", "cluster map (atoll.meta)"),
    ("aiohttp/", "aiohttp (HTTP parsing, request objects, responses)"),
    ("hashlib", "hashing (md5/sha256/crc)"),
    ("asyncio/", "asyncio"),
)
_SYSCALL_LEAVES = {
    "select": "waiting for events (epoll)",
    # On uvloop the loop is C: an idle main thread's innermost Python frame is the
    # runner that started it, and socket calls are made inside the Python call that
    # wrote (or, for reads, inside the loop itself).
    "Runner.run": "waiting for events (uvloop)",
    "_SelectorSocketTransport.write": "socket writes",
    "_SelectorSocketTransport._read_ready__get_buffer": "socket reads",
    "_SelectorSocketTransport._read_ready__data_received": "socket reads",
    "fsync": "fsync",
    "fdatasync": "fsync",
}


_OUTER = re.compile(r"atoll/cli/|atoll/base/loop\.py|^main \(atoll/server/node\.py\)|^<module>")
"""Frames around the event loop, on every stack of the main thread: they say nothing."""


def _fold(line: str) -> tuple[str, list[str], int] | None:
    match = _RAW.match(line)
    if match is None:
        return None
    thread, *frames = match["stack"].split(";")
    return thread, [_LINE_NO.sub(")", f) for f in frames], int(match["count"])


def _category(frames: list[str]) -> str:
    leaf = frames[-1].split(" (", 1)[0] if frames else "?"
    for name, what in _SYSCALL_LEAVES.items():
        if leaf.endswith(name):
            return what
    for frame in reversed(frames):
        for marker, what in _LAYERS:
            if marker in frame:
                return what
    return "other Python"


def summarise_profile(paths: dict[str, Path], rate_hz: int, seconds: float) -> dict[str, Any]:
    """Per node: samples per thread (busy share), where the main thread's time goes by
    layer, and its top frames by own samples and by inclusive samples (Atoll frames)."""
    nodes: dict[str, dict[str, Any]] = {}
    for node, path in paths.items():
        if not path.exists():
            nodes[node] = {"missing": True}
            continue
        threads: Counter[str] = Counter()
        categories: Counter[str] = Counter()
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        main = 0
        for line in path.read_text(errors="replace").splitlines():
            folded = _fold(line)
            if folded is None:
                continue
            thread, frames, count = folded
            name = re.sub(r"^thread \(0x[0-9a-fA-F]+\): |^thread \(\d+\): ", "", thread)
            threads[name] += count
            if "MainThread" not in name or not frames:
                continue
            main += count
            categories[_category(frames)] += count
            own[frames[-1]] += count
            for frame in set(frames):
                if ("atoll/" in frame or "aiohttp/" in frame) and not _OUTER.search(frame):
                    inclusive[frame] += count
        possible = rate_hz * seconds
        everywhere = {f for f, n in inclusive.items() if n >= 0.9 * main}
        nodes[node] = {
            "threads": [
                {"thread": t, "samples": n, "busy_pct": 100 * n / possible}
                for t, n in threads.most_common(6)
            ],
            "main_samples": main,
            "main_busy_pct": 100 * main / possible,
            "categories": [
                {"what": c, "pct": 100 * n / max(main, 1)} for c, n in categories.most_common()
            ],
            "own": [
                {"frame": f, "pct": 100 * n / max(main, 1)} for f, n in own.most_common(PROFILE_TOP)
            ],
            "inclusive": [
                {"frame": f, "pct": 100 * n / max(main, 1)}
                for f, n in inclusive.most_common(PROFILE_TOP + len(everywhere))
                if f not in everywhere
            ][:PROFILE_TOP],
        }
    return nodes


_BASES = (
    "BaseEventLoop._run_once (asyncio/base_events.py)",
    "Runner.run (asyncio/runners.py)",  # uvloop's loop runs callbacks from C
    "_worker (concurrent/futures/thread.py)",
    "Thread.run (threading.py)",
)
"""Frames below which every stack of a thread looks the same (the event loop's, a
worker thread's): cut from the committed profiles to keep them small."""
_THREAD = re.compile(r"^thread \((?P<tid>[0-9a-fA-Fx]+)\): (?P<name>.*)$")


def _thread_name(thread: str) -> str:
    """`thread (1234): atoll-storage_3` -> `atoll-storage`: one name per kind of thread."""
    match = _THREAD.match(thread)
    name = match["name"] if match else thread
    return re.sub(r"[-_]\d+(_\d+)?$", "", name)


def _thread_ids(path: Path) -> dict[int, str]:
    """Native thread id -> thread name, from py-spy's raw output."""
    names = {}
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            raw = _RAW.match(line)
            match = _THREAD.match(raw["stack"].split(";", 1)[0]) if raw else None
            if match and match["tid"].isdigit():
                names[int(match["tid"])] = match["name"]
    return names


def write_folded(paths: dict[str, Path], out: Path) -> None:
    """The raw profiles of every node in one text file: line numbers dropped, the frames
    under the event loop's or a worker thread's loop cut to "...", threads named by kind
    (`atoll-storage`, not `atoll-storage_3`), equal stacks merged, each prefixed with
    its node."""
    merged: Counter[str] = Counter()
    for node, path in paths.items():
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                folded = _fold(line)
                if folded is not None:
                    thread, frames, count = folded
                    cut = max((i for i, f in enumerate(frames) if f in _BASES), default=-1)
                    if cut >= 0:
                        frames = ["...", *frames[cut + 1 :]]
                    merged[";".join([f"node {node}", _thread_name(thread), *frames])] += count
    out.write_text("".join(f"{stack} {n}\n" for stack, n in sorted(merged.items())))


def task_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each live thread of a process, by native id."""
    out = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (task / "stat").read_text().rpartition(")")[2].split()
                out[int(task.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S
    return out


def children_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds of a node's child processes by kind: its engine's flush and
    compaction workers, its KV gateway, and children already reaped (their CPU is in
    the node's own /proc/PID/stat fields 16 and 17)."""
    out = {"child: engine workers": 0.0, "child: KV gateway": 0.0, "child: other": 0.0}
    for child in descendants(pid):
        command = command_line(child)
        kind = (
            "child: engine workers"
            if "worker_pool" in command
            else "child: KV gateway"
            if "kv.gateway" in command
            else "child: other"
        )
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{child}/stat").read_text().rpartition(")")[2].split()
            out[kind] += sum(int(f) for f in fields[11:15]) / CLOCK_TICKS_PER_S
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        out["child: exited"] = (int(fields[13]) + int(fields[14])) / CLOCK_TICKS_PER_S
    return out


def node_cpu_s(pid: int) -> tuple[dict[int, float], dict[str, float]]:
    return task_cpu_s(pid), children_cpu_s(pid)


def thread_cpu(
    before: tuple[dict[int, float], dict[str, float]],
    after: tuple[dict[int, float], dict[str, float]],
    names: dict[int, str],
    wall_s: float,
) -> dict[str, float]:
    """% of a core per kind of thread, and per kind of child process, over `wall_s`;
    threads py-spy never saw running are "(not sampled)"."""
    used: dict[str, float] = {}
    for tid, cpu in after[0].items():
        name = _thread_name(names[tid]) if tid in names else "(not sampled)"
        used[name] = used.get(name, 0.0) + 100 * (cpu - before[0].get(tid, 0.0)) / wall_s
    for kind, cpu in after[1].items():
        used[kind] = 100 * (cpu - before[1].get(kind, 0.0)) / wall_s
    return dict(sorted(used.items(), key=lambda kv: -kv[1]))


# -- machine -----------------------------------------------------------------------------------


def disk_ceiling(base: Path, runs_count: int) -> dict[str, Any]:
    """Sequential write of DISK_CEILING_BYTES in DISK_CHUNK_BYTES pieces and one fsync, to
    a file in `base` (where Atoll's data goes), `runs_count` times, each after a `sync`
    of what others left dirty; MB/s of each."""
    rng = random.Random(3)  # distinct data in every write: no block looks like another
    chunks = [
        rng.randbytes(DISK_CHUNK_BYTES) for _ in range(DISK_CEILING_BYTES // DISK_CHUNK_BYTES)
    ]
    runs = []
    for _ in range(runs_count):
        os.sync()
        fd, name = tempfile.mkstemp(prefix="s3-bench-disk-", dir=base)
        try:
            started = time.perf_counter()
            for chunk in chunks:
                os.write(fd, chunk)
            os.fsync(fd)
            runs.append(DISK_CEILING_BYTES / MB / (time.perf_counter() - started))
        finally:
            os.close(fd)
            os.unlink(name)
    fs = df_line(base)
    return {"path": str(base), "bytes": DISK_CEILING_BYTES, "mb_per_s": runs, "filesystem": fs}


def df_line(path: Path, timeout_s: float | None = None) -> list[str]:
    """`df`'s line (source, type, mount point) for the filesystem `path` is on: [line],
    or [] if it printed none."""
    return (
        subprocess.run(
            ["df", "--output=source,fstype,target", str(path)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        .stdout.strip()
        .splitlines()[-1:]
    )


def _git_rev() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            # What runs is src/: reports of other benchmarks written since the last
            # commit (bench/results/) do not make the code measured uncommitted.
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        return rev + (" (with uncommitted changes in src/)" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _others_running() -> list[str]:
    """Command lines of heavy things on this shared machine we did not start: test runs
    and other benchmarks."""
    own = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "pytest" in cmd or ("bench/" in cmd and "s3.py" not in cmd):
            found.append(cmd.strip()[:160])
    return found


def load_and_others(when: str) -> dict[str, Any]:
    """`load_<when>` (the load averages) and `others_running_<when>` (`_others_running`),
    for a report or one of its records, `when` "before" or "after"."""
    return {f"load_{when}": os.getloadavg(), f"others_running_{when}": _others_running()}


def report_start(machine: Callable[[], dict[str, Any]], args: dict[str, Any]) -> dict[str, Any]:
    """A run's report as it starts: the date (UTC), `machine()`, the load and the other
    work seen before, the run's `args`."""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **load_and_others("before"),
        "args": args,
    }


def machine_info(clients: bool = True) -> dict[str, Any]:
    """The machine, Python and Atoll's git rev; with `clients`, the versions of aiohttp,
    boto3 and py-spy too (bench/repair.py uses none of them)."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB,
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        # What atoll.base.loop runs the node processes on (they inherit this environment).
        "event_loop": (
            f"uvloop {_module_version('uvloop')}"
            if event_loop.loop_name() == "uvloop"
            else "asyncio (standard loop)"
        ),
    }
    if clients:
        info["aiohttp"] = aiohttp.__version__
        info["boto3"] = _module_version("boto3")
        info["py-spy"] = _py_spy_version()
    info["atoll"] = _git_rev()
    info["probe"] = machine_probe(Path(tempfile.gettempdir()))
    return info


def probe_line(machine: dict[str, Any]) -> str | None:
    """The Environment line of `machine_probe`'s figures (None for a report without)."""
    probe = machine.get("probe")
    return f"- {PROBE_LABEL}: {probe_text(probe)}" if probe else None


def _module_version(name: str) -> str:
    try:
        return str(__import__(name).__version__)
    except ImportError:
        return "missing"


def _py_spy_version() -> str:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    try:
        return subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except OSError:
        return "missing"


# -- one target --------------------------------------------------------------------------------


def plan(target: str, args: argparse.Namespace) -> list[Cell]:
    """PUT then GET at each concurrency, small objects first."""
    return [
        Cell(target, op, size, c, args.seconds, args.warm_up)
        for size in (SMALL, LARGE)
        for c in CONCURRENCIES
        for op in OPS
    ]


async def measure_target(
    runner: AtollRunner | PeerRunner,
    args: argparse.Namespace,
    payload: dict[str, memoryview],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Start the target, check the lean client against boto3, run its cells (and, for
    Atoll, the profile cells), stop it."""
    record: dict[str, Any] = {"target": runner.name, **load_and_others("before")}
    try:
        say(f"{runner.name}: starting")
        target = await asyncio.to_thread(runner.start)
        record.update(
            endpoints=target.endpoints,
            description=target.description,
            version=target.version,
            start_s=target.start_s,
            extra=target.extra,
        )
        say(f"{runner.name}: up in {target.start_s:.0f} s at {', '.join(target.endpoints)}")
        async with LeanClient(target.endpoints, target.access_key, target.secret_key) as client:
            await client.create_bucket()
            record["check"] = await check_against_boto3(client, target)
            say(
                f"{runner.name}: lean client and boto3 agree ({record['check']['objects_checked']} objects)"
            )
            record["cells"] = await _run_cells(client, target, args, payload, say)
            if runner.name == "atoll" and not args.no_profile:
                record["profiles"] = await _profile_cells(client, target, args, payload, say)
    except Exception as err:
        record["failure"] = f"{type(err).__name__}: {err}"
        say(f"{runner.name}: FAILED: {record['failure']}")
    finally:
        await asyncio.to_thread(runner.stop)
        if isinstance(runner, AtollRunner):
            record["log_events"] = runner.log_events
        record.update(load_and_others("after"))
        say(f"{runner.name}: stopped")
    return record


async def _run_cells(
    client: LeanClient,
    target: Target,
    args: argparse.Namespace,
    payload: dict[str, memoryview],
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    results = []
    written: list[str] = []
    for cell in plan(target.name, args):
        if cell.op == "get" and not written:
            say(f"{target.name}: skipping GET {cell.size} c{cell.concurrency}: no objects written")
            continue
        quiet = await wait_quiet(target, args.quiet_wait)
        result, keys = await run_cell(client, target, cell, payload, written)
        result["quiet"] = quiet
        if cell.op == "put":
            written = keys
        elif (cell.size, cell.concurrency) == CALIBRATION:
            result["calibration"] = await _calibrate(target, cell, payload, written, say)
        elif cell.size == LARGE:  # bound the disk space large objects take
            await _delete_all(client, written)
            if target.name == "ceph":
                await asyncio.to_thread(ceph_gc)
            written = []
        results.append(result)
        say(_cell_line(result))
    return results


async def wait_quiet(target: Target, max_wait_s: float) -> dict[str, Any]:
    """Wait, at most `max_wait_s`, until the rest of this shared machine (everything but
    this process and the target's processes) uses less than QUIET_OTHERS_PCT of a core
    over QUIET_SAMPLE_S; what it waited and the last level seen."""
    started = time.monotonic()
    while True:
        busy0, _ = machine_cpu_s()
        server0, own0 = target.server_cpu_s(), sum(_own_cpu_s())
        t0 = time.monotonic()
        await asyncio.sleep(QUIET_SAMPLE_S)
        busy1, _ = machine_cpu_s()
        server1, own1 = target.server_cpu_s(), sum(_own_cpu_s())
        others_pct = (
            100 * ((busy1 - busy0) - (server1 - server0) - (own1 - own0)) / (time.monotonic() - t0)
        )
        waited_s = time.monotonic() - started
        if others_pct < QUIET_OTHERS_PCT:
            return {"waited_s": waited_s, "others_pct": others_pct}
        if waited_s >= max_wait_s:
            busiest = await asyncio.to_thread(_busiest_processes, target)
            return {"waited_s": waited_s, "others_pct": others_pct, "busiest": busiest}


def _all_process_cpu_s() -> dict[int, float]:
    ticks = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
                ticks[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S
    return ticks


def _busiest_processes(target: Target) -> list[str]:
    """The processes, other than this one and the target's, that used the most CPU over
    QUIET_SAMPLE_S: "% of a core, command line"."""
    mine = {os.getpid()}
    for pid in target.root_pids():
        mine.add(pid)
        mine.update(descendants(pid))
    before = _all_process_cpu_s()
    time.sleep(QUIET_SAMPLE_S)
    after = _all_process_cpu_s()
    used = sorted(
        ((after[p] - before.get(p, 0.0), p) for p in after if p not in mine), reverse=True
    )[:3]
    return [
        f"{100 * cpu / QUIET_SAMPLE_S:.0f}% {command_line(pid)[:120]}"
        for cpu, pid in used
        if cpu > 0
    ]


async def _calibrate(
    target: Target,
    cell: Cell,
    payload: dict[str, memoryview],
    keys: list[str],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """The same GET cell through aiohttp's client (shorter): what the lean HTTP layer
    saves in client CPU, and what that is worth in ops/s on this machine."""
    short = Cell(
        cell.target,
        cell.op,
        cell.size,
        cell.concurrency,
        max(2.0, cell.seconds / 2),
        cell.warm_up_s,
    )
    async with LeanClient(
        target.endpoints, target.access_key, target.secret_key, "aiohttp"
    ) as client:
        result, _ = await run_cell(client, target, short, payload, keys)
    say(f"{target.name}: through aiohttp: {_cell_line(result)}")
    return result


async def _delete_all(client: LeanClient, keys: list[str]) -> None:
    for i in range(0, len(keys), 16):
        await asyncio.gather(
            *(client.delete(j, k) for j, k in enumerate(keys[i : i + 16])), return_exceptions=True
        )


async def _profile_cells(
    client: LeanClient,
    target: Target,
    args: argparse.Namespace,
    payload: dict[str, memoryview],
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Extra cells (not in the table) with py-spy on every node process: each PUT, then a
    GET of the objects it wrote."""
    out = []
    node_pids: dict[str, int] = target.extra["node_pids"]
    seconds = min(PROFILE_SECONDS, args.seconds)
    written: list[str] = []
    for op, size, concurrency in PROFILE_PLAN:
        name = f"{args.out.stem}-profile-{op}-{size.lower()}-c{concurrency}"
        raw = {node: Path(tempfile.gettempdir()) / f"{name}-node{node}.raw" for node in node_pids}
        warm_up_s = args.warm_up if size == SMALL else 2.0

        async def during(raw: dict[str, Path] = raw, warm_up_s: float = warm_up_s) -> Any:
            return await asyncio.gather(
                *(py_spy(pid, raw[node], seconds, warm_up_s) for node, pid in node_pids.items())
            )

        cell = Cell(
            target.name, op, size, concurrency, max(seconds + warm_up_s, args.seconds), args.warm_up
        )
        quiet = await wait_quiet(target, args.quiet_wait)
        tasks_before = {node: node_cpu_s(pid) for node, pid in node_pids.items()}
        started = time.monotonic()
        result, keys = await run_cell(client, target, cell, payload, written, during)
        tasks_after = {node: node_cpu_s(pid) for node, pid in node_pids.items()}
        wall_s = time.monotonic() - started
        threads = {
            node: thread_cpu(tasks_before[node], tasks_after[node], _thread_ids(raw[node]), wall_s)
            for node in node_pids
        }
        result["quiet"] = quiet
        if op == "put":
            written = keys
        elif size == LARGE:
            await _delete_all(client, written)
        folded = args.out.parent / f"{name}.txt"
        write_folded(raw, folded)
        summary = summarise_profile(raw, PROFILE_RATE_HZ, seconds)
        for path in raw.values():
            with contextlib.suppress(OSError):
                path.unlink()
        say(f"atoll: profiled {op} {size} c{concurrency}: {_cell_line(result)}")
        out.append(
            {
                "op": op,
                "size": size,
                "concurrency": concurrency,
                "file": folded.name,
                "seconds": seconds,
                "rate_hz": PROFILE_RATE_HZ,
                "cell": result,
                "nodes": summary,
                "thread_cpu_pct": threads,
            }
        )
    return out


def _cell_line(r: dict[str, Any]) -> str:
    rate = f"{r['ops_per_s']:,.0f} ops/s" if r["size"] == SMALL else f"{r['mb_per_s']:,.1f} MB/s"
    return (
        f"{r['target']} {r['op']} {r['size']} c{r['concurrency']}: {rate}, p50 {r['p50_ms']:.1f} ms,"
        f" p99 {r['p99_ms']:.1f} ms, {r['ops']} ops, client {r['client_cpu_us_per_op']:.0f} µs/op,"
        f" server {r['server_cpu_pct']:.0f}%, errors {r['errors'] or 0}"
    )


# -- the run -----------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    say = _say
    started = time.monotonic()
    report = report_start(
        machine_info,
        {
            "seconds": args.seconds,
            "warm_up_s": args.warm_up,
            "quick": args.quick,
            "only": args.only,
            "quiet_wait_s": args.quiet_wait,
        },
    )
    report["signer"] = check_signer()
    say(f"signer matches sign_request; {report['signer']['lean_us']:.0f} µs per request")
    report["disk"] = await asyncio.to_thread(disk_ceiling, Path(args.tmp), DISK_RUNS)
    say(f"disk ceiling: {', '.join(f'{v:.0f}' for v in report['disk']['mb_per_s'])} MB/s")
    rng = random.Random(1)
    payload = {
        SMALL: memoryview(rng.randbytes(SIZES[SMALL])),
        LARGE: memoryview(rng.randbytes(SIZES[LARGE])),
    }
    report["targets"] = {}
    for name in [args.only] if args.only else TARGETS:
        runner = make_runner(name, args)
        report["targets"][name] = await measure_target(runner, args, payload, say)
    report["disk_after"] = await asyncio.to_thread(disk_ceiling, Path(args.tmp), 2)
    say(
        f"disk ceiling at the end: {', '.join(f'{v:.0f}' for v in report['disk_after']['mb_per_s'])} MB/s"
    )
    report.update(load_and_others("after"))
    report["run_s"] = time.monotonic() - started
    return report


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=TARGETS, help="measure one target (not a result)")
    parser.add_argument("--quick", action="store_true", help="short cells, for a smoke run")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per cell")
    parser.add_argument("--warm-up", type=float, default=3.0, help="small cells' warm-up, s")
    parser.add_argument("--tmp", default=tempfile.gettempdir(), help="where Atoll's data goes")
    parser.add_argument("--peers", type=Path, default=PEERS_DIR)
    parser.add_argument(
        "--quiet-wait", type=float, default=60.0, help="most seconds to wait for a quiet machine"
    )
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep Atoll's data dir")
    parser.add_argument("--out", type=Path, default=RESULTS / "s3.json")
    parser.add_argument("--report-only", type=Path, help="rewrite the report from this JSON")
    parser.add_argument(
        "--notes",
        type=Path,
        help="with --report-only: a reading of the profiles (markdown) to keep",
    )
    args = parser.parse_args()
    if args.report_only:
        report = json.loads(args.report_only.read_text())
        if args.notes:
            report["notes"] = args.notes.read_text()
            args.report_only.write_text(json.dumps(report, indent=1, default=str) + "\n")
        args.report_only.with_suffix(".md").write_text(render(report))
        return 0
    if args.quick:
        args.seconds, args.warm_up = QUICK_SECONDS, QUICK_WARM_UP_S
    if (args.quick or args.only) and args.out == RESULTS / "s3.json":
        args.out = RESULTS / f"s3-{'quick' if args.quick else args.only}.json"
    return run_main(_main(args), RUNNERS)


def run_main(main: Coroutine[Any, Any, int], started: list[Any]) -> int:
    """Run `main` (which calls `cancel_on_sigterm`): its exit code, 130 on Ctrl-C or
    SIGTERM; whatever happens, `stop()` every one of `started` (what the run started,
    each stop idempotent: a no-op for what is stopped)."""
    try:
        return asyncio.run(main)
    except (KeyboardInterrupt, asyncio.CancelledError):
        _say("interrupted")
        return 130
    finally:
        for runner in started:
            runner.stop()


def cancel_on_sigterm() -> None:
    """SIGTERM cancels the current task (the run's main one), as Ctrl-C would."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


def write_report(report: dict[str, Any], out: Path, render: Callable[[Any], str]) -> None:
    """The report's JSON to `out`, its markdown (`render`) beside it."""
    out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    out.with_suffix(".md").write_text(render(report))
    _say(f"wrote {out} and {out.with_suffix('.md')}")


async def _main(args: argparse.Namespace) -> int:
    cancel_on_sigterm()
    report = await run(args)
    write_report(report, args.out, render)
    return 0


# -- the report --------------------------------------------------------------------------------


TARGET_RULES = {
    # (size, op): (absolute floor, unit, minimum ratio to the best peer)
    (SMALL, "put"): (800.0, "ops/s", 3.0),
    (SMALL, "get"): (2000.0, "ops/s", 3.0),
    (LARGE, "put"): (150.0, "MB/s", 2.0),
    (LARGE, "get"): (400.0, "MB/s", 1.3),
}


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _rate(cell: dict[str, Any]) -> float:
    return float(cell["ops_per_s"] if cell["size"] == SMALL else cell["mb_per_s"])


def best_cells(report: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(target, size, op) -> the cell with the highest rate over the concurrencies."""
    best: dict[tuple[str, str, str], dict[str, Any]] = {}
    for name, record in report["targets"].items():
        for cell in record.get("cells", []):
            key = (name, cell["size"], cell["op"])
            if key not in best or _rate(cell) > _rate(best[key]):
                best[key] = cell
    return best


def verdicts(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per target workload: Atoll's best rate, each peer's, the ratio to the best peer,
    and whether the floor and the ratio are met (None when a figure is missing)."""
    best = best_cells(report)
    rows = []
    for (size, op), (floor, unit, ratio_min) in TARGET_RULES.items():
        atoll = best.get(("atoll", size, op))
        peers = {p: best.get((p, size, op)) for p in ("swift", "ceph")}
        peer_rates = [_rate(c) for c in peers.values() if c is not None]
        best_peer = max(peer_rates) if peer_rates else None
        rate = _rate(atoll) if atoll else None
        ratio = rate / best_peer if rate is not None and best_peer else None
        both_peers = all(c is not None for c in peers.values())
        rows.append(
            {
                "size": size,
                "op": op,
                "unit": unit,
                "floor": floor,
                "ratio_min": ratio_min,
                "atoll": rate,
                "atoll_concurrency": atoll["concurrency"] if atoll else None,
                "peers": {p: (_rate(c), c["concurrency"]) if c else None for p, c in peers.items()},
                "best_peer": best_peer,
                "ratio": ratio,
                "floor_met": None if rate is None else rate >= floor,
                "ratio_met": None if ratio is None or not both_peers else ratio >= ratio_min,
            }
        )
    return rows


def _met(flag: bool | None) -> str:
    return "n/a" if flag is None else ("**met**" if flag else "**not met**")


def render(report: dict[str, Any]) -> str:
    """s3.md from the run's JSON."""
    lines: list[str] = []
    add = lines.append
    machine = report["machine"]
    targets = report["targets"]
    missing = [t for t in TARGETS if t not in targets or "failure" in targets[t]]
    add("# S3 benchmark: Atoll, OpenStack Swift and Ceph RGW on one machine")
    add("")
    add("PUT and GET of 4 KiB objects (ops/s) and 64 MiB objects (MB/s, 10^6 bytes/s) at")
    add("concurrency 1, 16 and 64 (issue 5 §6). Written by `bench/s3.py`; every figure is in")
    add(
        f"`{report.get('json_name', 's3.json')}` beside this file. The machine is a small shared VM: compare"
    )
    add("systems within this run rather than figures across runs.")
    add("")
    if missing:
        add(f"**Not a result**: {', '.join(missing)} did not run or failed (see Failures below);")
        add("a run without both peers is not a result.")
        add("")
    add("## Environment")
    add("")
    render_machine(report, targets, add)
    others = others_seen(report, targets)
    if others:
        add(
            f"- **other work on the machine** during the run (test runs, benchmarks; {len(others)}"
            " command lines seen at the start or end of a target):"
        )
        for cmd in others[:8]:
            add(f"  - `{cmd}`")
    else:
        add("- no other test run or benchmark was seen at the start or end of any target")
    add(f"- platform: {machine['platform']}; python: {machine['python']}")
    if "event_loop" in machine:  # reports from before atoll.base.loop have none
        add(f"- Atoll's event loop: {machine['event_loop']}")
    add(f"- aiohttp {machine['aiohttp']}, boto3 {machine['boto3']}, {machine['py-spy']}")
    add(f"- atoll git rev: {machine['atoll']}")
    for name in ("swift", "ceph"):
        if name in targets and targets[name].get("version"):
            add(f"- {name}: Debian package {targets[name]['version']}")
    add(f"- run time: {report['run_s']:.0f} s")
    add("")
    add("## Setup")
    add("")
    for name, record in targets.items():
        if "description" in record:
            add(
                f"- **{name}** ({', '.join(record['endpoints'])}; up in {record['start_s']:.0f} s): "
                f"{record['description']}."
            )
    signer = report["signer"]
    add(
        "- **Client**: one asyncio process with one keep-alive HTTP/1.1 connection per request"
        " in flight, path-style requests signed with SigV4 header auth and `UNSIGNED-PAYLOAD`;"
        " the signature comes from `atoll.gateway.sigv4`'s canonical request, string to sign and"
        " signing key (equal to `sign_request`'s, checked at start-up), at"
        f" {signer['lean_us']:.0f} µs of CPU per request ({signer['sign_request_us']:.0f} µs through"
        " `sign_request`). The HTTP layer is a small asyncio protocol of this script rather than"
        f" aiohttp's client: aiohttp {machine['aiohttp']} cost about twice the CPU per small"
        " request, which on two cores is CPU taken from the server measured (the calibration"
        " below runs the same GET cell through both). Large bodies stream from one shared 64 MiB"
        " buffer in 1 MiB writes under the transport's flow control (never a copy per request);"
        " large GETs are counted as they arrive and dropped; small GETs are compared with the"
        " bytes written."
    )
    add(
        f"- **Checked against boto3** on every target before its cells: objects of"
        f" {SMALL_BYTES_CHECK} and {LARGE_BYTES_CHECK} bytes PUT by the lean client and read by"
        " boto3, and PUT by boto3 and read by the lean client, on every endpoint, with equal sha256."
    )
    add(
        "- **Targets one at a time**: each is started, checked, measured and stopped before the"
        " next, so an idle peer takes no CPU from the one measured. Order: "
        + ", ".join(targets)
        + "."
    )
    args = report["args"]
    add(
        f"- **Cells**: per size, per concurrency, a PUT cell then a GET cell of the objects it wrote"
        f" (uniformly random keys). 4 KiB: {args['warm_up_s']:g} s warm-up, then {args['seconds']:g} s"
        " measured; ops/s counts requests completed in the window; p50/p99 are nearest-rank over"
        f" them. 64 MiB: requests start until {args['seconds']:g} s have passed and all are waited"
        " for; MB/s is the bytes of completed objects over the time from the first start to the"
        " last completion (at concurrency 64 that is 64 objects, 4 GiB, at least), p50/p99 over"
        " all of them. Every PUT writes a new key. After the large GET cell its objects are"
        " deleted (Ceph: then `radosgw-admin gc process --include-all`, so its 10 GiB OSD files"
        " do not fill)."
    )
    add(
        f"- **Quiet machine**: before each cell the script waits (at most {args.get('quiet_wait_s', 60):g} s)"
        f" until the rest of the machine uses under {QUIET_OTHERS_PCT:g}% of a core over"
        f" {QUIET_SAMPLE_S:g} s; cells that started without it are listed under Failures and errors."
    )
    add(
        "- **CPU**: client CPU per op is this process's CPU time (user + system, all threads) over"
        " the cell divided by the requests it completed; servers' is the target's process trees"
        " from /proc (Atoll: `atoll dev` and its node processes with their children; Swift and"
        " Ceph: the processes their start scripts record, with their workers); others is the rest"
        " of the machine's busy time; all in % of one core over the cell."
    )
    disk = report["disk"]
    fs = " ".join(" ".join(disk["filesystem"]).split())
    add(
        f"- **Disk ceiling**: {disk['bytes'] // MIB} MiB written sequentially in 8 MiB writes and"
        f" one fsync to {disk['path']} ({fs}), {len(disk['mb_per_s'])} times after a `sync`:"
        f" **{' / '.join(f'{v:,.0f}' for v in disk['mb_per_s'])} MB/s**, and at the end of the run"
        f" {' / '.join(f'{v:,.0f}' for v in report.get('disk_after', {}).get('mb_per_s', []))} MB/s"
        " (this VM's disk speed varies by several times from one minute to the next). Every target's data is on"
        " this filesystem; Atoll's default pool (4+2) writes 1.5 bytes per object byte, Swift"
        " and Ceph (3 replicas) 3."
    )
    add("")
    add("## Results")
    add("")
    add(
        "| Target | Op | Size | Conc. | ops/s | MB/s | p50 ms | p99 ms | Ops measured | Errors |"
        " Client CPU µs/op | Client % core | Servers % core | Servers CPU ms per op (4 KiB) or per MB (64 MiB) | Others % core |"
    )
    add(
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"
    )
    for name, record in targets.items():
        for c in record.get("cells", []):
            small = c["size"] == SMALL
            errors = ", ".join(f"{k}: {v}" for k, v in c["errors"].items()) or "0"
            if not c.get("drained", True):
                errors += " (not drained)"
            add(
                f"| {name} | {c['op'].upper()} | {c['size']} | {c['concurrency']} |"
                f" {'**' + _fmt(c['ops_per_s']) + '**' if small else _fmt(c['ops_per_s'], 1)} |"
                f" {_fmt(c['mb_per_s'], 1) if small else '**' + _fmt(c['mb_per_s'], 1) + '**'} |"
                f" {_fmt(c['p50_ms'], 1)} | {_fmt(c['p99_ms'], 1)} | {c['ops']:,} | {errors} |"
                f" {_fmt(c['client_cpu_us_per_op'])} | {_fmt(c['client_cpu_pct'])} |"
                f" {_fmt(c['server_cpu_pct'])} |"
                f" {_fmt(c.get('server_cpu_ms_per_op' if small else 'server_cpu_ms_per_mb', math.nan), 2)} |"
                f" {_fmt(c['others_cpu_pct'])} |"
            )
    add("")
    add("## Against the targets")
    add("")
    add(
        "Each system's best concurrency for the workload (in parentheses); the ratio is Atoll's"
        " best over the best peer's best."
    )
    add("")
    add(
        "| Workload | Atoll | Swift | Ceph | Atoll / best peer | Floor | Floor met | Ratio needed | Ratio met |"
    )
    add("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |")
    for v in verdicts(report):
        digits = 0 if v["size"] == SMALL else 1

        def cell(pair: tuple[float, int] | None, digits: int = digits) -> str:
            return "-" if pair is None else f"{_fmt(pair[0], digits)} (c{pair[1]})"

        atoll = None if v["atoll"] is None else (v["atoll"], v["atoll_concurrency"])
        add(
            f"| {v['size']} {v['op'].upper()}, {v['unit']} | {cell(atoll)} | {cell(v['peers']['swift'])} |"
            f" {cell(v['peers']['ceph'])} | {_fmt(v['ratio'], 1)}x | {_fmt(v['floor'])} |"
            f" {_met(v['floor_met'])} | {v['ratio_min']:g}x | {_met(v['ratio_met'])} |"
        )
    add("")
    _render_per_concurrency(report, add)
    _render_calibration(report, add)
    _render_profiles(report, add)
    _render_errors(report, add)
    return "\n".join(lines).rstrip() + "\n"


def render_machine(
    report: dict[str, Any],
    records: dict[str, dict[str, Any]],
    add: Callable[[str], None],
    more: tuple[str, ...] = (),
) -> None:
    """The Environment lines on the date, the machine (then the lines `more`) and the
    load averages: the run's before and after, and each record's (a target's, a run's)."""
    machine = report["machine"]
    add(f"- date (UTC): {report['date']}")
    add(
        f"- nproc: {machine['nproc']}; cpu: {machine['cpu']}; memory: {machine['memory_gib']:.0f} GiB"
    )
    if (line := probe_line(machine)) is not None:
        add(line)
    for line in more:
        add(line)
    add(f"- load average before: {' '.join(f'{v:.2f}' for v in report['load_before'])}")
    add(f"- load average after: {' '.join(f'{v:.2f}' for v in report['load_after'])}")
    for name, record in records.items():
        add(
            f"- {name}: load before {record['load_before'][0]:.2f}, after {record['load_after'][0]:.2f}"
            f" (1-minute)"
        )


def others_seen(report: dict[str, Any], records: dict[str, dict[str, Any]]) -> list[str]:
    """The other work seen on the machine (`_others_running`) at the start or end of the
    run or of any record, sorted."""
    return sorted(
        set(
            report.get("others_running_before", [])
            + report.get("others_running_after", [])
            + [
                c
                for r in records.values()
                for c in r.get("others_running_before", []) + r.get("others_running_after", [])
            ]
        )
    )


def _render_per_concurrency(report: dict[str, Any], add: Callable[[str], None]) -> None:
    cells = {
        (n, c["size"], c["op"], c["concurrency"]): c
        for n, r in report["targets"].items()
        for c in r.get("cells", [])
    }
    add("Atoll over the best peer at each concurrency:")
    add("")
    add("| Workload | c1 | c16 | c64 |")
    add("| --- | ---: | ---: | ---: |")
    for size, op in TARGET_RULES:
        ratios = []
        for conc in CONCURRENCIES:
            atoll = cells.get(("atoll", size, op, conc))
            peers = [_rate(c) for p in ("swift", "ceph") if (c := cells.get((p, size, op, conc)))]
            ratios.append(
                f"{_rate(atoll) / max(peers):.1f}x" if atoll and peers and max(peers) else "-"
            )
        add(f"| {size} {op.upper()} | {' | '.join(ratios)} |")
    add("")


def _render_calibration(report: dict[str, Any], add: Callable[[str], None]) -> None:
    rows = [
        (name, c, c["calibration"])
        for name, r in report["targets"].items()
        for c in r.get("cells", [])
        if "calibration" in c
    ]
    if not rows:
        return
    add("## Client calibration: this script's HTTP layer against aiohttp's client")
    add("")
    add(
        f"The GET {CALIBRATION[0]} cell at concurrency {CALIBRATION[1]} of the table, then the same"
        " cell (half as long) with aiohttp's client under the same signer. Client CPU is user +"
        " system time per request; on loopback the system part includes the kernel's TCP work"
        " for both ends of each send."
    )
    add("")
    add(
        "| Target | Lean: ops/s | Lean: client µs/op (user + sys) | aiohttp: ops/s | aiohttp: client µs/op (user + sys) |"
    )
    add("| --- | ---: | ---: | ---: | ---: |")
    for name, lean, other in rows:

        def cost(c: dict[str, Any]) -> str:
            n = max(c["ops_total"], 1)
            return (
                f"{_fmt(c['client_cpu_us_per_op'])} ({1e6 * c.get('client_cpu_user_s', math.nan) / n:,.0f}"
                f" + {1e6 * c.get('client_cpu_sys_s', math.nan) / n:,.0f})"
            )

        add(
            f"| {name} | {_fmt(lean['ops_per_s'])} | {cost(lean)} | {_fmt(other['ops_per_s'])} |"
            f" {cost(other)} |"
        )
    add("")


def _render_profiles(report: dict[str, Any], add: Callable[[str], None]) -> None:
    atoll = report["targets"].get("atoll", {})
    add("## What bounds it")
    add("")
    if report.get("notes"):
        add(report["notes"].rstrip())
        add("")
    profiles = atoll.get("profiles", [])
    if not profiles:
        add("No profile in this run.")
        add("")
        return
    add(
        f"py-spy ({report['machine']['py-spy']}) sampled every Atoll node process at"
        f" {profiles[0]['rate_hz']} Hz (`record --format raw --threads --nonblocking`) for"
        f" {profiles[0]['seconds']:g} s during extra cells after the table's, not counted in it."
        " Busy % is a thread's samples over the possible ones (py-spy leaves out idle samples,"
        " so it is the share of time the thread ran or waited for a CPU). Layers: where the main"
        " (event-loop) thread's samples are, by the innermost Atoll or library frame on the stack"
        " (socket system calls by the Python call that made them). The folded stacks of all"
        " nodes (line numbers dropped) are in the file named with each profile."
    )
    add("")
    for p in profiles:
        c = p["cell"]
        rate = (
            f"{c['ops_per_s']:,.0f} ops/s" if p["size"] == SMALL else f"{c['mb_per_s']:,.1f} MB/s"
        )
        add(f"### {p['op'].upper()} {p['size']} at concurrency {p['concurrency']} (`{p['file']}`)")
        add("")
        add(
            f"The profiled cell: {rate}, p50 {_fmt(c['p50_ms'], 1)} ms, p99 {_fmt(c['p99_ms'], 1)} ms,"
            f" servers {_fmt(c['server_cpu_pct'])}% of a core, client {_fmt(c['client_cpu_pct'])}%."
        )
        add("")
        nodes = p["nodes"]
        add("| Node | Main thread busy % | Other threads (busy %) |")
        add("| --- | ---: | --- |")
        for node, s in nodes.items():
            if s.get("missing"):
                add(f"| {node} | - | no profile |")
                continue
            threads = ", ".join(
                f"{t['thread']} {t['busy_pct']:.0f}"
                for t in s["threads"]
                if "MainThread" not in t["thread"]
            )
            add(f"| {node} | {s['main_busy_pct']:.0f} | {threads or '-'} |")
        add("")
        threads = p.get("thread_cpu_pct", {})
        if threads:
            kinds: list[str] = []
            for per_node in threads.values():
                kinds += [k for k, v in per_node.items() if v >= 1.0 and k not in kinds]
            add(
                "CPU of each kind of thread of the node processes, and of their child processes,"
                " over the cell, from /proc (% of a core; thread names from py-spy, by native"
                " thread id):"
            )
            add("")
            add("| Thread | " + " | ".join(f"node {n}" for n in threads) + " |")
            add("| --- | " + " | ".join("---:" for _ in threads) + " |")
            for kind in kinds:
                add(
                    f"| {kind} | "
                    + " | ".join(f"{threads[n].get(kind, 0.0):.0f}" for n in threads)
                    + " |"
                )
            add("")
        merged_cat: Counter[str] = Counter()
        merged_own: Counter[str] = Counter()
        merged_inc: Counter[str] = Counter()
        total = 0
        for s in nodes.values():
            if s.get("missing"):
                continue
            w = s["main_samples"]
            total += w
            for row in s["categories"]:
                merged_cat[row["what"]] += row["pct"] * w / 100
            for row in s["own"]:
                merged_own[row["frame"]] += row["pct"] * w / 100
            for row in s["inclusive"]:
                merged_inc[row["frame"]] += row["pct"] * w / 100
        add("Main threads of all nodes together, by layer (% of their samples):")
        add("")
        add("| Layer | % |")
        add("| --- | ---: |")
        for what, n in merged_cat.most_common():
            add(f"| {what} | {100 * n / max(total, 1):.1f} |")
        add("")
        add(
            "Top frames by own samples (the function running), and Atoll/aiohttp frames by"
            " inclusive samples (on the stack), main threads of all nodes:"
        )
        add("")
        add("| Own: frame | % | Inclusive: frame | % |")
        add("| --- | ---: | --- | ---: |")
        own = merged_own.most_common(PROFILE_TOP)
        inc = merged_inc.most_common(PROFILE_TOP)
        for i in range(max(len(own), len(inc))):
            a = own[i] if i < len(own) else ("", 0)
            b = inc[i] if i < len(inc) else ("", 0)
            add(
                f"| `{a[0]}` | {100 * a[1] / max(total, 1):.1f} | `{b[0]}` | {100 * b[1] / max(total, 1):.1f} |"
            )
        add("")


def render_failure(name: str, text: str, add: Callable[[str], None]) -> None:
    """A failed target's or run's failure: its last 3000 characters, as a code block."""
    add(f"- **{name} failed**:")
    add("")
    add("```")
    add(text[-3000:])
    add("```")


def _render_errors(report: dict[str, Any], add: Callable[[str], None]) -> None:
    failures = {n: r["failure"] for n, r in report["targets"].items() if "failure" in r}
    samples = [
        (n, c)
        for n, r in report["targets"].items()
        for c in r.get("cells", [])
        if c["errors"] or not c.get("drained", True)
    ]
    samples += [
        ("atoll (profile)", p["cell"])
        for p in report["targets"].get("atoll", {}).get("profiles", [])
        if p["cell"]["errors"]
    ]
    noisy = [
        (n, c)
        for n, r in report["targets"].items()
        for c in r.get("cells", [])
        if c.get("quiet", {}).get("others_pct", 0) >= QUIET_OTHERS_PCT
    ]
    add("## Failures and errors")
    add("")
    events = report["targets"].get("atoll", {}).get("log_events", [])
    if events:
        add(
            "Atoll's node logs: leader changes and failures during the run (a meta-group"
            " leader change means its Raft group held an election; the KV regions' elections are"
            " not logged):"
        )
        add("")
        add("```")
        for event in events:
            add(event)
        add("```")
        add("")
    for name, c in noisy:
        busiest = "; ".join(f"`{b}`" for b in c["quiet"].get("busiest", []))
        add(
            f"- {name} {c['op'].upper()} {c['size']} c{c['concurrency']} started while the rest of the"
            f" machine used {c['quiet']['others_pct']:.0f}% of a core (waited {c['quiet']['waited_s']:.0f} s)"
            + (f"; busiest: {busiest}" if busiest else "")
        )
    if noisy:
        add("")
    if not failures and not samples:
        add(
            "No request failed: every target started and passed the boto3 check, and every"
            " request of the table's and the profiles' cells succeeded."
        )
        add("")
        return
    for name, text in failures.items():
        render_failure(name, text, add)
        add("")
    for name, c in samples:
        add(
            f"- {name} {c['op'].upper()} {c['size']} c{c['concurrency']}: {c['errors']}"
            + (
                "; requests still in flight after the drain timeout were cancelled"
                if not c.get("drained", True)
                else ""
            )
        )
        for s in c["error_samples"][:3]:
            add(f"  - `{json.dumps(s)[:1200]}`")
    add("")


if __name__ == "__main__":
    sys.exit(main())
