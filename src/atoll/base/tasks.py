"""Awaiting several things at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def gather_settled(*awaitables: Awaitable[T]) -> list[T]:
    """The results of `awaitables`, in order, once every one has ended; if any
    failed, the first failure (in order) is raised, but only after all have ended:
    none outlives the call (a read still running on a reader its caller is about
    to close, say). Cancelling the call cancels them all, as `asyncio.gather` does."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    out: list[T] = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        out.append(result)
    return out


__all__ = ["gather_settled"]
