"""Routing of S3 requests to operations (atoll.gateway.s3proto.route), both addressing
styles, key decoding, and the errors routing itself raises."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atoll.gateway import errors
from atoll.gateway.s3proto import (
    Operation,
    Route,
    bucket_from_host,
    decode_path_segment,
    parse_copy_source,
    route,
    url_encode_key,
)

BASE = "s3.localhost"
COPY = {"x-amz-copy-source": "/src/a%20b"}

# (method, bucket-level or object-level or service, query, headers, expected operation)
TABLE: list[tuple[str, str, list[tuple[str, str]], dict[str, str], Operation]] = [
    ("GET", "service", [], {}, Operation.LIST_BUCKETS),
    ("PUT", "bucket", [], {}, Operation.CREATE_BUCKET),
    ("DELETE", "bucket", [], {}, Operation.DELETE_BUCKET),
    ("HEAD", "bucket", [], {}, Operation.HEAD_BUCKET),
    ("GET", "bucket", [("location", "")], {}, Operation.GET_BUCKET_LOCATION),
    ("GET", "bucket", [], {}, Operation.LIST_OBJECTS),
    ("GET", "bucket", [("prefix", "a/"), ("delimiter", "/")], {}, Operation.LIST_OBJECTS),
    ("GET", "bucket", [("list-type", "2")], {}, Operation.LIST_OBJECTS_V2),
    ("GET", "bucket", [("versions", "")], {}, Operation.LIST_OBJECT_VERSIONS),
    ("GET", "bucket", [("uploads", "")], {}, Operation.LIST_MULTIPART_UPLOADS),
    ("POST", "bucket", [("delete", "")], {}, Operation.DELETE_OBJECTS),
    ("PUT", "object", [], {}, Operation.PUT_OBJECT),
    ("PUT", "object", [("x-id", "PutObject")], {}, Operation.PUT_OBJECT),
    ("PUT", "object", [], COPY, Operation.COPY_OBJECT),
    ("GET", "object", [], {}, Operation.GET_OBJECT),
    ("GET", "object", [("response-content-type", "a/b")], {}, Operation.GET_OBJECT),
    ("HEAD", "object", [], {}, Operation.HEAD_OBJECT),
    ("DELETE", "object", [], {}, Operation.DELETE_OBJECT),
    ("POST", "object", [("uploads", "")], {}, Operation.CREATE_MULTIPART_UPLOAD),
    ("PUT", "object", [("partNumber", "3"), ("uploadId", "u")], {}, Operation.UPLOAD_PART),
    ("PUT", "object", [("uploadId", "u"), ("partNumber", "3")], COPY, Operation.UPLOAD_PART_COPY),
    ("POST", "object", [("uploadId", "u")], {}, Operation.COMPLETE_MULTIPART_UPLOAD),
    ("DELETE", "object", [("uploadId", "u")], {}, Operation.ABORT_MULTIPART_UPLOAD),
    ("GET", "object", [("uploadId", "u")], {}, Operation.LIST_PARTS),
    ("GET", "object", [("tagging", "")], {}, Operation.GET_OBJECT_TAGGING),
]


def _request(level: str, style: str) -> tuple[str, str]:
    """(host, raw path) for a request on bucket `bkt`, key `dir/k+1 é` (encoded)."""
    raw_key = "dir/k+1%20%C3%A9"
    if style == "path":
        path = {"service": "/", "bucket": "/bkt", "object": f"/bkt/{raw_key}"}[level]
        return f"{BASE}:9000", path
    if level == "service":
        return BASE, "/"
    return f"bkt.{BASE}:9000", ("/" if level == "bucket" else f"/{raw_key}")


@pytest.mark.parametrize("style", ["path", "virtual"])
@pytest.mark.parametrize(("method", "level", "query", "headers", "operation"), TABLE)
def test_every_operation_routes_in_both_styles(
    style: str,
    method: str,
    level: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    operation: Operation,
) -> None:
    host, path = _request(level, style)
    result = route(method, host, path, query, headers, base_domain=BASE)
    assert result.operation is operation
    assert result.bucket == (None if level == "service" else "bkt")
    assert result.key == ("dir/k+1 é" if level == "object" else None)


def test_every_operation_is_in_the_table() -> None:
    assert {row[4] for row in TABLE} == set(Operation)


def test_path_style_trailing_slash_and_query_first_value() -> None:
    assert route("GET", "h", "/bkt/", [("prefix", "a"), ("prefix", "b")], {}) == Route(
        Operation.LIST_OBJECTS, "bkt", None, {"prefix": "a"}
    )


def test_path_style_keeps_slashes_inside_keys() -> None:
    result = route("GET", "h", "/bkt//a//b/", [], {})
    assert (result.bucket, result.key) == ("bkt", "/a//b/")


def test_encoded_slash_in_key_is_a_slash() -> None:
    assert route("GET", "h", "/bkt/a%2Fb", [], {}).key == "a/b"


def test_without_base_domain_every_host_is_path_style() -> None:
    result = route("GET", "bkt.s3.localhost", "/other/key", [], {})
    assert (result.bucket, result.key) == ("other", "key")


@pytest.mark.parametrize(
    ("host", "bucket"),
    [
        ("bkt.s3.localhost", "bkt"),
        ("BKT.S3.LOCALHOST:443", "bkt"),
        ("my.dotted.bucket.s3.localhost", "my.dotted.bucket"),
        ("s3.localhost", None),
        ("s3.localhost:9000", None),
        ("xs3.localhost", None),
        ("example.com", None),
        ("127.0.0.1:9000", None),
        ("[::1]:9000", None),
        (".s3.localhost", None),
    ],
)
def test_bucket_from_host(host: str, bucket: str | None) -> None:
    assert bucket_from_host(host, BASE) == bucket


@pytest.mark.parametrize(
    "name", ["acl", "policy", "lifecycle", "tagging", "versioning", "cors", "website"]
)
def test_unsupported_subresources_are_not_implemented(name: str) -> None:
    if name != "tagging":  # reading an object's tags is served (an empty set)
        with pytest.raises(errors.S3NotImplemented) as caught:
            route("GET", "h", "/bkt/key", [(name, "")], {})
        assert caught.value.status == 501
    with pytest.raises(errors.S3NotImplemented):
        route("PUT", "h", "/bkt", [(name, "")], {})
    with pytest.raises(errors.S3NotImplemented):
        route("PUT", "h", "/bkt/key", [(name, "")], {})


def test_get_object_tagging_is_routed_and_bucket_tagging_is_not() -> None:
    assert route("GET", "h", "/bkt/key", [("tagging", "")], {}).operation is (
        Operation.GET_OBJECT_TAGGING
    )
    with pytest.raises(errors.S3NotImplemented):
        route("GET", "h", "/bkt", [("tagging", "")], {})
    with pytest.raises(errors.S3NotImplemented):
        route("GET", "h", "/bkt/key", [("tagging", ""), ("acl", "")], {})


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/"), ("DELETE", "/"), ("PATCH", "/bkt"), ("OPTIONS", "/bkt/k")],
)
def test_method_not_allowed(method: str, path: str) -> None:
    with pytest.raises(errors.MethodNotAllowed) as caught:
        route(method, "h", path, [], {})
    assert caught.value.status == 405


def test_post_without_known_subresource_is_not_implemented() -> None:
    with pytest.raises(errors.S3NotImplemented):
        route("POST", "h", "/bkt", [], {})
    with pytest.raises(errors.S3NotImplemented):
        route("POST", "h", "/bkt/k", [], {})


def test_bad_list_type_and_half_a_part_upload() -> None:
    with pytest.raises(errors.InvalidArgument):
        route("GET", "h", "/bkt", [("list-type", "3")], {})
    with pytest.raises(errors.InvalidRequest):
        route("PUT", "h", "/bkt/k", [("partNumber", "1")], {})


def test_key_length_limit_is_in_utf8_bytes() -> None:
    at_limit = "é" * 512  # 1024 bytes
    assert route("GET", "h", "/b/" + quote(at_limit), [], {}).key == at_limit
    with pytest.raises(errors.KeyTooLongError) as caught:
        route("GET", "h", "/b/" + quote(at_limit + "a"), [], {})
    assert caught.value.code == "KeyTooLong"


@pytest.mark.parametrize("path", ["/b/%FF", "/b/%C3", "bkt/k", "/%2F/x" + "%E0%80"])
def test_invalid_uri(path: str) -> None:
    with pytest.raises(errors.InvalidURI):
        route("GET", "h", path, [], {})


def test_plus_is_literal_in_paths() -> None:
    assert decode_path_segment("a+b%2B%20") == "a+b+ "


@given(st.text(min_size=1, max_size=200))
def test_key_encoding_round_trips(key: str) -> None:
    # What clients send (every byte but the unreserved ones encoded) and our
    # encoding-type=url rendering both decode back to the key.
    assert decode_path_segment(quote(key, safe="")) == key
    assert decode_path_segment(url_encode_key(key)) == key
    assert set(url_encode_key(key)) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/%"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/src/a%20b", ("src", "a b", None)),
        ("src/dir/a+b", ("src", "dir/a+b", None)),
        ("/src/k?versionId=null", ("src", "k", "null")),
        ("src/%E2%82%AC", ("src", "€", None)),
    ],
)
def test_parse_copy_source(value: str, expected: tuple[str, str, str | None]) -> None:
    assert parse_copy_source(value) == expected


@pytest.mark.parametrize("value", ["", "/", "src", "src/", "/src/%FF"])
def test_parse_copy_source_rejects(value: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        parse_copy_source(value)
