"""Object records and their v1 encoding (docs/formats/objects.md §3-§4): round trips
of every record kind, the byte layout of one manifest built by hand, and the refusal
of damaged, truncated, oversized and malformed bytes and of invalid fields."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from crc32c import crc32c
from hypothesis import given
from hypothesis import strategies as st

from atoll.objects import (
    BucketRecord,
    Checksum,
    ChecksumAlgorithm,
    ChecksumType,
    InvalidUploadId,
    Layout,
    Manifest,
    ManifestSummary,
    MetadataTooLarge,
    ObjectMetadata,
    Part,
    PartRecord,
    RecordChecksumError,
    RecordError,
    RecordLimitError,
    RepairRecord,
    UnsupportedRecordVersion,
    UploadRecord,
    decode_bucket_record,
    decode_manifest,
    decode_manifest_summary,
    decode_part_record,
    decode_record,
    decode_repair_record,
    decode_upload_record,
    encode_record,
    make_upload_id,
    user_metadata,
    write_quorum,
)

DIGEST = {
    ChecksumAlgorithm.CRC32: 4,
    ChecksumAlgorithm.CRC32C: 4,
    ChecksumAlgorithm.CRC64NVME: 8,
    ChecksumAlgorithm.SHA1: 20,
    ChecksumAlgorithm.SHA256: 32,
}

# -- strategies --------------------------------------------------------------------

BUCKETS = st.sampled_from(["abc", "photos", "my.bucket-1", "a" * 63, "0-9"])
KEYS = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)
VERSION_IDS = st.from_regex(r"[0-9A-Za-z._-]{1,40}", fullmatch=True)
HEADER_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\x00"), max_size=30)
META_NAMES = st.from_regex(r"[a-z0-9!#$%&'*+.^_`|~-]{1,12}", fullmatch=True)
MD5 = st.binary(min_size=16, max_size=16).map(bytes.hex)
ETAGS = st.one_of(MD5, st.tuples(MD5, st.integers(1, 10_000)).map(lambda t: f"{t[0]}-{t[1]}"))
STORAGE_CLASSES = st.sampled_from(["STANDARD", "REDUCED_REDUNDANCY", "GLACIER_IR", "X1"])
U64 = st.integers(0, 2**64 - 1)
METADATA = st.builds(
    ObjectMetadata,
    HEADER_TEXT,
    HEADER_TEXT,
    HEADER_TEXT,
    HEADER_TEXT,
    HEADER_TEXT,
    HEADER_TEXT,
    st.dictionaries(META_NAMES, HEADER_TEXT, max_size=5).map(lambda d: user_metadata(d.items())),
)


@st.composite
def checksums(draw: st.DrawFn) -> Checksum:
    algorithm = draw(st.sampled_from(ChecksumAlgorithm))
    value = draw(st.binary(min_size=DIGEST[algorithm], max_size=DIGEST[algorithm]))
    return Checksum(algorithm, value, draw(st.sampled_from(ChecksumType)))


@st.composite
def parts(draw: st.DrawFn, number: int, k: int, m: int, digest: int) -> Part:
    width = k + m
    durable = draw(st.sets(st.integers(0, width - 1), min_size=k, max_size=width))
    return Part(
        number,
        draw(st.integers(0, 5 * 1024**3)),
        draw(MD5),
        draw(st.integers(0, 2**16 - 1)),
        draw(st.integers(1, 64 * 1024 * 1024)),
        draw(U64),
        tuple(sorted(durable)),
        draw(st.binary(min_size=digest, max_size=digest)),
    )


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    checksum = draw(st.none() | checksums())
    common = {
        "bucket": draw(BUCKETS),
        "key": draw(KEYS),
        "version_id": draw(VERSION_IDS),
        "etag": draw(ETAGS),
        "last_modified_ms": draw(U64),
        "storage_class": draw(STORAGE_CLASSES),
        "metadata": draw(METADATA),
        "checksum": checksum,
    }
    if draw(st.booleans()):
        data = draw(st.binary(max_size=300))
        return Manifest(size=len(data), inline=data, **common)  # type: ignore[arg-type]
    k = draw(st.integers(1, 8))
    m = draw(st.integers(0, 4))
    digest = DIGEST[checksum.algorithm] if checksum and draw(st.booleans()) else 0
    if draw(st.booleans()):
        numbers = [0]
    else:
        numbers = sorted(draw(st.sets(st.integers(1, 10_000), min_size=1, max_size=5)))
    layout = Layout(
        draw(st.integers(0, 2**32 - 1)),
        k,
        m,
        [draw(parts(n, k, m, digest)) for n in numbers],
    )
    return Manifest(size=layout.size, layout=layout, **common)  # type: ignore[arg-type]


def part_records() -> st.SearchStrategy[PartRecord]:
    @st.composite
    def build(draw: st.DrawFn) -> PartRecord:
        k, m = draw(st.integers(1, 8)), draw(st.integers(0, 4))
        algorithm = draw(st.none() | st.sampled_from(ChecksumAlgorithm))
        part = draw(
            parts(draw(st.integers(1, 10_000)), k, m, DIGEST[algorithm] if algorithm else 0)
        )
        return PartRecord(part, k, m, draw(U64), algorithm)

    return build()


@st.composite
def upload_records(draw: st.DrawFn) -> UploadRecord:
    initiated = draw(U64)
    return UploadRecord(
        draw(BUCKETS),
        draw(KEYS),
        make_upload_id(initiated, draw(st.binary(min_size=8, max_size=8))),
        draw(VERSION_IDS),
        initiated,
        draw(st.integers(0, 2**32 - 1)),
        draw(STORAGE_CLASSES),
        draw(METADATA),
        *draw(
            st.just((None, None))
            | st.tuples(st.sampled_from(ChecksumAlgorithm), st.sampled_from(ChecksumType))
        ),
    )


@st.composite
def repair_records(draw: st.DrawFn) -> RepairRecord:
    k, m = draw(st.integers(1, 16)), draw(st.integers(1, 16))
    missed = draw(st.sets(st.integers(0, k + m - 1), min_size=1))
    return RepairRecord(
        draw(st.integers(0, 2**32 - 1)),
        draw(st.integers(0, 2**16 - 1)),
        draw(BUCKETS),
        draw(KEYS),
        draw(VERSION_IDS),
        draw(st.integers(0, 10_000)),
        draw(U64),
        k,
        m,
        tuple(sorted(missed)),
    )


BUCKET_RECORDS = st.builds(
    BucketRecord,
    BUCKETS,
    st.sampled_from(["standard", "replicated"]),
    st.text(min_size=1, max_size=20).filter(lambda s: not set(s) & set("\r\n\x00")),
    U64,
)
RECORDS = st.one_of(manifests(), BUCKET_RECORDS, upload_records(), part_records(), repair_records())
DECODERS = {
    Manifest: decode_manifest,
    BucketRecord: decode_bucket_record,
    UploadRecord: decode_upload_record,
    PartRecord: decode_part_record,
    RepairRecord: decode_repair_record,
}


def frame(body: bytes, magic: int = 0xC0, version: int = 1) -> bytes:
    """A record with a correct CRC around `body`, to reach the structural checks."""
    return struct.pack("<BBI", magic, version, crc32c(body)) + body


# -- round trips -------------------------------------------------------------------


@given(RECORDS)
def test_every_record_round_trips(record: object) -> None:
    data = encode_record(record)  # type: ignore[arg-type]
    assert DECODERS[type(record)](data) == record
    assert decode_record(data) == record
    assert decode_record(bytearray(data)) == record
    assert encode_record(decode_record(data)) == data


@given(manifests())
def test_manifest_bytes_start_with_the_envelope(manifest: Manifest) -> None:
    data = encode_record(manifest)
    assert data[0] == 0xC0 and data[1] == 1
    assert struct.unpack_from("<I", data, 2)[0] == crc32c(data[6:])


def test_a_manifest_matches_the_documented_layout_byte_for_byte() -> None:
    manifest = Manifest(
        "photos",
        "a/b",
        "v1",
        7,
        "00112233445566778899aabbccddeeff-2",
        1_700_000_000_000,
        "STANDARD",
        ObjectMetadata(content_type="image/png", user=(("color", "red"),)),
        Checksum(ChecksumAlgorithm.CRC32C, b"\x01\x02\x03\x04", ChecksumType.COMPOSITE),
        layout=Layout(
            2,
            2,
            1,
            [
                Part(1, 5, "ab" * 16, 9, 1024, 4, (0, 2), b"\xaa\xbb\xcc\xdd"),
                Part(2, 2, "cd" * 16, 9, 1024, 5, (0, 1, 2), b"\x11\x22\x33\x44"),
            ],
        ),
    )
    body = struct.pack(
        "<BQQ16sH", 0x06, 7, 1_700_000_000_000, bytes.fromhex("00112233445566778899aabbccddeeff"), 2
    )
    body += b"\x06photos" + b"\x03\x00a/b" + b"\x02v1" + b"\x08STANDARD"
    body += b"\x09\x00image/png" + b"\x00\x00" * 5 + b"\x01\x00" + b"\x05color" + b"\x03\x00red"
    body += b"\x02\x01\x01\x02\x03\x04"  # CRC32C, COMPOSITE, digest
    body += struct.pack("<IBBH", 2, 2, 1, 2)
    body += struct.pack("<HQ16sIIQI", 1, 5, b"\xab" * 16, 9, 1024, 4, 0b101) + b"\xaa\xbb\xcc\xdd"
    body += struct.pack("<HQ16sIIQI", 2, 2, b"\xcd" * 16, 9, 1024, 5, 0b111) + b"\x11\x22\x33\x44"
    assert encode_record(manifest) == frame(body)


@given(manifests())
def test_the_listing_summary_agrees_with_the_manifest(manifest: Manifest) -> None:
    summary = decode_manifest_summary(encode_record(manifest))
    assert summary == ManifestSummary(
        manifest.key,
        manifest.version_id,
        manifest.size,
        manifest.etag,
        manifest.last_modified_ms,
        manifest.storage_class,
    )


def test_the_listing_summary_checks_the_envelope() -> None:
    data = encode_record(SAMPLE)
    with pytest.raises(RecordChecksumError):
        decode_manifest_summary(data[:-1] + b"!")
    with pytest.raises(RecordError, match="magic"):
        decode_manifest_summary(encode_record(BucketRecord("abc", "p", "o", 0)))
    with pytest.raises(RecordError, match="unknown flags"):
        decode_manifest_summary(frame(bytes([0x80]) + data[7:]))
    with pytest.raises(RecordError, match="truncated"):
        decode_manifest_summary(frame(data[6:40]))


def test_write_quorum_is_a_majority_and_never_below_k() -> None:
    assert [write_quorum(k, m) for k, m in [(1, 0), (2, 0), (1, 2), (2, 1), (4, 2), (8, 3)]] == [
        1,
        2,
        2,
        2,
        4,
        8,
    ]
    assert write_quorum(1, 4) == 3 and write_quorum(6, 6) == 7


def test_missed_shards_are_the_ones_not_durable() -> None:
    part = Part(0, 1, "0" * 32, 0, 1, 0, (0, 2, 3))
    assert part.missed(6) == (1, 4, 5)


# -- refusals of damaged bytes -----------------------------------------------------

SAMPLE = Manifest("abc", "k", "v", 3, "0" * 32, 1, "STANDARD", inline=b"xyz")


@given(RECORDS, st.data())
def test_any_damaged_body_byte_is_a_checksum_error(record: object, data: st.DataObject) -> None:
    encoded = bytearray(encode_record(record))  # type: ignore[arg-type]
    at = data.draw(st.integers(6, len(encoded) - 1))
    encoded[at] ^= data.draw(st.integers(1, 255))
    with pytest.raises(RecordChecksumError) as caught:
        decode_record(bytes(encoded))
    assert caught.value.expected != caught.value.actual


@given(RECORDS, st.data())
def test_every_truncation_is_refused(record: object, data: st.DataObject) -> None:
    encoded = encode_record(record)  # type: ignore[arg-type]
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(RecordError):
        decode_record(encoded[:cut])
    # With a CRC that matches, the structure check still finds the missing bytes.
    if cut > 6:
        with pytest.raises(RecordError):
            decode_record(frame(encoded[6:cut], magic=encoded[0]))


@given(RECORDS, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_refused(record: object, extra: bytes) -> None:
    encoded = encode_record(record)  # type: ignore[arg-type]
    with pytest.raises(RecordError, match="trailing"):
        decode_record(frame(encoded[6:] + extra, magic=encoded[0]))


def test_bad_magic_and_wrong_decoder_are_refused() -> None:
    data = encode_record(SAMPLE)
    with pytest.raises(RecordError, match="magic"):
        decode_manifest(b"\xc5" + data[1:])
    with pytest.raises(RecordError, match="magic"):
        decode_bucket_record(data)
    with pytest.raises(RecordError, match="unknown record magic"):
        decode_record(b"\x00" + data[1:])
    with pytest.raises(RecordError):
        decode_record(b"")


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unknown_version_is_refused(version: int) -> None:
    data = encode_record(SAMPLE)
    with pytest.raises(UnsupportedRecordVersion) as caught:
        decode_manifest(data[:1] + bytes([version]) + data[2:])
    assert caught.value.version == version


def test_an_oversized_record_is_refused_before_anything_else() -> None:
    with pytest.raises(RecordLimitError):
        decode_manifest(b"\xc0\x01" + b"\x00" * (1024 * 1024))


def inline_body(
    flags: int = 0x01, tail: bytes = b"\x03\x00\x00\x00xyz", meta_count: int = 0
) -> bytes:
    body = struct.pack("<BQQ16sH", flags, 3, 1, b"\x00" * 16, 0)
    body += b"\x03abc\x01\x00k\x01v\x08STANDARD" + b"\x00\x00" * 6
    return body + struct.pack("<H", meta_count) + tail


def test_the_hand_built_inline_body_decodes() -> None:
    # The baseline for the malformed variants below.
    assert decode_manifest(frame(inline_body())) == SAMPLE


@pytest.mark.parametrize(
    ("body", "error", "match"),
    [
        (inline_body(flags=0x09), RecordError, "unknown flags"),
        (inline_body(flags=0x05), RecordError, "part checksums"),
        (inline_body(flags=0x03, tail=b"\x09\x00" + b"\x00" * 4), RecordError, "algorithm"),
        (inline_body(flags=0x03, tail=b"\x01\x07" + b"\x00" * 4), RecordError, "checksum type"),
        (inline_body(tail=struct.pack("<I", 256 * 1024 + 1)), RecordLimitError, "inline"),
        (inline_body(tail=b"\x04\x00\x00\x00xyz"), RecordError, "truncated"),
        (inline_body(tail=b"\x02\x00\x00\x00xy"), RecordError, "size 3"),
        (inline_body(meta_count=2049), RecordLimitError, "user metadata count"),
        (inline_body(meta_count=1, tail=b"\x01\x00\x00\x00"), RecordError, "user metadata name"),
        (
            inline_body(flags=0x00, tail=struct.pack("<IBBH", 1, 1, 0, 10_001)),
            RecordLimitError,
            "part count",
        ),
        (
            inline_body(flags=0x00, tail=struct.pack("<IBBH", 1, 1, 0, 0)),
            RecordError,
            "1 to 10000 parts",
        ),
        (
            inline_body(
                flags=0x00,
                tail=struct.pack("<IBBH", 1, 0, 0, 1)
                + struct.pack("<HQ16sIIQI", 0, 3, bytes(16), 0, 1, 0, 1),
            ),
            RecordError,
            "k must",
        ),
        (
            inline_body(
                flags=0x00,
                tail=struct.pack("<IBBH", 1, 2, 1, 1)
                + struct.pack("<HQ16sIIQI", 0, 3, bytes(16), 0, 1, 0, 0b1),
            ),
            RecordError,
            "fewer than k",
        ),
        (
            inline_body(
                flags=0x00,
                tail=struct.pack("<IBBH", 1, 2, 1, 1)
                + struct.pack("<HQ16sIIQI", 0, 3, bytes(16), 0, 1, 0, 0b1011),
            ),
            RecordError,
            "not below k\\+m",
        ),
        (
            inline_body(
                flags=0x00,
                tail=struct.pack("<IBBH", 1, 1, 0, 1)
                + struct.pack("<HQ16sIIQI", 0, 3, bytes(16), 0, 0, 0, 1),
            ),
            RecordError,
            "block size",
        ),
        (
            inline_body(
                flags=0x00,
                tail=struct.pack("<IBBH", 1, 1, 0, 1)
                + struct.pack("<HQ16sIIQI", 0, 3, bytes(16), 1 << 16, 1, 0, 1),
            ),
            RecordError,
            "pg",
        ),
        (
            inline_body(
                flags=0x00,
                tail=struct.pack("<IBBH", 1, 1, 0, 2)
                + struct.pack("<HQ16sIIQI", 2, 1, bytes(16), 0, 1, 0, 1) * 2,
            ),
            RecordError,
            "ascending",
        ),
    ],
)
def test_malformed_manifests_are_refused(body: bytes, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match) as caught:
        decode_manifest(frame(body))
    assert isinstance(caught.value, RecordError) and caught.value.offset is not None


def test_a_bad_utf8_key_is_refused_with_its_offset() -> None:
    body = inline_body().replace(b"\x01\x00k", b"\x01\x00\xff")
    with pytest.raises(RecordError, match="key is not UTF-8") as caught:
        decode_manifest(frame(body))
    assert caught.value.offset == 6 + 35 + 4


def test_an_invalid_bucket_name_in_the_bytes_is_a_record_error() -> None:
    body = inline_body().replace(b"\x03abc", b"\x03ABC")
    with pytest.raises(RecordError, match="bucket name"):
        decode_manifest(frame(body))


# -- refusals of invalid fields ----------------------------------------------------


def manifest(**changes: object) -> Manifest:
    fields: dict[str, object] = {
        "bucket": "abc",
        "key": "k",
        "version_id": "v",
        "size": 3,
        "etag": "0" * 32,
        "last_modified_ms": 1,
        "storage_class": "STANDARD",
        "inline": b"xyz",
    }
    fields.update(changes)
    return Manifest(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "build",
    [
        lambda: manifest(size=4),
        lambda: manifest(etag="0" * 31),
        lambda: manifest(etag="A" * 32),
        lambda: manifest(etag="0" * 32 + "-0"),
        lambda: manifest(etag="0" * 32 + "-10001"),
        lambda: manifest(storage_class="standard"),
        lambda: manifest(storage_class=""),
        lambda: manifest(version_id=""),
        lambda: manifest(version_id="a/b"),
        lambda: manifest(version_id="v" * 256),
        lambda: manifest(inline=None),
        lambda: manifest(inline=bytearray(b"xyz")),
        lambda: manifest(last_modified_ms=-1),
        lambda: manifest(checksum=b"1234"),
        lambda: Checksum(ChecksumAlgorithm.SHA256, b"\x00" * 31),
        lambda: Checksum(7, b"\x00" * 4),  # type: ignore[arg-type]
        lambda: ObjectMetadata(content_type="a\r\nb"),
        lambda: ObjectMetadata(cache_control="a\x00b"),
        lambda: ObjectMetadata(user=(("Color", "x"),)),
        lambda: ObjectMetadata(user=(("b", "x"), ("a", "y"))),
        lambda: ObjectMetadata(user=(("a", "x"), ("a", "y"))),
        lambda: ObjectMetadata(user=(("a b", "x"),)),
        lambda: ObjectMetadata(user=(("a", "x\ny"),)),
        lambda: ObjectMetadata(user=[("a", "x")]),  # type: ignore[arg-type]
        lambda: ObjectMetadata(expires="x" * 8193),
    ],
)
def test_invalid_fields_are_refused(build: Callable[[], object]) -> None:
    with pytest.raises(RecordError):
        build()


def test_the_key_and_bucket_rules_apply_to_manifests() -> None:
    from atoll.objects import InvalidBucketName, InvalidObjectKey, KeyTooLong

    with pytest.raises(KeyTooLong):
        manifest(key="k" * 1025)
    with pytest.raises(InvalidObjectKey):
        manifest(key="")
    with pytest.raises(InvalidBucketName):
        manifest(bucket="ab")


def test_user_metadata_is_limited_to_2_kb_of_names_and_values() -> None:
    fits = ObjectMetadata(user=(("a", "x" * 1000), ("b", "y" * 1046)))  # 2 + 2046 = 2048
    assert manifest(metadata=fits).metadata == fits
    with pytest.raises(MetadataTooLarge) as caught:
        ObjectMetadata(user=(("a", "x" * 1000), ("b", "y" * 1047)))
    assert caught.value.size_bytes == 2049
    # Multibyte characters count by their UTF-8 bytes.
    with pytest.raises(MetadataTooLarge):
        ObjectMetadata(user=(("a", "é" * 1024),))


def test_user_metadata_helper_lowercases_sorts_and_refuses_duplicates() -> None:
    assert user_metadata([("Zeta", "1"), ("alpha", "2")]) == (("alpha", "2"), ("zeta", "1"))
    with pytest.raises(RecordError, match="twice"):
        user_metadata([("A", "1"), ("a", "2")])


def layout(parts: list[Part], k: int = 1, m: int = 0) -> Layout:
    return Layout(1, k, m, parts)


def test_invalid_layouts_are_refused() -> None:
    one = Part(0, 3, "0" * 32, 0, 1024, 0, (0,))
    with pytest.raises(RecordError, match="1 to 10000"):
        layout([])
    with pytest.raises(RecordError, match="ascending"):
        layout([one, Part(1, 3, "0" * 32, 0, 1024, 0, (0,))])
    with pytest.raises(RecordError, match="ascending"):
        layout([Part(2, 1, "0" * 32, 0, 1, 0, (0,)), Part(2, 1, "0" * 32, 0, 1, 0, (0,))])
    with pytest.raises(RecordError, match="fewer than k"):
        layout([one], k=2, m=1)
    with pytest.raises(RecordError, match="over 32"):
        layout([one], k=17, m=16)
    with pytest.raises(RecordError, match="durable"):
        Part(0, 3, "0" * 32, 0, 1024, 0, (1, 0))
    with pytest.raises(RecordError):
        Part(0, 5 * 1024**3 + 1, "0" * 32, 0, 1024, 0, (0,))
    with pytest.raises(RecordError, match="ETag"):
        Part(1, 3, "0" * 32 + "-2", 0, 1024, 0, (0,))
    with pytest.raises(RecordError, match="size"):
        manifest(inline=None, layout=layout([one]), size=4)
    with pytest.raises(RecordError, match="either"):
        manifest(layout=layout([one]))


def test_part_checksums_must_match_the_object_checksum() -> None:
    crc = Checksum(ChecksumAlgorithm.CRC32, b"1234")
    with_crc = Part(1, 3, "0" * 32, 0, 1024, 0, (0,), b"abcd")
    without = Part(2, 3, "0" * 32, 0, 1024, 0, (0,))
    sha = Part(1, 3, "0" * 32, 0, 1024, 0, (0,), b"x" * 20)
    ok = manifest(inline=None, size=3, checksum=crc, layout=layout([with_crc]))
    assert decode_manifest(encode_record(ok)) == ok
    with pytest.raises(RecordError, match="every part"):
        manifest(inline=None, size=6, checksum=crc, layout=layout([with_crc, without]))
    with pytest.raises(RecordError, match="need an object checksum"):
        manifest(inline=None, size=3, layout=layout([with_crc]))
    with pytest.raises(RecordError, match="CRC32 digests"):
        manifest(inline=None, size=3, checksum=crc, layout=layout([sha]))


def test_invalid_other_records_are_refused() -> None:
    upload_id = make_upload_id(5, bytes(8))
    with pytest.raises(RecordError, match="initiated"):
        UploadRecord("abc", "k", upload_id, "v", 6, 1, "STANDARD")
    with pytest.raises(InvalidUploadId):
        UploadRecord("abc", "k", "not-an-id", "v", 5, 1, "STANDARD")
    with pytest.raises(RecordError, match="needs a checksum algorithm"):
        UploadRecord(
            "abc", "k", upload_id, "v", 5, 1, "STANDARD", checksum_type=ChecksumType.COMPOSITE
        )
    with pytest.raises(RecordError, match="needs its ChecksumType"):
        UploadRecord(
            "abc", "k", upload_id, "v", 5, 1, "STANDARD", checksum_algorithm=ChecksumAlgorithm.CRC32
        )
    part = Part(1, 3, "0" * 32, 0, 1024, 0, (0,), b"abcd")
    with pytest.raises(RecordError, match="needs its algorithm"):
        PartRecord(part, 1, 0, 0)
    with pytest.raises(RecordError, match="SHA1"):
        PartRecord(part, 1, 0, 0, ChecksumAlgorithm.SHA1)
    with pytest.raises(RecordError, match="1 to 10,000"):
        PartRecord(Part(0, 3, "0" * 32, 0, 1024, 0, (0,)), 1, 0, 0)
    with pytest.raises(RecordError, match="at least one"):
        RepairRecord(1, 0, "abc", "k", "v", 0, 0, 2, 1, ())
    with pytest.raises(RecordError, match="missed"):
        RepairRecord(1, 0, "abc", "k", "v", 0, 0, 2, 1, (3,))
    with pytest.raises(RecordError, match="owner"):
        BucketRecord("abc", "standard", "", 0)


def test_the_largest_manifest_fits_the_kv_value_limit() -> None:
    # 10,000 parts with SHA-256 part checksums, every header and 2 KB of metadata at
    # their limits, the longest key: still one KV value (1 MiB).
    parts = [
        Part(
            n,
            5 * 1024**3 if n < 1025 else 0,
            "f" * 32,
            2**16 - 1,
            64 << 20,
            2**64 - 1,
            tuple(range(32)),
            b"s" * 32,
        )
        for n in range(1, 10_001)
    ]
    big = Manifest(
        "b" * 63,
        "k" * 1024,
        "v" * 255,
        1024 * 5 * 1024**3,
        "f" * 32 + "-10000",
        2**64 - 1,
        "S" * 64,
        ObjectMetadata(
            content_type="h" * 8192,
            content_encoding="h" * 8192,
            content_disposition="h" * 8192,
            content_language="h" * 8192,
            cache_control="h" * 8192,
            expires="h" * 8192,
            user=tuple((f"{i:03}", "") for i in range(682)),  # 682 x 3 = 2,046 bytes
        ),
        Checksum(ChecksumAlgorithm.SHA256, b"s" * 32, ChecksumType.COMPOSITE),
        layout=Layout(2**32 - 1, 16, 16, parts),
    )
    data = encode_record(big)
    assert len(data) < 1024 * 1024
    assert decode_manifest(data) == big
