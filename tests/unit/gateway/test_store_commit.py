"""Which failed commits leave the written shard files in place: a commit whose outcome
is unknown may have applied, so its shards must stay (garbage collection removes
them if it did not); one refused outright frees them at once."""

from __future__ import annotations

import asyncio

import pytest

from atoll.gateway.errors import ServiceUnavailable
from atoll.gateway.store import _maybe_applied
from atoll.kv.errors import KvClientError, KvTimeout, KvUnavailable
from atoll.kv.rpc_client import KvOutcomeUnknown


def wrapped(cause: BaseException) -> ServiceUnavailable:
    """As `_client_errors` raises it."""
    try:
        try:
            raise cause
        except KvClientError as err:
            raise ServiceUnavailable(str(err)) from err
    except ServiceUnavailable as outer:
        return outer


@pytest.mark.parametrize(
    "err",
    [
        wrapped(KvTimeout("no answer")),
        wrapped(KvOutcomeUnknown("connection broke")),
        asyncio.CancelledError(),
    ],
)
def test_unknown_outcomes_keep_the_shards(err: BaseException) -> None:
    assert _maybe_applied(err)


@pytest.mark.parametrize(
    "err",
    [wrapped(KvUnavailable("no leader")), wrapped(KvClientError("INVALID_ARGUMENT")), ValueError()],
)
def test_refused_commits_free_the_shards(err: BaseException) -> None:
    assert not _maybe_applied(err)
