"""`atoll kv ...`: small coroutines over `atoll.kv.Client`, one per subcommand, and
the text forms of keys, values and events they print. Does I/O: the network, the
terminal, and reading cluster.json (written by `atoll dev`, `atoll.server.dev`).

Keys and values are UTF-8 text on the command line. Output that must stay one record
per line (scan, watch) escapes backslashes, control characters (tab and newline
among them) and bytes that are not UTF-8 as `\\xNN`; `get` prints the value's bytes
as they are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from atoll.base.errors import AtollError
from atoll.server.dev import CLUSTER_FILE, DevError, kv_endpoints, split_address

DEFAULT_CLUSTER_FILE = Path(".atoll") / CLUSTER_FILE
COMMAND_TIMEOUT_S = 30.0  # a whole get/put/del/scan, retries included; not a watch
CONNECT_TIMEOUT_S = 10.0  # a watch's connect

T = TypeVar("T")


# -- endpoints ----------------------------------------------------------------------------


def parse_endpoints(text: str) -> list[str]:
    """`"a:1, b:2"` -> `["a:1", "b:2"]`; DevError for an empty list or a bad address."""
    endpoints = [part.strip() for part in text.split(",") if part.strip()]
    if not endpoints:
        raise DevError(f"--endpoints {text!r} names no host:port")
    for endpoint in endpoints:
        split_address(endpoint)
    return endpoints


def resolve_endpoints(
    endpoints: str | None, cluster_file: Path | None, kind: str = "kv"
) -> list[str]:
    """`--endpoints` if given, else the `kind` ("kv" or "rpc") addresses in `--cluster`
    (default `./.atoll/cluster.json`)."""
    if endpoints is not None:
        return parse_endpoints(endpoints)
    path = DEFAULT_CLUSTER_FILE if cluster_file is None else cluster_file
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise DevError(
            f"no --endpoints given and {path} does not exist: start a cluster with"
            f" `atoll dev`, or pass --endpoints host:port,... or --cluster FILE"
        ) from err
    except OSError as err:
        raise DevError(f"cannot read {path}: {err}") from err
    return kv_endpoints(text, str(path), kind)


# -- text forms ---------------------------------------------------------------------------


def to_bytes(text: str) -> bytes:
    """A command-line argument as the bytes the user typed (surrogateescape undoes
    Python's decoding of argv bytes that are not UTF-8)."""
    return text.encode("utf-8", "surrogateescape")


def show(data: bytes, also: str = "") -> str:
    """`data` as one line of text: UTF-8 as it is, except backslash (`\\\\`), control
    characters, the characters of `also` and bytes that are not UTF-8 (`\\xNN`)."""
    out = []
    for ch in data.decode("utf-8", "surrogateescape"):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, carried as a lone surrogate
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == "\\":
            out.append("\\\\")
        elif code < 0x20 or code == 0x7F or ch in also:
            out.append(f"\\x{code:02x}")
        else:
            out.append(ch)
    return "".join(out)


def scan_line(key: bytes, value: bytes) -> str:
    return f"{show(key)}\t{show(value)}"


def event_line(revision: int, kind: str, key: bytes, value: bytes) -> str:
    """`revision type key value`; a key's spaces are escaped so the fields split."""
    line = f"{revision} {kind} {show(key, also=' ')}"
    return f"{line} {show(value)}" if kind == "put" else line


# -- commands -----------------------------------------------------------------------------


def run(command: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine; an expected failure becomes a one-line error
    (exit 1) instead of a traceback."""
    try:
        return asyncio.run(command)
    except (AtollError, TimeoutError) as err:
        raise click.ClickException(str(err) or type(err).__name__) from err


async def put(endpoints: list[str], key: bytes, value: bytes) -> None:
    from atoll.kv import Client

    async with asyncio.timeout(COMMAND_TIMEOUT_S), await Client.connect(endpoints) as client:
        await client.put(key, value)


async def get(endpoints: list[str], key: bytes, serializable: bool) -> bytes | None:
    from atoll.kv import Client

    async with asyncio.timeout(COMMAND_TIMEOUT_S), await Client.connect(endpoints) as client:
        return await client.get(key, serializable=serializable)


async def delete(endpoints: list[str], key: bytes) -> bool:
    from atoll.kv import Client

    async with asyncio.timeout(COMMAND_TIMEOUT_S), await Client.connect(endpoints) as client:
        return await client.delete(key)


async def scan(
    endpoints: list[str], start: bytes, end: bytes | None, limit: int, reverse: bool
) -> list[tuple[bytes, bytes]]:
    from atoll.kv import Client

    async with asyncio.timeout(COMMAND_TIMEOUT_S), await Client.connect(endpoints) as client:
        return await client.scan(start, end, limit=limit, reverse=reverse)


async def watch(
    endpoints: list[str], prefix: bytes, from_revision: int | None, echo: Callable[[str], None]
) -> None:
    """Print every event under `prefix` until the stream ends or the task is
    cancelled (Ctrl-C)."""
    from atoll.kv import Client

    async with asyncio.timeout(CONNECT_TIMEOUT_S):
        client = await Client.connect(endpoints)
    async with client:
        async for event in client.watch(prefix, from_revision):
            echo(event_line(event.revision, event.type, event.key, event.value))
