"""atoll.base.memory: the malloc settings apply wherever glibc's mallopt exists."""

from __future__ import annotations

import gc
import platform

import pytest

from atoll.base.memory import (
    GC_THRESHOLDS,
    GC_TUNING_ENV,
    TUNING_ENV,
    tune_gc,
    tune_malloc,
    unfilled_bytearray,
)


def test_tune_malloc_applies_on_glibc() -> None:
    on_glibc = platform.libc_ver()[0] == "glibc"
    assert tune_malloc() is on_glibc


def test_the_environment_can_leave_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TUNING_ENV, "off")
    assert tune_malloc() is False


@pytest.mark.parametrize("size", [0, 1, 4096, (1 << 20) + 7])
def test_an_unfilled_bytearray_has_the_size_asked_and_takes_writes(size: int) -> None:
    buffer = unfilled_bytearray(size)
    assert type(buffer) is bytearray and len(buffer) == size
    buffer[:] = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert buffer[: min(size, 256)] == bytes(range(256))[: min(size, 256)]
    buffer += b"x"  # an ordinary bytearray: it grows
    assert len(buffer) == size + 1


def test_an_unfilled_bytearray_of_a_negative_size_is_refused() -> None:
    with pytest.raises(ValueError):
        unfilled_bytearray(-1)


def test_tune_gc_freezes_what_lives_and_raises_the_thresholds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(GC_TUNING_ENV, raising=False)
    before = gc.get_threshold()
    try:
        assert tune_gc() is True
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_environment_can_leave_the_gc_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(GC_TUNING_ENV, "off")
    before = gc.get_threshold()
    assert tune_gc() is False
    assert gc.get_threshold() == before
