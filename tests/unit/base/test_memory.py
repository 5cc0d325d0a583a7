"""atoll.base.memory: the malloc settings apply wherever glibc's mallopt exists."""

from __future__ import annotations

import platform

import pytest

from atoll.base.memory import TUNING_ENV, tune_malloc


def test_tune_malloc_applies_on_glibc() -> None:
    on_glibc = platform.libc_ver()[0] == "glibc"
    assert tune_malloc() is on_glibc


def test_the_environment_can_leave_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TUNING_ENV, "off")
    assert tune_malloc() is False
