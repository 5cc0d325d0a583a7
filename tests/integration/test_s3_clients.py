"""Real S3 clients against real node processes on 127.0.0.1 (issue 5 §4, §5).

One module-scoped cluster of 3 nodes with 2 devices each, a gateway on every node,
driven by boto3 (its default checksum behaviour left on), the AWS CLI v2 (Debian's
/usr/bin/aws), rclone and s3cmd (Debian packages) and the `minio` Python client:
objects of 0 B to 100 MiB (multipart), ranged reads, copies, listings with
delimiters and pagination over 2,500 keys, presigned GET and PUT with plain HTTP
clients, `aws s3 sync` both ways, every read compared by SHA-256 with what was
written. Then one node is killed: every object stored so far reads back identical
through another node's gateway, and new multi-stripe PUTs succeed in both default
pools. Before the cluster starts, `atoll dev` itself: a taken S3 port, and a dev
cluster that serves S3, prints a working `aws` command line and restarts with its
ports and data.

Object data comes from seeded generators, written to files once; nothing holds a
large object in memory twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from kv_cluster import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, Cluster
from minio import Minio
from minio.commonconfig import CopySource
from yarl import URL

from atoll.erasure.shard_file import ShardReader
from atoll.gateway.sigv4 import Headers, Request, sign_request, uri_encode
from dev_harness import start_dev, stop_dev

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

SRC = str(Path(__file__).resolve().parents[2] / "src")
KiB = 1024
MiB = 1024 * KiB
SIZES = (0, 1, 64 * KiB - 1, 64 * KiB, 64 * KiB + 1, 5 * MiB + 1, 100 * MiB)
# Several stripes in either default pool (the cluster's 1 MiB stripes: 256 KiB blocks
# in standard 4+2, 1 MiB blocks in replicated 1+2), above the 64 KiB inline threshold.
STRIPE_BYTES = 1 * MiB
SMALL_STRIPES = 3 * MiB + 7
MANY_STRIPES = 13 * MiB + 5
SAMPLE_SIZES = (*SIZES, SMALL_STRIPES, MANY_STRIPES)
CHUNK_BYTES = 1 * MiB

AWS = "/usr/bin/aws"  # Debian's AWS CLI v2; a pyenv shim may shadow `aws` on PATH
RCLONE = "/usr/bin/rclone"
S3CMD = "/usr/bin/s3cmd"
CLIENT_PATH = "/usr/bin:/bin"  # what the command-line clients see as PATH
REGION = "us-east-1"
CLIENTS = ("boto3", "awscli", "rclone", "s3cmd", "minio")

COMMAND_TIMEOUT_S = 300.0  # one command-line client run
READY_TIMEOUT_S = 60.0  # from the gateways' first 200 to a PUT in both pools
READY_RETRY_S = 0.2
HTTP_TIMEOUT_S = 120.0
STATUS_TIMEOUT_S = 20.0  # from the reads to the count in a heartbeat

LIST_DIRS = 25
LIST_KEYS = 2500
LIST_TOP_KEYS = ("list/top-a", "list/top-b")
PUT_CONCURRENCY = 32  # the 2,500 keys are created with this many PUTs in flight


# -- data --------------------------------------------------------------------------------------


def seeded_chunks(size: int, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    remaining = size
    while remaining:
        n = min(CHUNK_BYTES, remaining)
        yield rng.randbytes(n)
        remaining -= n


def write_seeded(path: Path, size: int, seed: int) -> str:
    """Write `size` bytes from `seed` to `path`; their SHA-256 (hex)."""
    digest = hashlib.sha256()
    with open(path, "wb") as file:
        for chunk in seeded_chunks(size, seed):
            file.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_digests(root: Path) -> dict[str, str]:
    """Every file under `root` by its path relative to `root`: its SHA-256."""
    return {
        str(path.relative_to(root)): sha256_file(path)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@dataclass(frozen=True)
class Sample:
    size: int
    path: Path
    sha256: str


@contextlib.contextmanager
def step(client: str, what: str) -> Iterator[None]:
    """Name the client and the operation in any failure inside."""
    try:
        yield
    except AssertionError as err:
        raise AssertionError(f"{client}: {what}: {err}") from err
    except Exception as err:
        raise AssertionError(f"{client}: {what} failed: {err!r}") from err


def run_tool(client: str, op: str, argv: list[str], env: dict[str, str]) -> bytes:
    """Run a command-line client; its stdout. AssertionError naming the client, the
    operation and the command (with both outputs) unless it exits 0."""
    try:
        result = subprocess.run(
            argv, env=env, capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as err:
        raise AssertionError(
            f"{client}: {op}: no exit within {COMMAND_TIMEOUT_S:g} s: {argv}"
        ) from err
    if result.returncode != 0:
        raise AssertionError(
            f"{client}: {op}: exit {result.returncode}: {argv}\n"
            f"stdout: {result.stdout.decode(errors='replace')[-3000:]}\n"
            f"stderr: {result.stderr.decode(errors='replace')[-3000:]}"
        )
    return result.stdout


def client_env(home: Path, **extra: str) -> dict[str, str]:
    """A minimal environment: nothing of the test's (AWS_*, PYTHONPATH, a pyenv PATH)
    reaches the client."""
    home.mkdir(parents=True, exist_ok=True)
    return {"PATH": CLIENT_PATH, "HOME": str(home), "LANG": "C.UTF-8", **extra}


# -- the clients -------------------------------------------------------------------------------


class S3Client(Protocol):
    """What every client does in these tests. `get_range` takes an inclusive `last`
    (None: to the end)."""

    name: str
    ranges: bool  # arbitrary byte ranges (s3cmd only resumes from an offset)

    def make_bucket(self, bucket: str) -> None: ...
    def put_file(self, bucket: str, key: str, path: Path) -> None: ...
    def get_file(self, bucket: str, key: str, path: Path) -> None: ...
    def get_range(self, bucket: str, key: str, first: int, last: int | None) -> bytes: ...
    def copy(self, src_bucket: str, src_key: str, bucket: str, key: str) -> None: ...
    def list(self, bucket: str, prefix: str, delimiter: bool) -> tuple[list[str], list[str]]: ...
    def delete(self, bucket: str, key: str) -> None: ...


def boto3_client(endpoint: str, **config: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ROOT_ACCESS_KEY,
        aws_secret_access_key=ROOT_SECRET_KEY,
        region_name=REGION,
        config=Config(
            **{
                "s3": {"addressing_style": "path"},
                "retries": {"max_attempts": 5, "mode": "standard"},
                **config,
            }
        ),
    )


class Boto3:
    name = "boto3"
    ranges = True

    def __init__(self, endpoint: str) -> None:
        self.s3 = boto3_client(endpoint)

    def make_bucket(self, bucket: str) -> None:
        self.s3.create_bucket(Bucket=bucket)

    def put_file(self, bucket: str, key: str, path: Path) -> None:
        # Managed transfer: multipart (8 MiB parts, 10 threads) above 8 MiB.
        self.s3.upload_file(str(path), bucket, key)

    def get_file(self, bucket: str, key: str, path: Path) -> None:
        # Managed transfer: HeadObject, then ranged GETs in parallel above 8 MiB.
        self.s3.download_file(bucket, key, str(path))

    def get_range(self, bucket: str, key: str, first: int, last: int | None) -> bytes:
        spec = f"bytes={first}-{'' if last is None else last}"
        response = self.s3.get_object(Bucket=bucket, Key=key, Range=spec)
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 206
        data: bytes = response["Body"].read()
        return data

    def copy(self, src_bucket: str, src_key: str, bucket: str, key: str) -> None:
        # Managed copy: UploadPartCopy above 8 MiB, CopyObject below.
        self.s3.copy({"Bucket": src_bucket, "Key": src_key}, bucket, key)

    def list(self, bucket: str, prefix: str, delimiter: bool) -> tuple[list[str], list[str]]:
        extra = {"Delimiter": "/"} if delimiter else {}
        keys: list[str] = []
        prefixes: list[str] = []
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": 1000}, **extra
        )
        for page in pages:
            keys += [item["Key"] for item in page.get("Contents", [])]
            prefixes += [item["Prefix"] for item in page.get("CommonPrefixes", [])]
        return keys, prefixes

    def delete(self, bucket: str, key: str) -> None:
        self.s3.delete_object(Bucket=bucket, Key=key)

    def sha256_of(self, bucket: str, key: str) -> str:
        """The object's SHA-256, streamed (never the whole object in memory)."""
        digest = hashlib.sha256()
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"]
        for chunk in body.iter_chunks(CHUNK_BYTES):
            digest.update(chunk)
        return digest.hexdigest()


class AwsCli:
    name = "awscli"
    ranges = True

    def __init__(self, endpoint: str, home: Path) -> None:
        self.endpoint = endpoint
        self.home = home
        config = home / ".aws" / "config"
        self.env = client_env(
            home,
            AWS_ACCESS_KEY_ID=ROOT_ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=ROOT_SECRET_KEY,
            AWS_DEFAULT_REGION=REGION,
            AWS_CONFIG_FILE=str(config),
            AWS_SHARED_CREDENTIALS_FILE=str(home / ".aws" / "credentials"),
            AWS_PAGER="",
            AWS_EC2_METADATA_DISABLED="true",
        )
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(f"[default]\nregion = {REGION}\n")

    def run(self, op: str, *args: str) -> bytes:
        return run_tool(self.name, op, [AWS, "--endpoint-url", self.endpoint, *args], self.env)

    def make_bucket(self, bucket: str) -> None:
        self.run(f"mb {bucket}", "s3", "mb", f"s3://{bucket}")

    def put_file(self, bucket: str, key: str, path: Path) -> None:
        # Multipart (8 MiB parts) above 8 MiB.
        self.run(
            f"cp to {key}", "s3", "cp", "--only-show-errors", str(path), f"s3://{bucket}/{key}"
        )

    def get_file(self, bucket: str, key: str, path: Path) -> None:
        self.run(
            f"cp from {key}", "s3", "cp", "--only-show-errors", f"s3://{bucket}/{key}", str(path)
        )

    def get_range(self, bucket: str, key: str, first: int, last: int | None) -> bytes:
        out = self.home / "range.out"
        spec = f"bytes={first}-{'' if last is None else last}"
        self.run(
            f"get-object {key} {spec}",
            "s3api", "get-object", "--bucket", bucket, "--key", key, "--range", spec, str(out),
        )  # fmt: skip
        data = out.read_bytes()
        out.unlink()
        return data

    def copy(self, src_bucket: str, src_key: str, bucket: str, key: str) -> None:
        # CopyObject; UploadPartCopy above 8 MiB.
        source, target = f"s3://{src_bucket}/{src_key}", f"s3://{bucket}/{key}"
        self.run(f"cp {src_key} to {key}", "s3", "cp", "--only-show-errors", source, target)

    def list(self, bucket: str, prefix: str, delimiter: bool) -> tuple[list[str], list[str]]:
        args = ["s3api", "list-objects-v2", "--bucket", bucket, "--prefix", prefix]
        args += ["--page-size", "1000", "--output", "json"]
        if delimiter:
            args += ["--delimiter", "/"]
        out = self.run(f"list-objects-v2 {prefix}", *args).strip()
        document = json.loads(out) if out else {}
        keys = [item["Key"] for item in document.get("Contents") or []]
        prefixes = [item["Prefix"] for item in document.get("CommonPrefixes") or []]
        return keys, prefixes

    def delete(self, bucket: str, key: str) -> None:
        self.run(f"rm {key}", "s3", "rm", "--only-show-errors", f"s3://{bucket}/{key}")


class Rclone:
    name = "rclone"
    ranges = True

    def __init__(self, endpoint: str, home: Path) -> None:
        self.env = client_env(
            home,
            RCLONE_CONFIG=str(home / "rclone.conf"),  # absent: the remote is all env
            RCLONE_CONFIG_ATOLL_TYPE="s3",
            RCLONE_CONFIG_ATOLL_PROVIDER="Other",
            RCLONE_CONFIG_ATOLL_ACCESS_KEY_ID=ROOT_ACCESS_KEY,
            RCLONE_CONFIG_ATOLL_SECRET_ACCESS_KEY=ROOT_SECRET_KEY,
            RCLONE_CONFIG_ATOLL_ENDPOINT=endpoint,
            RCLONE_CONFIG_ATOLL_REGION=REGION,
            # Multipart (5 MiB chunks) above 16 MiB instead of rclone's 200 MiB.
            RCLONE_CONFIG_ATOLL_UPLOAD_CUTOFF="16Mi",
        )

    def run(self, op: str, *args: str) -> bytes:
        argv = [RCLONE, "--retries", "1", "--low-level-retries", "2", *args]
        return run_tool(self.name, op, argv, self.env)

    def make_bucket(self, bucket: str) -> None:
        self.run(f"mkdir {bucket}", "mkdir", f"atoll:{bucket}")

    def put_file(self, bucket: str, key: str, path: Path) -> None:
        self.run(f"copyto {key}", "copyto", str(path), f"atoll:{bucket}/{key}")

    def get_file(self, bucket: str, key: str, path: Path) -> None:
        self.run(f"copyto from {key}", "copyto", f"atoll:{bucket}/{key}", str(path))

    def get_range(self, bucket: str, key: str, first: int, last: int | None) -> bytes:
        count = -1 if last is None else last - first + 1
        return self.run(
            f"cat {key} from {first} count {count}",
            "cat", "--offset", str(first), "--count", str(count), f"atoll:{bucket}/{key}",
        )  # fmt: skip

    def copy(self, src_bucket: str, src_key: str, bucket: str, key: str) -> None:
        # Server-side: CopyObject.
        self.run(
            f"copyto {src_key} to {key}",
            "copyto", f"atoll:{src_bucket}/{src_key}", f"atoll:{bucket}/{key}",
        )  # fmt: skip

    def list(self, bucket: str, prefix: str, delimiter: bool) -> tuple[list[str], list[str]]:
        assert prefix.endswith("/"), "rclone lists directories"
        args = ["lsf", f"atoll:{bucket}/{prefix}"]
        if not delimiter:
            args[1:1] = ["-R", "--files-only"]
        lines = self.run(f"lsf {prefix}", *args).decode().splitlines()
        keys = [prefix + line for line in lines if not line.endswith("/")]
        prefixes = [prefix + line for line in lines if line.endswith("/")]
        return keys, prefixes

    def delete(self, bucket: str, key: str) -> None:
        self.run(f"deletefile {key}", "deletefile", f"atoll:{bucket}/{key}")


class S3cmd:
    name = "s3cmd"
    ranges = False

    def __init__(self, endpoint: str, home: Path) -> None:
        self.env = client_env(home)
        self.config = home / ".s3cfg"
        address = endpoint.removeprefix("http://")
        self.config.write_text(
            "[default]\n"
            f"access_key = {ROOT_ACCESS_KEY}\n"
            f"secret_key = {ROOT_SECRET_KEY}\n"
            f"host_base = {address}\n"
            f"host_bucket = {address}\n"  # no %(bucket)s: path-style requests
            "use_https = False\n"
            "signature_v2 = False\n"
            f"bucket_location = {REGION}\n"
            "multipart_chunk_size_mb = 5\n"  # multipart above 5 MiB
            "progress_meter = False\n"
        )

    def run(self, op: str, *args: str) -> bytes:
        return run_tool(self.name, op, [S3CMD, "-c", str(self.config), *args], self.env)

    def make_bucket(self, bucket: str) -> None:
        self.run(f"mb {bucket}", "mb", f"s3://{bucket}")

    def put_file(self, bucket: str, key: str, path: Path) -> None:
        self.run(f"put {key}", "put", str(path), f"s3://{bucket}/{key}")

    def get_file(self, bucket: str, key: str, path: Path) -> None:
        self.run(f"get {key}", "get", "--force", f"s3://{bucket}/{key}", str(path))

    def resume(self, bucket: str, key: str, path: Path) -> None:
        """Complete the partial download in `path` (a ranged GET from its length)."""
        self.run(f"get --continue {key}", "get", "--continue", f"s3://{bucket}/{key}", str(path))

    def get_range(self, bucket: str, key: str, first: int, last: int | None) -> bytes:
        raise NotImplementedError("s3cmd only resumes downloads (see resume)")

    def copy(self, src_bucket: str, src_key: str, bucket: str, key: str) -> None:
        self.run(
            f"cp {src_key} to {key}", "cp", f"s3://{src_bucket}/{src_key}", f"s3://{bucket}/{key}"
        )

    def list(self, bucket: str, prefix: str, delimiter: bool) -> tuple[list[str], list[str]]:
        args = ["ls", f"s3://{bucket}/{prefix}"]
        if not delimiter:
            args.insert(1, "--recursive")
        keys: list[str] = []
        prefixes: list[str] = []
        base = f"s3://{bucket}/"
        for line in self.run(f"ls {prefix}", *args).decode().splitlines():
            fields = line.split()
            if not fields or not fields[-1].startswith(base):
                continue
            name = fields[-1].removeprefix(base)
            (prefixes if fields[-2] == "DIR" else keys).append(name)
        return keys, prefixes

    def delete(self, bucket: str, key: str) -> None:
        self.run(f"del {key}", "del", f"s3://{bucket}/{key}")


class MinioClient:
    name = "minio"
    ranges = True

    def __init__(self, endpoint: str) -> None:
        self.mc = Minio(
            endpoint.removeprefix("http://"),
            access_key=ROOT_ACCESS_KEY,
            secret_key=ROOT_SECRET_KEY,
            secure=False,
            region=REGION,
        )

    def make_bucket(self, bucket: str) -> None:
        self.mc.make_bucket(bucket)

    def put_file(self, bucket: str, key: str, path: Path) -> None:
        # Multipart with 5 MiB parts above 5 MiB (5 MiB + 1 is two parts).
        self.mc.fput_object(bucket, key, str(path))

    def get_file(self, bucket: str, key: str, path: Path) -> None:
        self.mc.fget_object(bucket, key, str(path))

    def get_range(self, bucket: str, key: str, first: int, last: int | None) -> bytes:
        length = 0 if last is None else last - first + 1
        response = self.mc.get_object(bucket, key, offset=first, length=length)
        try:
            assert response.status == 206, response.status
            data: bytes = response.read()
            return data
        finally:
            response.close()
            response.release_conn()

    def copy(self, src_bucket: str, src_key: str, bucket: str, key: str) -> None:
        self.mc.copy_object(bucket, key, CopySource(src_bucket, src_key))

    def list(self, bucket: str, prefix: str, delimiter: bool) -> tuple[list[str], list[str]]:
        keys: list[str] = []
        prefixes: list[str] = []
        for item in self.mc.list_objects(bucket, prefix=prefix, recursive=not delimiter):
            assert item.object_name is not None
            (prefixes if item.is_dir else keys).append(item.object_name)
        return keys, prefixes

    def delete(self, bucket: str, key: str) -> None:
        self.mc.remove_object(bucket, key)


# -- the cluster -------------------------------------------------------------------------------


@dataclass
class S3Cluster:
    cluster: Cluster
    home: Path
    # Every object stored, (bucket, key) -> SHA-256: all must survive a killed node.
    committed: dict[tuple[str, str], str] = field(default_factory=dict)
    _clients: dict[str, S3Client] = field(default_factory=dict)

    def endpoint(self, node_id: int = 1) -> str:
        return f"http://{self.cluster.nodes[node_id].s3}"

    def boto3(self, node_id: int = 1) -> Boto3:
        return Boto3(self.endpoint(node_id))

    def client(self, name: str) -> S3Client:
        """The client `name` on node 1's gateway (made once)."""
        if name not in self._clients:
            home = self.home / name
            home.mkdir(parents=True, exist_ok=True)
            endpoint = self.endpoint(1)
            made: dict[str, Any] = {
                "boto3": lambda: Boto3(endpoint),
                "awscli": lambda: AwsCli(endpoint, home),
                "rclone": lambda: Rclone(endpoint, home),
                "s3cmd": lambda: S3cmd(endpoint, home),
                "minio": lambda: MinioClient(endpoint),
            }
            self._clients[name] = made[name]()
        return self._clients[name]


def wait_writable(s3: S3Cluster) -> None:
    """Until a multi-stripe PUT through every gateway succeeds in both default pools:
    the gateways' maps hold the pools and their PG tables."""
    data = b"ready" * (256 * KiB)  # 1.25 MiB
    deadline = time.monotonic() + READY_TIMEOUT_S
    last: Exception | None = None
    for node_id in s3.cluster.nodes:
        client = boto3_client(s3.endpoint(node_id), retries={"max_attempts": 1})
        for storage_class in ("STANDARD", "REDUCED_REDUNDANCY"):
            key = f"node-{node_id}-{storage_class}"
            while True:
                try:
                    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                        client.create_bucket(Bucket="ready")
                    client.put_object(
                        Bucket="ready", Key=key, Body=data, StorageClass=storage_class
                    )
                    break
                except Exception as err:  # not placed yet: retried until the deadline
                    last = err
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"no PUT in {storage_class} through node {node_id} within"
                        f" {READY_TIMEOUT_S:g} s (last: {last!r})\n{s3.cluster.logs()}"
                    )
                time.sleep(READY_RETRY_S)
            s3.committed[("ready", key)] = sha256(data)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Cluster]:
    cluster = Cluster(
        tmp_path_factory.mktemp("cluster"),
        devices_per_node=2,
        bootstrap=True,
        s3=True,
        heartbeat_interval_s=0.5,
        down_after_s=5.0,
        stripe_bytes=STRIPE_BYTES,  # not the default 4 MiB: many stripes at small sizes
    )

    async def gateways() -> None:
        for node_id in cluster.nodes:
            await cluster.wait_s3(node_id)

    try:
        cluster.start_all()
        asyncio.run(gateways())
        s3 = S3Cluster(cluster, tmp_path_factory.mktemp("clients"))
        wait_writable(s3)
        yield s3
    finally:
        cluster.stop_all()


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Sample]:
    root = tmp_path_factory.mktemp("samples")
    return {
        size: Sample(size, root / f"{size}.bin", write_seeded(root / f"{size}.bin", size, size))
        for size in SAMPLE_SIZES
    }


# -- atoll dev -----------------------------------------------------------------------------


def test_atoll_dev_refuses_an_s3_port_in_use_before_starting_anything(tmp_path: Path) -> None:
    root = tmp_path / "dev"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "atoll.cli", "dev", "--dir", str(root), "--s3-port", str(port)],
            env=dict(os.environ, PYTHONPATH=SRC),
            capture_output=True,
            timeout=60,
            check=False,
        )
    assert result.returncode != 0
    assert f"127.0.0.1:{port} is in use" in result.stderr.decode(), result.stderr
    assert "--s3-port" in result.stderr.decode()
    assert not list(root.glob("node-*")), "configs were written for a cluster that cannot start"


def test_atoll_dev_serves_s3_prints_an_aws_example_and_restarts_on_its_ports(
    tmp_path: Path,
) -> None:
    root = tmp_path / "dev"
    run = start_dev(root, "--nodes", "3", "--devices-per-node", "2", "--s3-port", "0")
    try:
        document = run.document
        urls = [node["s3"] for node in document["nodes"]]
        assert len(urls) == 3 and all(url.startswith("http://127.0.0.1:") for url in urls)
        credentials = (document["access_key"], document["secret_key"])
        output = run.out.read_text()
        assert f"S3 endpoint: {urls[0]}" in output
        assert f"access key {credentials[0]}  secret key {credentials[1]}" in output
        example = next(line.strip() for line in output.splitlines() if "aws --endpoint-url" in line)
        assert (
            example.startswith("AWS_ACCESS_KEY_ID=")
            and f"--endpoint-url {urls[0]} s3 ls" in example
        )
        # Pasted into a shell whose `aws` is Debian's AWS CLI v2: it lists the buckets.
        home = tmp_path / "home"
        listed = run_tool(
            "awscli", "the printed example", ["/bin/sh", "-c", example], client_env(home)
        )
        assert listed == b""  # no buckets yet
        s3 = boto3.client(
            "s3",
            endpoint_url=urls[1],
            aws_access_key_id=credentials[0],
            aws_secret_access_key=credentials[1],
            region_name=REGION,
        )
        s3.create_bucket(Bucket="kept")
        data = random.Random(7).randbytes(70 * KiB)
        s3.put_object(Bucket="kept", Key="k", Body=data)
    finally:
        code = stop_dev(run)
    assert code == 0, run.out.read_text()
    assert not (root / "cluster.json").exists()

    # Again on the same directory, without options: the same ports, keys and data.
    again = start_dev(root)
    try:
        assert [node["s3"] for node in again.document["nodes"]] == urls
        assert (again.document["access_key"], again.document["secret_key"]) == credentials
        s3 = boto3.client(
            "s3",
            endpoint_url=urls[2],
            aws_access_key_id=credentials[0],
            aws_secret_access_key=credentials[1],
            region_name=REGION,
        )
        assert s3.get_object(Bucket="kept", Key="k")["Body"].read() == data
    finally:
        code = stop_dev(again)
    assert code == 0, again.out.read_text()


# -- every client, every size ------------------------------------------------------------------


@pytest.mark.parametrize("name", CLIENTS)
def test_objects_of_every_size_read_back_identical(
    name: str, s3: S3Cluster, samples: dict[int, Sample], tmp_path: Path
) -> None:
    client = s3.client(name)
    bucket = f"sizes-{name}"
    with step(name, f"create bucket {bucket}"):
        client.make_bucket(bucket)
    for size in SIZES:
        with step(name, f"PUT {size} B"):
            client.put_file(bucket, f"obj-{size}", samples[size].path)
        s3.committed[(bucket, f"obj-{size}")] = samples[size].sha256
    reference = s3.boto3()
    for size in SIZES:
        key = f"obj-{size}"
        with step(name, f"HEAD {key} (through boto3)"):
            head = reference.s3.head_object(Bucket=bucket, Key=key)
            assert head["ContentLength"] == size
        out = tmp_path / key
        with step(name, f"GET {size} B"):
            client.get_file(bucket, key, out)
            assert sha256_file(out) == samples[size].sha256, "the bytes read back differ"
        out.unlink()


@pytest.mark.parametrize("name", CLIENTS)
def test_ranged_reads(name: str, s3: S3Cluster, samples: dict[int, Sample], tmp_path: Path) -> None:
    client = s3.client(name)
    sample = samples[5 * MiB + 1]
    data = sample.path.read_bytes()
    size = len(data)
    bucket = f"ranges-{name}"
    with step(name, "create bucket and PUT 5 MiB + 1"):
        client.make_bucket(bucket)
        client.put_file(bucket, "r", sample.path)
    s3.committed[(bucket, "r")] = sample.sha256
    if client.ranges:
        ranges: list[tuple[int, int | None]] = [
            (0, 0),
            (0, 9),
            (1, 100),
            (64 * KiB - 1, 64 * KiB + 1),
            (256 * KiB - 3, 256 * KiB + 3),  # across a block of a standard-pool stripe
            (MiB - 3, MiB + 3),  # across a stripe
            (4 * MiB - 1, 4 * MiB),  # across a later stripe
            (100, None),
            (size - 1, None),
            (size - 10, size - 1),
            (5, size + 100),  # past the end: up to the end
        ]
        for first, last in ranges:
            with step(name, f"GET bytes={first}-{'' if last is None else last}"):
                got = client.get_range(bucket, "r", first, last)
                expected = data[first : None if last is None else last + 1]
                assert len(got) == len(expected) and sha256(got) == sha256(expected)
    else:
        assert isinstance(client, S3cmd)
        for have in (1, 64 * KiB + 1, 4 * MiB + 3, size - 1):
            partial = tmp_path / f"partial-{have}"
            partial.write_bytes(data[:have])
            with step(name, f"GET --continue from byte {have}"):
                client.resume(bucket, "r", partial)
                assert sha256_file(partial) == sample.sha256


@pytest.mark.parametrize("name", CLIENTS)
def test_copies_read_back_identical(
    name: str, s3: S3Cluster, samples: dict[int, Sample], tmp_path: Path
) -> None:
    client = s3.client(name)
    bucket, other = f"copies-{name}", f"copies-{name}-to"
    with step(name, "create buckets"):
        client.make_bucket(bucket)
        client.make_bucket(other)
    for size in (1, 64 * KiB + 1, MANY_STRIPES):
        sample = samples[size]
        with step(name, f"PUT {size} B"):
            client.put_file(bucket, f"src-{size}", sample.path)
        s3.committed[(bucket, f"src-{size}")] = sample.sha256
        for target_bucket, target_key in ((bucket, f"copy-{size}"), (other, f"dir/copy-{size}")):
            with step(name, f"copy {size} B to {target_bucket}/{target_key}"):
                client.copy(bucket, f"src-{size}", target_bucket, target_key)
            s3.committed[(target_bucket, target_key)] = sample.sha256
            out = tmp_path / "copy.out"
            with step(name, f"GET the copy {target_bucket}/{target_key}"):
                client.get_file(target_bucket, target_key, out)
                assert sha256_file(out) == sample.sha256, "the copy's bytes differ"
            out.unlink()


def test_gateways_cut_objects_in_the_configured_stripe_size(s3: S3Cluster) -> None:
    """The nodes' `stripe_bytes` (1 MiB here, not the 4 MiB default) reaches the
    gateways: every shard file of a new object records it in its header."""
    client = s3.boto3().s3
    client.create_bucket(Bucket="stripes")
    body = random.Random(11).randbytes(3 * MiB + 1)
    client.put_object(Bucket="stripes", Key="striped", Body=body)
    s3.committed[("stripes", "striped")] = sha256(body)
    headers = []
    for path in s3.cluster.root.glob("dev-*/**/*.shard"):
        with ShardReader(str(path)) as reader:
            if (reader.header.bucket, reader.header.key) == ("stripes", "striped"):
                headers.append(reader.header)
    assert len(headers) == 6  # the standard pool's 4+2
    assert {h.block_size for h in headers} == {STRIPE_BYTES}
    assert {h.data_length for h in headers} == {len(body)}


def test_boto3_copy_replaces_or_keeps_user_metadata(s3: S3Cluster) -> None:
    client = s3.boto3().s3
    client.create_bucket(Bucket="metadata")
    body = random.Random(3).randbytes(100 * KiB)
    client.put_object(
        Bucket="metadata", Key="m", Body=body, Metadata={"color": "red"}, ContentType="text/x-red"
    )
    client.copy_object(Bucket="metadata", Key="kept", CopySource={"Bucket": "metadata", "Key": "m"})
    client.copy_object(
        Bucket="metadata",
        Key="replaced",
        CopySource={"Bucket": "metadata", "Key": "m"},
        MetadataDirective="REPLACE",
        Metadata={"color": "blue"},
        ContentType="text/x-blue",
    )
    kept = client.head_object(Bucket="metadata", Key="kept")
    replaced = client.head_object(Bucket="metadata", Key="replaced")
    assert (kept["Metadata"], kept["ContentType"]) == ({"color": "red"}, "text/x-red")
    assert (replaced["Metadata"], replaced["ContentType"]) == ({"color": "blue"}, "text/x-blue")
    for key in ("m", "kept", "replaced"):
        assert client.get_object(Bucket="metadata", Key=key)["Body"].read() == body
        s3.committed[("metadata", key)] = sha256(body)


# -- listings ----------------------------------------------------------------------------------


LIST_KEYS_ALL = sorted(
    [f"list/d{i % LIST_DIRS:02d}/k{i:05d}" for i in range(LIST_KEYS)] + list(LIST_TOP_KEYS)
)


async def put_many(address: str, bucket: str, items: list[tuple[str, bytes]]) -> None:
    """PUT every (key, body) with `PUT_CONCURRENCY` requests in flight, signed here
    (SigV4, signed payload) and sent with aiohttp."""
    slots = asyncio.Semaphore(PUT_CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def put(key: str, body: bytes) -> None:
            path = f"/{bucket}/{uri_encode(key, keep_slash=True)}"
            request = sign_request(
                Request("PUT", path, (), Headers([("host", address)])),
                access_key=ROOT_ACCESS_KEY,
                secret_key=ROOT_SECRET_KEY,
                region=REGION,
                now_s=time.time(),
                payload_hash=sha256(body),
            )
            async with (
                slots,
                session.put(
                    URL(f"http://{address}{path}", encoded=True),
                    data=body,
                    headers=dict(request.headers),
                ) as response,
            ):
                text = await response.text()
                assert response.status == 200, f"PUT {key}: HTTP {response.status} {text}"

        await asyncio.gather(*(put(key, body) for key, body in items))


@pytest.fixture(scope="module")
def listing(s3: S3Cluster) -> str:
    """A bucket with `LIST_KEYS_ALL`: 25 "directories" of 100 keys under list/, and
    two keys directly under it."""
    bucket = "listing"
    s3.boto3().make_bucket(bucket)
    items = [(key, key.encode()) for key in LIST_KEYS_ALL]
    asyncio.run(put_many(s3.cluster.nodes[1].s3, bucket, items))
    for key, body in items:
        s3.committed[(bucket, key)] = sha256(body)
    return bucket


@pytest.mark.parametrize("name", CLIENTS)
def test_listings_with_delimiters_and_pagination(name: str, s3: S3Cluster, listing: str) -> None:
    client = s3.client(name)
    with step(name, "list list/ with delimiter /"):
        keys, prefixes = client.list(listing, "list/", delimiter=True)
        assert sorted(prefixes) == [f"list/d{i:02d}/" for i in range(LIST_DIRS)]
        assert sorted(keys) == list(LIST_TOP_KEYS)
    with step(name, f"list all {len(LIST_KEYS_ALL)} keys under list/"):
        keys, prefixes = client.list(listing, "list/", delimiter=False)
        assert prefixes == []
        assert len(keys) == len(LIST_KEYS_ALL) and sorted(keys) == LIST_KEYS_ALL
        if name in ("boto3", "awscli", "minio"):  # as returned: in S3 (UTF-8 binary) order
            assert keys == LIST_KEYS_ALL, "a listing out of order"
    with step(name, "list list/d07/"):
        keys, _ = client.list(listing, "list/d07/", delimiter=False)
        assert sorted(keys) == [k for k in LIST_KEYS_ALL if k.startswith("list/d07/")]


def test_boto3_pages_through_2500_keys_with_every_listing_api(s3: S3Cluster, listing: str) -> None:
    client = s3.boto3().s3
    # v2: continuation tokens, 1000 per page.
    pages = list(
        client.get_paginator("list_objects_v2").paginate(
            Bucket=listing, Prefix="list/", PaginationConfig={"PageSize": 1000}
        )
    )
    assert [page["KeyCount"] for page in pages] == [1000, 1000, len(LIST_KEYS_ALL) - 2000]
    assert [c["Key"] for page in pages for c in page["Contents"]] == LIST_KEYS_ALL
    # v2 from StartAfter.
    after = client.list_objects_v2(Bucket=listing, StartAfter=LIST_KEYS_ALL[1499], MaxKeys=10)
    assert [c["Key"] for c in after["Contents"]] == LIST_KEYS_ALL[1500:1510]
    # v1: markers, 700 per page.
    pages = list(
        client.get_paginator("list_objects").paginate(
            Bucket=listing, Prefix="list/", PaginationConfig={"PageSize": 700}
        )
    )
    assert [len(page["Contents"]) for page in pages] == [700, 700, 700, len(LIST_KEYS_ALL) - 2100]
    assert [c["Key"] for page in pages for c in page["Contents"]] == LIST_KEYS_ALL
    # Delimiter pages of 7: common prefixes count against MaxKeys, none repeats.
    seen_keys: list[str] = []
    seen_prefixes: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=listing, Prefix="list/", Delimiter="/", PaginationConfig={"PageSize": 7}
    ):
        entries = page.get("Contents", []) + page.get("CommonPrefixes", [])
        assert len(entries) <= 7
        seen_keys += [c["Key"] for c in page.get("Contents", [])]
        seen_prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    assert seen_prefixes == [f"list/d{i:02d}/" for i in range(LIST_DIRS)]
    assert seen_keys == list(LIST_TOP_KEYS)
    # ListObjectVersions on the unversioned bucket: every object, VersionId null.
    versions = client.list_object_versions(Bucket=listing, Prefix="list/d00/")
    assert [v["Key"] for v in versions["Versions"]] == [
        k for k in LIST_KEYS_ALL if k.startswith("list/d00/")
    ]
    assert {v["VersionId"] for v in versions["Versions"]} == {"null"}


# -- presigned URLs with plain HTTP clients ----------------------------------------------------


def test_presigned_get_and_put_with_plain_http(s3: S3Cluster, samples: dict[int, Sample]) -> None:
    reference = s3.boto3()
    presigner = boto3_client(s3.endpoint(2), signature_version="s3v4")
    bucket = "presigned"
    reference.make_bucket(bucket)
    small, large = samples[64 * KiB + 1], samples[5 * MiB + 1]
    reference.put_file(bucket, "small", small.path)
    s3.committed[(bucket, "small")] = small.sha256

    # boto3's URLs with urllib: GET, a ranged GET, and a PUT streamed from a file.
    url = presigner.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "small"}, ExpiresIn=300
    )
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
        assert sha256(response.read()) == small.sha256, "presigned GET (urllib)"
    ranged = urllib.request.Request(url, headers={"Range": "bytes=10-19"})
    with urllib.request.urlopen(ranged, timeout=HTTP_TIMEOUT_S) as response:
        assert response.status == 206
        assert response.read() == small.path.read_bytes()[10:20], "presigned ranged GET"
    url = presigner.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "up-large"}, ExpiresIn=300
    )
    with open(large.path, "rb") as file:
        request = urllib.request.Request(
            url,
            data=file,
            method="PUT",
            headers={"Content-Length": str(large.size), "Content-Type": "binary/octet-stream"},
        )
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            assert response.status == 200, "presigned PUT (urllib)"
    s3.committed[(bucket, "up-large")] = large.sha256
    assert reference.sha256_of(bucket, "up-large") == large.sha256, "read after presigned PUT"

    # minio's URLs with aiohttp.
    mc = MinioClient(s3.endpoint(3)).mc
    get_url = mc.presigned_get_object(bucket, "up-large", expires=datetime.timedelta(minutes=5))
    put_url = mc.presigned_put_object(bucket, "up-small", expires=datetime.timedelta(minutes=5))
    body = small.path.read_bytes()

    async def through_aiohttp() -> str:
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.put(URL(put_url, encoded=True), data=body) as response:
                assert response.status == 200, f"presigned PUT (aiohttp): {await response.text()}"
            digest = hashlib.sha256()
            async with session.get(URL(get_url, encoded=True)) as response:
                assert response.status == 200, f"presigned GET (aiohttp): {await response.text()}"
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    digest.update(chunk)
            return digest.hexdigest()

    assert asyncio.run(through_aiohttp()) == large.sha256, "presigned GET (aiohttp)"
    s3.committed[(bucket, "up-small")] = small.sha256
    assert reference.sha256_of(bucket, "up-small") == small.sha256


# -- aws s3 sync -------------------------------------------------------------------------------


def test_aws_s3_sync_of_a_folder_tree_both_ways(
    s3: S3Cluster, samples: dict[int, Sample], tmp_path: Path
) -> None:
    aws = s3.client("awscli")
    assert isinstance(aws, AwsCli)
    reference = s3.boto3()
    tree = tmp_path / "tree"
    files = {
        "a.txt": b"hello\n",
        "empty": b"",
        "sub/b.bin": samples[64 * KiB + 1].path.read_bytes(),
        "with space/\u00fc-file.txt": b"unicode and a space\n",
    }
    for relative, data in files.items():
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        (tree / relative).write_bytes(data)
    (tree / "sub" / "deeper").mkdir()
    write_seeded(tree / "sub" / "deeper" / "c.bin", 5 * MiB + 1, 51)
    write_seeded(tree / "sub" / "deeper" / "big.bin", MANY_STRIPES, 52)  # multipart

    def landed() -> dict[str, str]:
        keys, _ = reference.list("sync", "up/", delimiter=False)
        return {key.removeprefix("up/"): reference.sha256_of("sync", key) for key in keys}

    aws.make_bucket("sync")
    aws.run("sync up", "s3", "sync", "--only-show-errors", str(tree), "s3://sync/up/")
    assert landed() == tree_digests(tree), "aws s3 sync up: the bucket differs from the tree"
    down = tmp_path / "down"
    aws.run("sync down", "s3", "sync", "--only-show-errors", "s3://sync/up/", str(down))
    assert tree_digests(down) == tree_digests(tree), "aws s3 sync down: the trees differ"

    # A change on each side, then --delete both ways.
    (tree / "a.txt").write_bytes(b"hello again, longer\n")
    (tree / "empty").unlink()
    (tree / "new.txt").write_bytes(b"new\n")
    sync = ("s3", "sync", "--delete", "--only-show-errors")
    aws.run("sync up --delete", *sync, str(tree), "s3://sync/up/")
    assert landed() == tree_digests(tree), "aws s3 sync up --delete"
    aws.run("sync down --delete", *sync, "s3://sync/up/", str(down))
    assert tree_digests(down) == tree_digests(tree), "aws s3 sync down --delete"
    for relative, digest in tree_digests(tree).items():
        s3.committed[("sync", f"up/{relative}")] = digest


# -- one node killed ---------------------------------------------------------------------------


def wait_degraded_reads(cluster: Cluster, node_id: int) -> int:
    """Node `node_id`'s degraded-read count in `atoll status --json` once it is
    positive (the count arrives with a heartbeat); the last count after the timeout."""
    deadline = time.monotonic() + STATUS_TIMEOUT_S
    count = 0
    while True:
        out = run_tool(
            "atoll status",
            "--json",
            [
                sys.executable,
                "-m",
                "atoll.cli",
                "status",
                "--endpoint",
                cluster.nodes[1].rpc,
                "--json",
            ],
            dict(os.environ, PYTHONPATH=SRC),
        )
        document = json.loads(out)
        node = next(n for n in document["nodes"] if n["id"] == node_id)
        count = node["degraded_reads"] or 0
        if count > 0 or time.monotonic() > deadline:
            assert document["degraded_reads"] >= count
            return int(count)
        time.sleep(READY_RETRY_S)


def put_in_class(client: Boto3, bucket: str, key: str, sample: Sample, storage_class: str) -> None:
    with open(sample.path, "rb") as body:
        client.s3.put_object(Bucket=bucket, Key=key, Body=body, StorageClass=storage_class)


def test_with_a_node_killed_every_object_reads_back_and_both_pools_take_writes(
    s3: S3Cluster, samples: dict[int, Sample], tmp_path: Path
) -> None:
    first = s3.boto3(1)
    first.make_bucket("survive")
    placed = {"std": ("STANDARD", MANY_STRIPES), "rr": ("REDUCED_REDUNDANCY", SMALL_STRIPES)}
    for key, (storage_class, size) in placed.items():
        put_in_class(first, "survive", key, samples[size], storage_class)
        s3.committed[("survive", key)] = samples[size].sha256
    head = first.s3.head_object(Bucket="survive", Key="rr")
    assert head.get("StorageClass") == "REDUCED_REDUNDANCY"
    assert first.s3.head_object(Bucket="survive", Key="std").get("StorageClass", "STANDARD") == (
        "STANDARD"
    )
    multi_stripe = [key for key in s3.committed if key[0].startswith("sizes-")]
    assert multi_stripe, "no multi-stripe objects were stored before the kill"

    s3.cluster.kill(2)
    third = s3.boto3(3)
    for (bucket, key), digest in sorted(s3.committed.items()):
        with step("boto3 via node 3", f"GET {bucket}/{key} with node 2 killed"):
            assert third.sha256_of(bucket, key) == digest, "the bytes read back differ"
    # The decode path ran: node 3's gateway counts degraded reads in its heartbeats.
    assert wait_degraded_reads(s3.cluster, node_id=3) > 0

    # New multi-stripe writes in both default pools, single and multipart, through
    # both gateways left; read back through the other.
    multipart = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    gateways = {1: first, 3: third}
    for writer_id, reader_id in ((3, 1), (1, 3)):
        writer, reader = gateways[writer_id], gateways[reader_id]
        for key, (storage_class, size) in placed.items():
            new_key = f"after-{key}-via-{writer_id}"
            with step("boto3", f"PUT {new_key} ({storage_class}) with node 2 killed"):
                put_in_class(writer, "survive", new_key, samples[size], storage_class)
                assert reader.sha256_of("survive", new_key) == samples[size].sha256
            with step("boto3", f"multipart upload in {storage_class} with node 2 killed"):
                writer.s3.upload_file(
                    str(samples[MANY_STRIPES].path),
                    "survive",
                    f"{new_key}-multipart",
                    ExtraArgs={"StorageClass": storage_class},
                    Config=multipart,
                )
                assert reader.sha256_of("survive", f"{new_key}-multipart") == (
                    samples[MANY_STRIPES].sha256
                )
