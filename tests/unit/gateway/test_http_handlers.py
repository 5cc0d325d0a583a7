"""atoll.gateway.handlers, the pure half: what request headers and query parameters
mean (metadata, copy sources, list parameters) and what a GET or HEAD answers
(conditions, ranges, part numbers, checksums, response-* overrides)."""

from __future__ import annotations

import base64

import pytest

from atoll.gateway import handlers, sigv4
from atoll.gateway.checksums import Algorithm
from atoll.gateway.errors import (
    InvalidArgument,
    InvalidRange,
    InvalidRequest,
    KeyTooLongError,
    MetadataTooLarge,
    PreconditionFailed,
)
from atoll.gateway.handlers import InvalidPartNumber, ReadPlan
from atoll.gateway.http import S3Limits
from atoll.objects.index import encode_continuation_token
from atoll.objects.manifest import (
    Checksum,
    ChecksumAlgorithm,
    ChecksumType,
    Layout,
    Manifest,
    ObjectMetadata,
    Part,
    PartRecord,
)

ETAG = "9e107d9d372bb6826bd81d3542a419d6"
MODIFIED_MS = 1_700_000_000_123  # Tue, 14 Nov 2023 22:13:20 GMT


def headers(*pairs: tuple[str, str]) -> sigv4.Headers:
    return sigv4.Headers(pairs)


def part(number: int, size: int) -> Part:
    return Part(number, size, ETAG, 0, 1 << 20, 1, (0, 1))


def manifest(
    size: int = 1000,
    *,
    parts: list[Part] | None = None,
    metadata: ObjectMetadata | None = None,
    storage_class: str = "STANDARD",
    checksum: Checksum | None = None,
) -> Manifest:
    layout = Layout(0, 2, 1, parts or [part(0, size)])
    return Manifest(
        "bucket",
        "key",
        "v1",
        layout.size,
        ETAG + (f"-{len(parts)}" if parts else ""),
        MODIFIED_MS,
        storage_class,
        metadata or ObjectMetadata(),
        checksum,
        layout=layout,
    )


def header_map(plan: ReadPlan) -> dict[str, str]:
    return dict(plan.headers)


# -- metadata --------------------------------------------------------------------------------


def test_object_metadata_takes_content_headers_and_user_metadata() -> None:
    metadata = handlers.object_metadata(
        headers(
            ("Content-Type", "text/plain"),
            ("Content-Encoding", "gzip,aws-chunked"),
            ("Cache-Control", "no-cache"),
            ("Expires", "Thu, 01 Dec 2094 16:00:00 GMT"),
            ("X-Amz-Meta-Colour", "blue"),
            ("x-amz-meta-list", "a"),
            ("x-amz-meta-list", "b"),
            ("x-amz-meta-", "ignored: no name"),
            ("x-amz-date", "not metadata"),
        )
    )
    assert metadata == ObjectMetadata(
        content_type="text/plain",
        content_encoding="gzip",
        cache_control="no-cache",
        expires="Thu, 01 Dec 2094 16:00:00 GMT",
        user=(("colour", "blue"), ("list", "a,b")),
    )


def test_aws_chunked_alone_leaves_no_content_encoding() -> None:
    metadata = handlers.object_metadata(headers(("content-encoding", "aws-chunked")))
    assert metadata.content_encoding == ""


def test_user_metadata_over_2_kb_is_metadata_too_large() -> None:
    with pytest.raises(MetadataTooLarge):
        handlers.object_metadata(headers(("x-amz-meta-big", "x" * 2048)))


def test_a_content_header_too_long_to_store_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument):
        handlers.object_metadata(headers(("content-disposition", "x" * 9000)))


def test_storage_class_and_write_conditions() -> None:
    assert handlers.storage_class(headers()) is None
    assert handlers.storage_class(headers(("x-amz-storage-class", " GLACIER "))) == "GLACIER"
    assert handlers.write_conditions(headers(("if-none-match", "*"), ("if-modified-since", "x"))) == {"if-none-match": "*"}  # fmt: skip
    assert handlers.write_conditions(headers()) is None


def test_checksum_algorithm_of_create_multipart_upload() -> None:
    assert handlers.checksum_algorithm(headers()) is None
    assert handlers.checksum_algorithm(headers(("x-amz-checksum-algorithm", "crc32c"))) is ChecksumAlgorithm.CRC32C  # fmt: skip
    with pytest.raises(InvalidRequest):
        handlers.checksum_algorithm(headers(("x-amz-checksum-algorithm", "md4")))


def test_body_digests_add_the_announced_sdk_algorithm() -> None:
    assert handlers.body_digests(headers()) == (Algorithm.MD5,)
    announced = headers(("x-amz-sdk-checksum-algorithm", "CRC32"))
    assert handlers.body_digests(announced) == (Algorithm.MD5, Algorithm.CRC32)
    assert handlers.body_digests(headers(("x-amz-sdk-checksum-algorithm", "MD5"))) == (Algorithm.MD5,)  # fmt: skip


# -- copy sources ----------------------------------------------------------------------------


def test_copy_source_with_conditions_and_range() -> None:
    source = handlers.copy_source(
        headers(
            ("x-amz-copy-source", "/src-bucket/a%20key?versionId=null"),
            ("x-amz-copy-source-if-match", '"abc"'),
            ("x-amz-copy-source-if-unmodified-since", "Tue, 14 Nov 2023 22:13:20 GMT"),
            ("x-amz-copy-source-range", "bytes=5-9"),
        ),
        ranged=True,
    )
    assert (source.bucket, source.key, source.byte_range) == ("src-bucket", "a key", (5, 9))
    assert source.conditions == {
        "if-match": '"abc"',
        "if-unmodified-since": "Tue, 14 Nov 2023 22:13:20 GMT",
    }
    plain = handlers.copy_source(
        headers(("x-amz-copy-source", "b/k"), ("x-amz-copy-source-range", "bytes=0-1")),
        ranged=False,
    )
    assert (plain.byte_range, plain.conditions) == (None, None)


@pytest.mark.parametrize("value", ["bytes=5-", "bytes=-5", "bytes=9-5", "5-9", "bytes=a-b"])
def test_copy_source_range_must_name_both_ends(value: str) -> None:
    with pytest.raises(InvalidArgument):
        handlers.copy_source_range(value)


def test_copy_source_errors() -> None:
    with pytest.raises(InvalidArgument):
        handlers.copy_source(headers(("x-amz-copy-source", "bucket-only")), ranged=False)
    with pytest.raises(InvalidArgument):  # buckets are unversioned
        handlers.copy_source(headers(("x-amz-copy-source", "b/k?versionId=3")), ranged=False)
    with pytest.raises(KeyTooLongError):
        handlers.copy_source(headers(("x-amz-copy-source", "b/" + "k" * 1025)), ranged=False)


def test_metadata_directive() -> None:
    assert handlers.replace_metadata(headers()) is False
    assert handlers.replace_metadata(headers(("x-amz-metadata-directive", "replace"))) is True
    with pytest.raises(InvalidArgument):
        handlers.replace_metadata(headers(("x-amz-metadata-directive", "MERGE")))


# -- query parameters ------------------------------------------------------------------------


def test_int_param_and_max_keys() -> None:
    assert handlers.max_keys({}, "max-keys") == 1000
    assert handlers.max_keys({"max-keys": "7"}, "max-keys") == 7
    assert handlers.max_keys({"max-keys": "5000"}, "max-keys") == 1000
    assert handlers.max_keys({"max-keys": "9" * 40}, "max-keys") == 1000
    for bad in ("-1", "1.5", "", "ten"):
        with pytest.raises(InvalidArgument):
            handlers.max_keys({"max-keys": bad}, "max-keys")


@pytest.mark.parametrize("value", ["0", "10001", "x", "99999999999999"])
def test_part_number_is_1_to_10000(value: str) -> None:
    with pytest.raises(InvalidArgument):
        handlers.part_number({"partNumber": value})
    assert handlers.part_number({"partNumber": "10000"}) == 10000


def test_encoding_type_and_continuation() -> None:
    assert handlers.encoding_type({}) is None
    assert handlers.encoding_type({"encoding-type": "url"}) == "url"
    with pytest.raises(InvalidArgument):
        handlers.encoding_type({"encoding-type": "base64"})
    token = encode_continuation_token("dir/key")
    assert handlers.continuation_after({"continuation-token": token, "start-after": "a"}) == "dir/key"  # fmt: skip
    assert handlers.continuation_after({"start-after": "a"}) == "a"
    with pytest.raises(InvalidArgument):
        handlers.continuation_after({"continuation-token": token[:-2]})


# -- GetObject / HeadObject ------------------------------------------------------------------


def test_a_plain_read_answers_the_whole_object_with_its_headers() -> None:
    m = manifest(
        metadata=ObjectMetadata(
            content_type="text/html", content_language="en", user=(("colour", "blue"),)
        )
    )
    plan = handlers.read_plan(m, headers(), {}, get=True)
    assert (plan.status, plan.first, plan.end) == (200, 0, 1000)
    assert header_map(plan) == {
        "ETag": f'"{ETAG}"',
        "Last-Modified": "Tue, 14 Nov 2023 22:13:20 GMT",
        "Accept-Ranges": "bytes",
        "Content-Type": "text/html",
        "Content-Language": "en",
        "x-amz-meta-colour": "blue",
    }


def test_defaults_and_storage_class() -> None:
    plan = handlers.read_plan(
        manifest(storage_class="REDUCED_REDUNDANCY"), headers(), {}, get=False
    )
    assert header_map(plan)["Content-Type"] == "binary/octet-stream"
    assert header_map(plan)["x-amz-storage-class"] == "REDUCED_REDUNDANCY"


def test_range_reads() -> None:
    plan = handlers.read_plan(manifest(), headers(("range", "bytes=10-19")), {}, get=True)
    assert (plan.status, plan.first, plan.end) == (206, 10, 20)
    assert header_map(plan)["Content-Range"] == "bytes 10-19/1000"
    with pytest.raises(InvalidRange):
        handlers.read_plan(manifest(), headers(("range", "bytes=1000-")), {}, get=True)


def test_conditions_come_before_the_range() -> None:
    not_modified = handlers.read_plan(
        manifest(), headers(("if-none-match", f'"{ETAG}"'), ("range", "bytes=5000-")), {}, get=True
    )
    assert not_modified == ReadPlan(
        304, [("ETag", f'"{ETAG}"'), ("Last-Modified", "Tue, 14 Nov 2023 22:13:20 GMT")]
    )
    with pytest.raises(PreconditionFailed):
        handlers.read_plan(manifest(), headers(("if-match", '"other"')), {}, get=False)


def test_checksum_only_for_the_whole_object_in_checksum_mode() -> None:
    digest = bytes.fromhex("0badf00d")
    m = manifest(checksum=Checksum(ChecksumAlgorithm.CRC32, digest))
    enabled = headers(("x-amz-checksum-mode", "ENABLED"))
    full = header_map(handlers.read_plan(m, enabled, {}, get=True))
    assert full["x-amz-checksum-crc32"] == base64.b64encode(digest).decode()
    assert full["x-amz-checksum-type"] == "FULL_OBJECT"
    assert "x-amz-checksum-crc32" not in header_map(handlers.read_plan(m, headers(), {}, get=True))
    ranged = headers(("x-amz-checksum-mode", "ENABLED"), ("range", "bytes=0-1"))
    assert "x-amz-checksum-crc32" not in header_map(handlers.read_plan(m, ranged, {}, get=True))


def test_a_composite_checksum_carries_the_part_count() -> None:
    digest = bytes.fromhex("0badf00d")
    parts = [part(1, 10), part(2, 10), part(3, 5)]
    checksum = Checksum(ChecksumAlgorithm.CRC32C, digest, ChecksumType.COMPOSITE)
    m = manifest(parts=[Part(p.number, p.size, ETAG, 0, 1 << 20, 1, (0, 1), digest) for p in parts], checksum=checksum)  # fmt: skip
    assert handlers.checksum_header_value(m) == (
        "x-amz-checksum-crc32c",
        base64.b64encode(digest).decode() + "-3",
    )


def test_response_overrides_apply_to_get_only() -> None:
    query = {"response-content-type": "text/csv", "response-cache-control": "max-age=9"}
    get = header_map(handlers.read_plan(manifest(), headers(), query, get=True))
    assert (get["Content-Type"], get["Cache-Control"]) == ("text/csv", "max-age=9")
    head = header_map(handlers.read_plan(manifest(), headers(), query, get=False))
    assert head["Content-Type"] == "binary/octet-stream" and "Cache-Control" not in head


def test_part_number_reads() -> None:
    m = manifest(parts=[part(1, 100), part(2, 100), part(4, 7)])
    plan = handlers.read_plan(m, headers(), {"partNumber": "2"}, get=True)
    assert (plan.status, plan.first, plan.end) == (206, 100, 200)
    assert header_map(plan)["x-amz-mp-parts-count"] == "3"
    assert handlers.part_range(m, 4) == ((200, 206), 3)
    with pytest.raises(InvalidPartNumber):
        handlers.part_range(m, 3)
    single = manifest(50)
    assert handlers.part_range(single, 1) == ((0, 49), 1)
    with pytest.raises(InvalidPartNumber):
        handlers.part_range(single, 2)


def test_part_headers() -> None:
    record = PartRecord(Part(3, 10, ETAG, 0, 1 << 20, 1, (0, 1), b"\x00\x00\x00\x01"), 2, 1, MODIFIED_MS, ChecksumAlgorithm.CRC32)  # fmt: skip
    assert handlers.part_headers(record) == [
        ("ETag", f'"{ETAG}"'),
        ("x-amz-checksum-crc32", "AAAAAQ=="),
    ]


def test_limits_must_be_positive() -> None:
    S3Limits()
    with pytest.raises(ValueError, match="requests_in_flight_max"):
        S3Limits(requests_in_flight_max=0)
