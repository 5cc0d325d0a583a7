"""The object index's key layout and names (docs/formats/objects.md §1-§2): index
keys sort as S3 orders (bucket, key) pairs, prefix ranges hold exactly the keys with
that prefix, keys parse back, and bucket names, keys, version ids, upload ids, part
numbers and continuation tokens are validated as S3 does."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atoll.objects import (
    IndexKeyError,
    InvalidBucketName,
    InvalidContinuationToken,
    InvalidListArgument,
    InvalidObjectKey,
    InvalidPartNumber,
    InvalidUploadId,
    KeyTooLong,
    RecordError,
    bucket_key,
    buckets_range,
    check_bucket_name,
    check_key,
    check_max_keys,
    check_part_number,
    check_upload_id,
    check_version_id,
    decode_continuation_token,
    encode_continuation_token,
    make_upload_id,
    make_version_id,
    object_key,
    objects_range,
    parse_bucket_key,
    parse_object_key,
    parse_part_key,
    parse_repair_key,
    parse_upload_key,
    part_key,
    parts_range,
    repair_key,
    repair_range,
    upload_initiated_ms,
    upload_key,
    uploads_range,
)

# Small alphabets make shared prefixes, NUL bytes (escaped in some keys), the largest
# one-byte character and multibyte characters likely.
KEY_CHARS = st.sampled_from(["a", "b", "/", "\x00", "\x01", "\x7f", "é", "ÿ", "\uffff", "😀"])
KEYS = st.text(KEY_CHARS, min_size=1, max_size=8)
PREFIXES = st.text(KEY_CHARS, max_size=4)
BUCKETS = st.sampled_from(["abc", "abc-d", "abc.d", "abd", "ab0", "zzz", "a" * 63])
UPLOAD_IDS = st.builds(make_upload_id, st.integers(0, 2**64 - 1), st.binary(min_size=8, max_size=8))
VERSION_IDS = st.from_regex(r"[0-9A-Za-z._-]{1,12}", fullmatch=True)


def in_range(key: bytes, rng: tuple[bytes, bytes]) -> bool:
    return rng[0] <= key < rng[1]


# -- order ------------------------------------------------------------------------


@given(st.lists(st.tuples(BUCKETS, KEYS), max_size=30))
def test_object_keys_sort_in_s3_order(pairs: list[tuple[str, str]]) -> None:
    s3_order = sorted(pairs, key=lambda p: (p[0].encode(), p[1].encode()))
    assert [object_key(*p) for p in s3_order] == sorted(object_key(*p) for p in pairs)


@given(st.lists(st.tuples(BUCKETS, KEYS, UPLOAD_IDS), max_size=30))
def test_upload_keys_sort_by_bucket_key_then_initiation(
    uploads: list[tuple[str, str, str]],
) -> None:
    expected = sorted(
        uploads, key=lambda u: (u[0].encode(), u[1].encode(), upload_initiated_ms(u[2]), u[2])
    )
    assert [upload_key(*u) for u in expected] == sorted(upload_key(*u) for u in uploads)


@given(BUCKETS, KEYS, UPLOAD_IDS, st.lists(st.integers(1, 10_000), max_size=20))
def test_part_keys_sort_by_part_number(
    bucket: str, key: str, upload_id: str, numbers: list[int]
) -> None:
    keys = [part_key(bucket, key, upload_id, n) for n in numbers]
    assert [parse_part_key(k)[3] for k in sorted(keys)] == sorted(numbers)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 3), st.integers(0, 300), BUCKETS, KEYS, VERSION_IDS, st.integers(0, 3)
        ),
        max_size=20,
    )
)
def test_repair_keys_sort_by_pool_pg_then_object(
    refs: list[tuple[int, int, str, str, str, int]],
) -> None:
    expected = sorted(
        refs, key=lambda r: (r[0], r[1], r[2].encode(), r[3].encode(), r[4].encode(), r[5])
    )
    assert [repair_key(*r) for r in expected] == sorted(repair_key(*r) for r in refs)


@given(st.lists(BUCKETS, max_size=10))
def test_bucket_keys_sort_by_name_and_fill_the_bucket_range(buckets: list[str]) -> None:
    keys = [bucket_key(b) for b in sorted(buckets)]
    assert keys == sorted(keys)
    assert all(in_range(k, buckets_range()) for k in keys)


# -- prefix ranges ----------------------------------------------------------------


@given(BUCKETS, st.lists(st.tuples(BUCKETS, KEYS), max_size=30), PREFIXES)
def test_an_object_range_holds_exactly_the_bucket_keys_with_the_prefix(
    bucket: str, pairs: list[tuple[str, str]], prefix: str
) -> None:
    rng = objects_range(bucket, prefix)
    found = {p for p in pairs if in_range(object_key(*p), rng)}
    assert found == {p for p in pairs if p[0] == bucket and p[1].startswith(prefix)}


@given(BUCKETS, st.lists(st.tuples(BUCKETS, KEYS, UPLOAD_IDS), max_size=30), PREFIXES)
def test_an_upload_range_holds_exactly_the_bucket_uploads_with_the_prefix(
    bucket: str, uploads: list[tuple[str, str, str]], prefix: str
) -> None:
    rng = uploads_range(bucket, prefix)
    found = {u for u in uploads if in_range(upload_key(*u), rng)}
    assert found == {u for u in uploads if u[0] == bucket and u[1].startswith(prefix)}


@given(
    st.lists(st.tuples(KEYS, UPLOAD_IDS, st.integers(1, 10_000)), max_size=20),
    KEYS,
    UPLOAD_IDS,
    st.integers(0, 10_000),
)
def test_a_parts_range_holds_one_upload_above_the_marker(
    parts: list[tuple[str, str, int]], key: str, upload_id: str, after: int
) -> None:
    parts = [*parts, (key, upload_id, max(after, 1))]
    rng = parts_range("abc", key, upload_id, after)
    found = {p for p in parts if in_range(part_key("abc", *p), rng)}
    assert found == {p for p in parts if p[:2] == (key, upload_id) and p[2] > after}


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), KEYS), max_size=20))
def test_repair_ranges_hold_one_pool_or_one_pg(refs: list[tuple[int, int, str]]) -> None:
    keys = {r: repair_key(r[0], r[1], "abc", r[2], "v", 0) for r in refs}
    assert {r for r in refs if in_range(keys[r], repair_range(1))} == {r for r in refs if r[0] == 1}
    assert {r for r in refs if in_range(keys[r], repair_range(1, 2))} == {
        r for r in refs if r[:2] == (1, 2)
    }


def test_the_layout_is_the_documented_one() -> None:
    # docs/formats/objects.md §2, spelled out.
    assert object_key("abc", "a/b") == b"\xff\x6f\x01\x01abc\x00a/b"
    assert bucket_key("abc") == b"\xff\x6f\x01\x02abc"
    uid = "0" * 15 + "1" + "ab" * 8
    assert (
        upload_key("abc", "k\x00", uid)
        == b"\xff\x6f\x01\x03abc\x00k\x00\xff\x00\x00" + uid.encode()
    )
    assert (
        part_key("abc", "k", uid, 258)
        == b"\xff\x6f\x01\x04abc\x00k\x00\x00" + uid.encode() + b"\x00\x00\x01\x02"
    )
    assert repair_key(1, 2, "abc", "k", "v1", 3) == (
        b"\xff\x6f\x01\x05\x00\x00\x00\x01\x00\x00\x00\x02abc\x00k\x00\x00v1\x00\x00\x00\x00\x03"
    )
    assert objects_range("abc") == (b"\xff\x6f\x01\x01abc\x00", b"\xff\x6f\x01\x01abc\x01")


# -- parsing ----------------------------------------------------------------------


@given(BUCKETS, KEYS, UPLOAD_IDS, st.integers(1, 10_000), VERSION_IDS, st.integers(0, 2**32 - 1))
def test_every_key_parses_back(
    bucket: str, key: str, upload_id: str, number: int, version_id: str, pool: int
) -> None:
    assert parse_object_key(object_key(bucket, key)) == (bucket, key)
    assert parse_bucket_key(bucket_key(bucket)) == bucket
    assert parse_upload_key(upload_key(bucket, key, upload_id)) == (bucket, key, upload_id)
    assert parse_part_key(part_key(bucket, key, upload_id, number)) == (
        bucket,
        key,
        upload_id,
        number,
    )
    ref = (pool, 7, bucket, key, version_id, number)
    assert parse_repair_key(repair_key(*ref)) == ref


@pytest.mark.parametrize(
    ("parse", "key"),
    [
        (parse_object_key, b"\xff\x6f\x01\x02abc\x00k"),  # another kind
        (parse_object_key, b"\xff\x6f\x01\x01abc"),  # no end of bucket
        (parse_object_key, b"\xff\x6f\x01\x01ABC\x00k"),  # invalid bucket
        (parse_object_key, b"\xff\x6f\x01\x01abc\x00"),  # empty key
        (parse_object_key, b"\xff\x6f\x01\x01abc\x00\xff"),  # not UTF-8
        (parse_object_key, b"\xff\x6f\x01\x01abc\x00" + b"k" * 1025),  # too long
        (parse_object_key, b"\x00"),
        (parse_bucket_key, b"\xff\x6f\x01\x02a"),
        (parse_upload_key, b"\xff\x6f\x01\x03abc\x00k\x00\x00" + b"z" * 32),
        (parse_upload_key, b"\xff\x6f\x01\x03abc\x00k\x00\x01\x00\x00" + b"0" * 32),  # bad escape
        (parse_upload_key, b"\xff\x6f\x01\x03abc\x00k" + b"0" * 32),  # no terminator
        (parse_part_key, b"\xff\x6f\x01\x04abc\x00k\x00\x00" + b"0" * 32 + b"\x00\x00\x00\x00"),
        (parse_part_key, b"\xff\x6f\x01\x04abc\x00k\x00\x00" + b"0" * 32 + b"\x00\x00\x01"),
        (parse_repair_key, b"\xff\x6f\x01\x05\x00\x00"),
        (
            parse_repair_key,
            b"\xff\x6f\x01\x05" + bytes(8) + b"abc\x00k\x00\x00v\x01\x00\x00\x00\x00",
        ),
        (
            parse_repair_key,
            b"\xff\x6f\x01\x05" + bytes(8) + b"abc\x00k\x00\x00v/\x00\x00\x00\x00\x00",
        ),
    ],
)
def test_malformed_index_keys_are_refused(parse: object, key: bytes) -> None:
    with pytest.raises(IndexKeyError):
        parse(key)  # type: ignore[operator]


# -- names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "abc",
        "a" * 63,
        "my-bucket",
        "my.bucket.name",
        "1bucket",
        "bucket1",
        "a-b.c-d",
        "192.168.5",
        "xn-a",
    ],
)
def test_valid_bucket_names(name: str) -> None:
    assert check_bucket_name(name) == name


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("ab", "3 to 63"),
        ("a" * 64, "3 to 63"),
        ("", "3 to 63"),
        ("My-Bucket", "lowercase"),
        ("my_bucket", "lowercase"),
        ("my bucket", "lowercase"),
        ("bücket", "lowercase"),
        ("-bucket", "begin and end"),
        ("bucket-", "begin and end"),
        (".bucket", "begin and end"),
        ("bucket.", "begin and end"),
        ("my..bucket", "adjacent dots"),
        ("192.168.5.4", "IP address"),
        ("10.0.0.1", "IP address"),
        ("xn--bucket", "start with"),
        ("sthree-bucket", "start with"),
        ("sthree-configurator", "start with"),
        ("amzn-s3-demo-bucket", "start with"),
        ("bucket-s3alias", "end with"),
        ("bucket--ol-s3", "end with"),
        ("bucket.mrap", "end with"),
        ("bucket--x-s3", "end with"),
        ("bucket--table-s3", "end with"),
    ],
)
def test_invalid_bucket_names(name: str, rule: str) -> None:
    with pytest.raises(InvalidBucketName, match=rule) as caught:
        check_bucket_name(name)
    assert caught.value.bucket == name


def test_a_bucket_name_must_be_a_string() -> None:
    with pytest.raises(InvalidBucketName):
        check_bucket_name(b"abc")


def test_keys_up_to_1024_utf8_bytes_are_valid() -> None:
    assert check_key("k" * 1024) == b"k" * 1024
    assert check_key("é" * 512) == "é".encode() * 512
    assert check_key("\x00") == b"\x00"
    with pytest.raises(KeyTooLong) as caught:
        check_key("é" * 512 + "k")
    assert caught.value.length_bytes == 1025
    with pytest.raises(InvalidObjectKey):
        check_key("")
    with pytest.raises(InvalidObjectKey):
        check_key("\ud800")
    with pytest.raises(InvalidObjectKey):
        check_key(b"k")


def test_version_and_upload_ids() -> None:
    assert make_version_id(bytes(range(16))) == "000102030405060708090a0b0c0d0e0f"
    assert check_version_id("null") == "null"
    for bad in ["", "a/b", "v" * 256, "é"]:
        with pytest.raises(RecordError):
            check_version_id(bad)
    upload_id = make_upload_id(0x0123456789, b"\xff" * 8)
    assert upload_id == "0000000123456789ffffffffffffffff"
    assert upload_initiated_ms(upload_id) == 0x0123456789
    for bad in ["", "0" * 31, "0" * 33, "G" * 32, "A" * 32]:
        with pytest.raises(InvalidUploadId):
            check_upload_id(bad)
    with pytest.raises(RecordError):
        make_upload_id(-1, bytes(8))
    with pytest.raises(RecordError):
        make_version_id(bytes(15))


def test_part_numbers_are_1_to_10000() -> None:
    assert check_part_number(1) == 1 and check_part_number(10_000) == 10_000
    for bad in [0, 10_001, -1, "1", 1.0, True]:
        with pytest.raises(InvalidPartNumber):
            check_part_number(bad)


def test_max_keys_is_clamped_to_1000() -> None:
    assert [check_max_keys(n) for n in (0, 1, 1000, 1001, 10**9)] == [0, 1, 1000, 1000, 1000]
    for bad in [-1, "5", None]:
        with pytest.raises(InvalidListArgument):
            check_max_keys(bad)


def test_ranges_refuse_bad_arguments() -> None:
    with pytest.raises(InvalidListArgument):
        objects_range("abc", "p" * 1025)
    with pytest.raises(InvalidListArgument):
        parts_range("abc", "k", "0" * 32, 10_001)
    with pytest.raises(InvalidBucketName):
        objects_range("A")


# -- continuation tokens ----------------------------------------------------------


@given(st.text(KEY_CHARS, max_size=30) | st.text(max_size=30))
def test_continuation_tokens_round_trip(marker: str) -> None:
    token = encode_continuation_token(marker)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_continuation_token(token) == marker


def test_damaged_or_foreign_continuation_tokens_are_refused() -> None:
    token = encode_continuation_token("photos/2024/")
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    damaged = bytearray(raw)
    damaged[-1] ^= 1
    wrong_version = b"\x02" + raw[1:]
    for bad in [
        "",
        "!!!",
        token + "=",
        token[:-1],
        base64.urlsafe_b64encode(bytes(damaged)).decode().rstrip("="),
        base64.urlsafe_b64encode(wrong_version).decode().rstrip("="),
        "A" * 3000,
        "photos/2024/",
    ]:
        with pytest.raises(InvalidContinuationToken):
            decode_continuation_token(bad)
