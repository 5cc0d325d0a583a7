"""Engines for the KV tests: every kind, in `tmp_path`, closed at teardown.

The LSM runs with a small memtable and its background work on a thread, so that
flushes and compactions happen within a test's few kilobytes without worker processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from atoll.engine import Engine, open_engine

KV_ENGINE_KINDS = ("memory", "lmdb", "lsm")
DURABLE_KINDS = ("lmdb", "lsm")
KV_ENGINE_OPTIONS: dict[str, dict[str, Any]] = {
    "lsm": {"memtable_size_bytes": 4096, "background": "thread"},
}

KvEngineOpener = Callable[[str], Engine]


def open_kv_engine(path: str, kind: str) -> Engine:
    return open_engine(path, kind=kind, **KV_ENGINE_OPTIONS.get(kind, {}))


@pytest.fixture(params=KV_ENGINE_KINDS)
def kv_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture(params=DURABLE_KINDS)
def durable_kv_kind(request: pytest.FixtureRequest) -> str:
    """The kinds that keep data across a reopen, for crash and reopen tests."""
    kind: str = request.param
    return kind


@pytest.fixture
def open_kv(tmp_path: Path, kv_kind: str) -> Iterator[KvEngineOpener]:
    """`open_kv(name)` opens `tmp_path / name` with the test's engine kind; whatever is
    still open at teardown is closed."""
    yield from _opener(tmp_path, kv_kind)


@pytest.fixture
def open_durable_kv(tmp_path: Path, durable_kv_kind: str) -> Iterator[KvEngineOpener]:
    """As `open_kv`, over the kinds that keep data across a reopen."""
    yield from _opener(tmp_path, durable_kv_kind)


def _opener(tmp_path: Path, kv_kind: str) -> Iterator[KvEngineOpener]:
    opened: list[Engine] = []

    def _open(name: str) -> Engine:
        engine = open_kv_engine(str(tmp_path / name), kv_kind)
        opened.append(engine)
        return engine

    yield _open
    for engine in opened:
        engine.close()
