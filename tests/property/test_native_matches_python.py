"""The C accelerator (atoll.engine._native) against the Python reference paths, on
random blocks and filters. Runs only where the extension was built: without it there
is nothing to compare (the Python paths are what run, and every other test covers
them), which the first test reports explicitly rather than skipping silently."""

from __future__ import annotations

import zlib
from array import array

import pytest
from crc32c import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

from atoll.base.errors import CorruptionError
from atoll.engine import native
from atoll.engine.api import OP_DELETE, OP_PUT
from atoll.engine.batch_codec import decode_batch, encode_batch
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


@settings(max_examples=100, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.booleans(), st.binary(max_size=10), st.binary(max_size=30)), max_size=30
    ),
    first_seq=st.integers(0, 2**63),
    cut=st.integers(0, 400),
)
def test_decode_batch(ops: list[tuple[bool, bytes, bytes]], first_seq: int, cut: int) -> None:
    if native.decode_batch is None:
        pytest.fail("atoll.engine._native was not built")
    codes = bytes(OP_PUT if put else OP_DELETE for put, _, _ in ops)
    keys = [k for _, k, _ in ops]
    values = [v if put else b"" for put, _, v in ops]
    payload = encode_batch(first_seq, codes, keys, values)
    got_keys: list[bytes] = [b"before"]
    got_values: list[bytes] = []
    assert native.decode_batch(payload, got_keys, got_values) == (first_seq, codes)
    assert got_keys == [b"before", *keys] and got_values == values
    assert decode_batch(payload, "p") == (first_seq, codes, keys, values)
    if cut < len(payload):  # any truncation is refused whole, as in Python
        short = payload[:cut]
        with pytest.raises(ValueError):
            native.decode_batch(short, got_keys, got_values)
        assert got_keys == [b"before", *keys]
        with pytest.raises(CorruptionError):
            decode_batch(short, "p")


@settings(max_examples=50, deadline=None)
@given(keys=keys_st, values=st.data())
def test_key_hashes_and_entry_sizes(keys: list[bytes], values: st.DataObject) -> None:
    if native.key_hashes is None or native.entry_sizes is None:
        pytest.fail("atoll.engine._native was not built")
    vals = values.draw(st.lists(st.binary(max_size=50), min_size=len(keys), max_size=len(keys)))
    h1, h2 = native.key_hashes(keys)
    assert list(array("I", h1)) == [crc32c(k) for k in keys]
    assert list(array("I", h2)) == [zlib.crc32(k) for k in keys]
    sizes = array("q", native.entry_sizes(keys, vals, 17))
    assert list(sizes) == [len(k) + len(v) + 17 for k, v in zip(keys, vals, strict=True)]


@settings(max_examples=100, deadline=None)
@given(
    entries=st.lists(
        st.tuples(
            st.binary(max_size=8), st.integers(0, 2**64 - 1), st.booleans(), st.binary(max_size=20)
        ),
        min_size=1,
        max_size=60,
    )
)
def test_block_columns(entries: list[tuple[bytes, int, bool, bytes]]) -> None:
    if native.block_columns is None:
        pytest.fail("atoll.engine._native was not built")
    entries.sort(key=lambda e: e[0])
    data = encode_block(
        [e[0] for e in entries],
        [e[1] for e in entries],
        bytes(KIND_VALUE if e[2] else KIND_DELETE for e in entries),
        [e[3] if e[2] else b"" for e in entries],
    )
    block = Block(data, "test", 0)
    assert native.block_columns(data) == block.raw_columns_python()
