"""The device's memo of shard headers: found only under the same file key, bounded,
oldest forgotten first."""

from __future__ import annotations

import pytest

from atoll.erasure.shard_format import ShardHeader
from atoll.storage.devices import HeaderMemo


def header(key: str) -> ShardHeader:
    return ShardHeader("bkt", key, "v", 1, 0, 4, 2, 4096, 100)


def test_a_header_is_found_only_under_the_key_it_was_stored_with() -> None:
    memo = HeaderMemo(10)
    memo.put("/d/a", (1, 100, 5), header("a"))
    assert memo.get("/d/a", (1, 100, 5)) == header("a")
    for other in [(2, 100, 5), (1, 99, 5), (1, 100, 6)]:  # inode, size, mtime
        assert memo.get("/d/a", other) is None
    assert memo.get("/d/b", (1, 100, 5)) is None
    memo.put("/d/a", (1, 100, 6), header("a2"))  # a newer version replaces it
    assert (len(memo), memo.get("/d/a", (1, 100, 6))) == (1, header("a2"))
    memo.forget("/d/a")
    assert (len(memo), memo.get("/d/a", (1, 100, 6))) == (0, None)
    memo.forget("/d/a")  # idempotent


def test_the_memo_is_bounded_and_forgets_the_oldest_first() -> None:
    memo = HeaderMemo(3)
    for i in range(5):
        memo.put(f"/d/{i}", (i, 1, 1), header(str(i)))
    assert len(memo) == 3
    assert [memo.get(f"/d/{i}", (i, 1, 1)) is not None for i in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]
    off = HeaderMemo(0)  # remembers nothing
    off.put("/d/a", (1, 1, 1), header("a"))
    assert (len(off), off.get("/d/a", (1, 1, 1))) == (0, None)
    with pytest.raises(ValueError):
        HeaderMemo(-1)
