"""The Reed-Solomon codec (atoll.erasure.codec): any `k` of `k+m` shards decode, any
missing shard is rebuilt, and the parity bytes equal two independent computations (a
naive GF(2^8) implementation written here from the definition of the code, and
pyeclib's `isa_l_rs_cauchy` backend)."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyeclib.ec_iface import ECDriver

from atoll.erasure.codec import (
    COMBINE_SOURCES_MAX,
    DECODE_TABLES_CACHED_MAX,
    Codec,
    StripeCodec,
    combine,
    load_isal,
)
from atoll.erasure.errors import (
    CodecUnavailable,
    InvalidRange,
    NotEnoughShards,
    ShardLengthError,
)
from atoll.erasure.stripe import StripeLayout

PROFILES = [(1, 0), (1, 2), (2, 1), (4, 2), (8, 3)]
BLOCK = 1000  # not a multiple of 3 or 8: padding is exercised


def random_bytes(rng: random.Random, length: int) -> bytes:
    return rng.randbytes(length)


# -- the naive reference -------------------------------------------------------------------


def _reference_field() -> np.ndarray:
    """MUL[a, b] in GF(2^8) mod x^8+x^4+x^3+x^2+1, by shift-and-add (no log tables)."""
    mul = np.zeros((256, 256), dtype=np.uint8)
    for a in range(256):
        for b in range(256):
            x, y, product = a, b, 0
            while y:
                if y & 1:
                    product ^= x
                x <<= 1
                if x & 0x100:
                    x ^= 0x11D
                y >>= 1
            mul[a, b] = product
    return mul


MUL = _reference_field()


def reference_inverse(a: int) -> int:
    return int(np.nonzero(MUL[a] == 1)[0][0])


def reference_parity_rows(k: int, m: int) -> list[list[int]]:
    """ISA-L's gf_gen_cauchy1_matrix below the identity: row i, column j is 1/(i xor j);
    all ones when k = 1 (replication)."""
    if k == 1:
        return [[1] for _ in range(m)]
    return [[reference_inverse(i ^ j) for j in range(k)] for i in range(k, k + m)]


def reference_parity(k: int, m: int, data: list[bytes]) -> list[bytes]:
    arrays = [np.frombuffer(d, dtype=np.uint8) for d in data]
    parity = []
    for row in reference_parity_rows(k, m):
        acc = np.zeros(len(data[0]), dtype=np.uint8)
        for coefficient, shard in zip(row, arrays, strict=True):
            acc ^= MUL[coefficient][shard]
        parity.append(acc.tobytes())
    return parity


# -- encode ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "m"), PROFILES)
@pytest.mark.parametrize("stripe_length", [1, 7, 999, BLOCK])
def test_stripe_shards_are_the_cut_data_and_the_reference_parity(
    k: int, m: int, stripe_length: int
) -> None:
    layout = StripeLayout(k, m, BLOCK)
    stripe = random_bytes(random.Random(stripe_length * 31 + k), stripe_length)
    shards = [bytes(s) for s in StripeCodec(layout).encode(stripe)]
    size = layout.shard_bytes(stripe_length)
    assert len(shards) == k + m and all(len(s) == size for s in shards)
    padded = stripe.ljust(k * size, b"\0")
    assert shards[:k] == [padded[i * size : (i + 1) * size] for i in range(k)]
    assert shards[k:] == reference_parity(k, m, shards[:k])


def test_replication_parity_is_copies() -> None:
    stripe = random_bytes(random.Random(1), 333)
    shards = StripeCodec(StripeLayout(1, 2, 512)).encode(stripe)
    assert [bytes(s) for s in shards] == [stripe] * 3


@pytest.mark.parametrize(("k", "m"), [(2, 1), (4, 2), (8, 3), (6, 3)])
def test_parity_equals_pyeclib_isa_l_rs_cauchy(k: int, m: int) -> None:
    # liberasurecode's fragment = an 80-byte header of its own, then the shard.
    data = random_bytes(random.Random(k * 100 + m), k * 4096)
    fragments = ECDriver(k=k, m=m, ec_type="isa_l_rs_cauchy").encode(data)
    header = len(fragments[0]) - 4096
    theirs = [f[header:] for f in fragments]
    ours = [bytes(s) for s in StripeCodec(StripeLayout(k, m, len(data))).encode(data)]
    assert ours == theirs


def test_codec_encode_takes_any_buffer_kind() -> None:
    rng = random.Random(5)
    codec = Codec(4, 2)
    backing = random_bytes(rng, 4 * 64 + 10)
    data: list[bytes | bytearray | memoryview] = [
        backing[0:64],  # bytes
        bytearray(backing[64:128]),
        memoryview(backing)[128:192],  # read-only slice at an offset
        memoryview(bytearray(backing))[192:256],  # writable slice at an offset
    ]
    parity_buffer = bytearray(2 * 64 + 3)
    parity = [memoryview(parity_buffer)[0:64], memoryview(parity_buffer)[67:131]]
    codec.encode(data, parity)
    expected = reference_parity(4, 2, [bytes(d) for d in data])
    assert [bytes(p) for p in parity] == expected


# -- decode and reconstruct ----------------------------------------------------------------


@pytest.mark.parametrize(("k", "m"), PROFILES)
@pytest.mark.parametrize("stripe_length", [1, 5, 998, BLOCK])
def test_every_k_subset_decodes(k: int, m: int, stripe_length: int) -> None:
    layout = StripeLayout(k, m, BLOCK)
    codec = StripeCodec(layout)
    stripe = random_bytes(random.Random(stripe_length + 17 * k + m), stripe_length)
    shards = [bytes(s) for s in codec.encode(stripe)]
    for subset in itertools.combinations(range(k + m), k):
        pieces = codec.decode({i: shards[i] for i in subset}, stripe_length)
        assert b"".join(pieces) == stripe, subset


@pytest.mark.parametrize(("k", "m"), [p for p in PROFILES if p[1] > 0])
def test_every_missing_shard_is_rebuilt_from_any_k(k: int, m: int) -> None:
    layout = StripeLayout(k, m, BLOCK)
    codec = StripeCodec(layout)
    stripe_length = BLOCK - 3
    stripe = random_bytes(random.Random(k * 7 + m), stripe_length)
    shards = [bytes(s) for s in codec.encode(stripe)]
    for subset in itertools.combinations(range(k + m), k):
        missing = [i for i in range(k + m) if i not in subset]
        rebuilt = codec.reconstruct({i: shards[i] for i in subset}, stripe_length, missing)
        assert [bytes(r) for r in rebuilt] == [shards[i] for i in missing], subset
        # One at a time too (the repairer rebuilds the one shard a device lost).
        for index in missing:
            (one,) = codec.reconstruct({i: shards[i] for i in subset}, stripe_length, [index])
            assert bytes(one) == shards[index]


def reference_combination(coefficients: bytes, sources: list[bytes]) -> bytes:
    acc = np.zeros(len(sources[0]), dtype=np.uint8)
    for coefficient, source in zip(coefficients, sources, strict=True):
        acc ^= MUL[coefficient][np.frombuffer(source, dtype=np.uint8)]
    return acc.tobytes()


@pytest.mark.parametrize(("k", "m"), [p for p in PROFILES if p[1] > 0])
def test_a_missing_shard_is_the_sum_of_partial_combinations(k: int, m: int) -> None:
    """The repair's pre-combination: each node combines the survivors it holds by
    their decode coefficients, the rebuilder sums the partial results; for every
    survivor set, every missing shard, and a split of the survivors in two."""
    layout = StripeLayout(k, m, BLOCK)
    codec = StripeCodec(layout)
    stripe = random_bytes(random.Random(k * 11 + m), BLOCK - 5)
    shards = [bytes(s) for s in codec.encode(stripe)]
    for subset in itertools.combinations(range(k + m), k):
        for wanted in (i for i in range(k + m) if i not in subset):
            row = codec.codec.decode_rows(subset, (wanted,))
            assert len(row) == k
            assert reference_combination(row, [shards[i] for i in subset]) == shards[wanted]
            cut = len(subset) // 2 or 1
            halves = [range(cut), range(cut, k)] if cut < k else [range(k)]
            partials = [
                bytes(combine(bytes(row[j] for j in half), [shards[subset[j]] for j in half]))
                for half in halves
            ]
            total = combine(bytes([1] * len(partials)), partials)
            assert bytes(total) == shards[wanted], (subset, wanted)


def test_combine_matches_the_reference_and_writes_into_a_given_buffer() -> None:
    rng = random.Random(5)
    sources = [random_bytes(rng, 777) for _ in range(5)]
    coefficients = bytes([0, 1, 2, 0x8E, 255])
    out = bytearray(800)
    assert combine(coefficients, [memoryview(s) for s in sources], out) is out
    assert bytes(out[:777]) == reference_combination(coefficients, sources)
    assert combine(b"\x07", [b""]) == bytearray()


def test_combine_refuses_bad_shapes() -> None:
    with pytest.raises(InvalidRange):
        combine(b"\x01\x02", [b"ab"])
    with pytest.raises(InvalidRange):
        combine(b"", [])
    with pytest.raises(InvalidRange):
        combine(bytes(COMBINE_SOURCES_MAX + 1), [b"a"] * (COMBINE_SOURCES_MAX + 1))
    with pytest.raises(ShardLengthError):
        combine(b"\x01\x01", [b"ab", b"abc"])
    with pytest.raises(ShardLengthError):
        combine(b"\x01", [b"abc"], bytearray(2))
    with pytest.raises(InvalidRange):
        Codec(4, 2).decode_rows((0, 1, 2), (3,))
    with pytest.raises(InvalidRange):
        Codec(4, 2).decode_rows((1, 0, 2, 3), (4,))


@settings(max_examples=150, deadline=None)
@given(
    profile=st.sampled_from(PROFILES),
    stripe_length=st.integers(1, 300),
    seed=st.integers(0, 2**32),
    data=st.data(),
)
def test_any_k_of_n_decode_with_extra_shards_given(
    profile: tuple[int, int], stripe_length: int, seed: int, data: st.DataObject
) -> None:
    k, m = profile
    layout = StripeLayout(k, m, 300)
    codec = StripeCodec(layout)
    stripe = random_bytes(random.Random(seed), stripe_length)
    shards = [bytes(s) for s in codec.encode(stripe)]
    given_indexes = data.draw(
        st.lists(st.integers(0, k + m - 1), min_size=k, max_size=k + m, unique=True)
    )
    pieces = codec.decode({i: shards[i] for i in given_indexes}, stripe_length)
    assert b"".join(pieces) == stripe


def test_codec_reconstruct_into_caller_buffers() -> None:
    rng = random.Random(9)
    codec = Codec(4, 2)
    data = [random_bytes(rng, 100) for _ in range(4)]
    parity = [bytearray(100), bytearray(100)]
    codec.encode(data, parity)
    shards = [*data, bytes(parity[0]), bytes(parity[1])]
    out = [bytearray(100), bytearray(120)]
    codec.reconstruct({1: shards[1], 3: shards[3], 4: shards[4], 5: shards[5]}, [0, 2], out)
    assert bytes(out[0]) == shards[0]
    assert bytes(out[1][:100]) == shards[2]


def test_decode_without_missing_data_returns_the_given_shards() -> None:
    layout = StripeLayout(4, 2, 64)
    codec = StripeCodec(layout)
    stripe = bytes(range(62))  # shards of 16 bytes; the last holds 14 and 2 of padding
    shards = [bytes(s) for s in codec.encode(stripe)]
    pieces = codec.decode(dict(enumerate(shards)), 62)
    assert all(piece is shard for piece, shard in zip(pieces[:3], shards, strict=False))
    last = pieces[3]
    assert isinstance(last, memoryview) and last.obj is shards[3] and len(last) == 14
    assert b"".join(pieces) == stripe
    with pytest.raises(ShardLengthError):
        codec.decode({**dict(enumerate(shards)), 2: shards[2] + b"x"}, 62)


def test_a_short_stripe_decodes_to_empty_trailing_pieces() -> None:
    codec = StripeCodec(StripeLayout(4, 2, 64))
    shards = [bytes(s) for s in codec.encode(b"abcde")]  # shards of 2 bytes: ab cd e_ __
    pieces = codec.decode({i: shards[i] for i in (0, 2, 4, 5)}, 5)
    assert [bytes(p) for p in pieces] == [b"ab", b"cd", b"e", b""]


def test_a_corrupt_shard_is_not_detected_by_the_codec() -> None:
    # Detection is the CRC-32C of the shard file's block (test_shard_file.py); the code
    # has no redundancy left over to check with when exactly k shards are given.
    layout = StripeLayout(4, 2, 400)
    codec = StripeCodec(layout)
    stripe = random_bytes(random.Random(3), 400)
    shards = [bytearray(s) for s in codec.encode(stripe)]
    shards[4][10] ^= 0x01
    pieces = codec.decode({i: shards[i] for i in (1, 2, 3, 4)}, 400)
    assert b"".join(pieces) != stripe


def test_stripe_codec_buffers_are_reused_between_calls() -> None:
    layout = StripeLayout(4, 2, 256)
    codec = StripeCodec(layout)
    first = random_bytes(random.Random(1), 256)
    second = random_bytes(random.Random(2), 255)
    parity_before = [bytes(p) for p in codec.encode(first)[4:]]
    shards = [bytes(s) for s in codec.encode(second)]
    assert shards[4:] != parity_before
    assert b"".join(codec.decode({i: shards[i] for i in (0, 3, 4, 5)}, 255)) == second
    # A later decode of the first stripe gives the first stripe again.
    first_shards = [bytes(s) for s in StripeCodec(layout).encode(first)]
    assert b"".join(codec.decode({i: first_shards[i] for i in (2, 3, 4, 5)}, 256)) == first


def test_decode_tables_cache_is_bounded() -> None:
    codec = Codec(8, 3)
    patterns = 0
    for subset in itertools.combinations(range(11), 8):
        for wanted in ((0,), (10,)):
            codec.decode_tables(subset, wanted)
            patterns += 1
    assert patterns > DECODE_TABLES_CACHED_MAX
    assert len(codec._decode_tables) == DECODE_TABLES_CACHED_MAX


# -- refusals --------------------------------------------------------------------------------


def test_fewer_than_k_shards_is_not_enough() -> None:
    layout = StripeLayout(4, 2, 64)
    codec = StripeCodec(layout)
    shards = [bytes(s) for s in codec.encode(bytes(64))]
    with pytest.raises(NotEnoughShards) as info:
        codec.decode({0: shards[0], 4: shards[4], 5: shards[5]}, 64)
    assert info.value.have == [0, 4, 5] and info.value.k == 4
    # m = 0: every data shard is needed.
    plain = StripeCodec(StripeLayout(2, 0, 64))
    data_shards = [bytes(s) for s in plain.encode(bytes(range(64)))]
    assert len(data_shards) == 2
    with pytest.raises(NotEnoughShards):
        plain.decode({1: data_shards[1]}, 64)


def test_bad_shapes_are_refused() -> None:
    layout = StripeLayout(4, 2, 64)
    codec = StripeCodec(layout)
    shards = [bytes(s) for s in codec.encode(bytes(64))]
    with pytest.raises(ShardLengthError):
        codec.decode({0: shards[0][:-1], 1: shards[1], 2: shards[2], 3: shards[3]}, 64)
    with pytest.raises(ShardLengthError):
        codec.encode(b"")
    with pytest.raises(ShardLengthError):
        codec.encode(bytes(65))
    with pytest.raises(InvalidRange):
        codec.decode({0: shards[0], 1: shards[1], 2: shards[2], 6: shards[3]}, 64)
    with pytest.raises(InvalidRange):
        codec.reconstruct(dict(enumerate(shards[:4])), 64, [4, 4])
    with pytest.raises(InvalidRange):
        codec.reconstruct(dict(enumerate(shards[:4])), 64, [0, 4, 5])  # more than m
    plain = Codec(2, 1)
    with pytest.raises(ShardLengthError):
        plain.encode([b"ab", b"abc"], [bytearray(3)])
    with pytest.raises(ShardLengthError):
        plain.encode([b"ab", b"cd"], [memoryview(b"xy")])  # read-only parity
    with pytest.raises(ShardLengthError):
        plain.encode([b"ab", b"cd"], [bytearray(1)])  # too short
    with pytest.raises(ShardLengthError):
        StripeCodec(StripeLayout(2, 1, 64), Codec(4, 2))


def test_a_missing_library_is_a_typed_error() -> None:
    with pytest.raises(CodecUnavailable):
        load_isal("/nonexistent/libisal.so.2")
