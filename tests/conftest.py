"""Fixtures shared by every test directory: the engine kinds, and an opener that
closes whatever it opened."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from atoll.engine import Engine, open_engine

# Every kind must pass the same contract; "memory" is also the model's reference.
ENGINE_KINDS = ("memory", "lmdb", "lsm")

# Small enough that the LSM flushes (and compacts) within a unit test's few hundred
# kilobytes; the other kinds ignore it.
CONTRACT_OPTIONS: dict[str, Any] = {"memtable_size_bytes": 64 * 1024}

EngineOpener = Callable[..., Engine]


@pytest.fixture(params=ENGINE_KINDS)
def engine_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def open_db(tmp_path: Path, engine_kind: str) -> Iterator[EngineOpener]:
    """`open_db(name="db", **options)` opens `tmp_path / name` with the test's kind and
    the contract options (overridable); everything opened is closed at teardown."""
    opened: list[Engine] = []

    def _open(name: str = "db", **options: Any) -> Engine:
        engine = open_engine(
            str(tmp_path / name), kind=engine_kind, **{**CONTRACT_OPTIONS, **options}
        )
        opened.append(engine)
        return engine

    yield _open
    for engine in opened:
        engine.close()


@pytest.fixture
def db(open_db: EngineOpener) -> Engine:
    """The engine of the test's kind at `tmp_path / "db"`."""
    return open_db()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rewrite",
        action="store_true",
        default=False,
        help="rewrite golden (datadriven) test files with the actual output",
    )
    parser.addoption(
        "--seed",
        type=int,
        default=None,
        help="replay one seed of the deterministic simulator (tests/sim)",
    )
