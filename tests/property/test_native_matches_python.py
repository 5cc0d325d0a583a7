"""The C accelerator (atoll.engine._native) against the Python reference paths, on
random blocks and filters. Runs only where the extension was built: without it there
is nothing to compare (the Python paths are what run, and every other test covers
them), which the first test reports explicitly rather than skipping silently."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atoll.engine import native
from atoll.engine.bloom import BloomFilter, build_filter
from atoll.engine.sstable_format import KIND_DELETE, KIND_VALUE, Block, encode_block

keys_st = st.lists(st.binary(max_size=12), min_size=1, max_size=40)


def test_native_extension_is_built() -> None:
    # make venv builds it (gcc and the Python headers are on the reference machine);
    # if this fails, the install lost its compiler and point reads run in Python.
    assert native.AVAILABLE, "atoll.engine._native was not built"


@settings(max_examples=200, deadline=None)
@given(
    entries=st.lists(
        st.tuples(st.binary(max_size=8), st.integers(0, 50), st.booleans(), st.binary(max_size=20)),
        min_size=1,
        max_size=60,
    ),
    probes=st.lists(st.binary(max_size=8), max_size=20),
    seq_limit=st.integers(0, 60),
)
def test_block_find(
    entries: list[tuple[bytes, int, bool, bytes]], probes: list[bytes], seq_limit: int
) -> None:
    if native.block_find is None:
        pytest.fail("atoll.engine._native was not built")
    # Sorted by key ascending, sequence descending; one version per (key, seq).
    unique = {(k, s): (live, v) for k, s, live, v in entries}
    rows = sorted(unique.items(), key=lambda e: (e[0][0], -e[0][1]))
    data = encode_block(
        [k for (k, _), _ in rows],
        [s for (_, s), _ in rows],
        bytes(KIND_VALUE if live else KIND_DELETE for _, (live, _) in rows),
        [v if live else b"" for _, (live, v) in rows],
    )
    block = Block(data, "test", 0)
    for key in probes + [k for (k, _), _ in rows]:
        assert native.block_find(data, key, seq_limit) == block.find_python(key, seq_limit)


@settings(max_examples=100, deadline=None)
@given(keys=keys_st, probes=st.lists(st.binary(max_size=12), max_size=50), bits=st.integers(1, 16))
def test_bloom_probe(keys: list[bytes], probes: list[bytes], bits: int) -> None:
    if native.bloom_may_contain is None:
        pytest.fail("atoll.engine._native was not built")
    bloom = BloomFilter(build_filter(keys, bits))
    for key in keys + probes:
        expected = bloom.may_contain_python(key)
        assert native.bloom_may_contain(bloom.bits, bloom.nbits, bloom.k, key) == expected
    assert all(bloom.may_contain(k) for k in keys)
