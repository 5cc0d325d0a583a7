"""The event loop Atoll's long-running processes run on.

`run(coro)` is `asyncio.run` on uvloop (libuv's loop, written in C: its transports read
into and write from buffers without the per-send copies and Python-level bookkeeping of
the standard selector loop), unless `ATOLL_EVENT_LOOP=asyncio` asks for the standard
loop (to compare the two, or to rule the loop out when chasing a bug). Every asyncio API
Atoll uses (buffered protocols, executors, signal handlers, subprocess-free code) works
the same on both; the test suite runs on the default.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from atoll.base.memory import tune_gc, tune_malloc

T = TypeVar("T")

LOOP_ENV = "ATOLL_EVENT_LOOP"
LOOPS = ("uvloop", "asyncio")


class LoopChoiceError(ValueError):
    """`ATOLL_EVENT_LOOP` names no loop Atoll knows."""


def loop_name(environ: dict[str, str] | None = None) -> str:
    """The loop `run` uses: `ATOLL_EVENT_LOOP` if set, else uvloop."""
    name = (environ if environ is not None else os.environ).get(LOOP_ENV, "") or LOOPS[0]
    if name not in LOOPS:
        raise LoopChoiceError(f"{LOOP_ENV}={name!r}: expected one of {', '.join(LOOPS)}")
    return name


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a new loop of the chosen kind (`loop_name`)."""
    if loop_name() == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def run_service(main: Coroutine[Any, Any, T]) -> T:
    """Run a long-lived process's `main` (a node, a KV gateway): the malloc and garbage
    collector settings of `atoll.base.memory` first, then `run`."""
    tune_malloc()
    tune_gc()
    return run(main)
