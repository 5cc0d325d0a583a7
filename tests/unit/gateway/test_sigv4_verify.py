"""atoll.gateway.sigv4: the canonical forms piece by piece, and every way header auth
and query auth refuse a request (each with its S3 error code), with injected times."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import aws_examples as ex

from atoll.gateway import sigv4
from atoll.gateway.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidRequest,
    RequestTimeTooSkewed,
    S3Error,
    S3NotImplemented,
    SignatureDoesNotMatch,
)

AK = "atoll-test-key"
SK = "atoll-test-secret"
T = 1_767_225_600.0  # 2026-01-01T00:00:00Z
HOST = "127.0.0.1:9000"


def lookup(access_key: str) -> str | None:
    return {AK: SK}.get(access_key)


def signed(
    method: str = "GET",
    target: str = "/bucket/key",
    headers: tuple[tuple[str, str], ...] = (),
    payload_hash: str = ex.EMPTY_SHA256,
    secret: str = SK,
    now_s: float = T,
) -> sigv4.Request:
    request = sigv4.Request.from_target(method, target, [("Host", HOST), *headers])
    return sigv4.sign_request(
        request,
        access_key=AK,
        secret_key=secret,
        region="us-east-1",
        now_s=now_s,
        payload_hash=payload_hash,
    )


def with_header(request: sigv4.Request, name: str, value: str | None) -> sigv4.Request:
    return sigv4.Request(
        request.method, request.path, request.query, request.headers.replace(name, value)
    )


def authorization_of(request: sigv4.Request) -> str:
    return request.headers.get("authorization") or ""


def verify(request: sigv4.Request, now_s: float = T, **kwargs: str) -> sigv4.Authenticated:
    return sigv4.verify_header_auth(request, lookup, now_s, region=kwargs.get("region"))


# -- canonical pieces ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "keep_slash", "encoded"),
    [
        ("a b", True, "a%20b"),
        ("a+b=c&d", False, "a%2Bb%3Dc%26d"),
        ("A-z_0.9~", False, "A-z_0.9~"),
        ("a/b", True, "a/b"),
        ("a/b", False, "a%2Fb"),
        ("é", False, "%C3%A9"),
        ("!'()*$", True, "%21%27%28%29%2A%24"),
    ],
)
def test_uri_encode_keeps_only_unreserved_characters(
    text: str, keep_slash: bool, encoded: str
) -> None:
    assert sigv4.uri_encode(text, keep_slash=keep_slash) == encoded


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("/test$file.text", "/test%24file.text"),
        ("/test%24file.text", "/test%24file.text"),  # decoded once, not encoded twice
        ("/a%2fb", "/a/b"),  # the same key; a client that signed it as sent: see below
        ("/a%7e%41%3a", "/a~A%3A"),
        ("/b//x/../y/./", "/b//x/../y/./"),  # S3 does not normalise
        ("", "/"),
        ("/%E2%82%AC%20x", "/%E2%82%AC%20x"),
    ],
)
def test_canonical_uri(raw: str, canonical: str) -> None:
    assert sigv4.canonical_uri(raw) == canonical


def test_canonical_query_decodes_encodes_and_sorts() -> None:
    query = sigv4.parse_query("b=2&a=x%20y&a=%2B&c&d=&prefix=a/b+c")
    assert query == (
        ("b", "2"),
        ("a", "x%20y"),
        ("a", "%2B"),
        ("c", ""),
        ("d", ""),
        ("prefix", "a/b+c"),
    )
    assert sigv4.canonical_query(query) == "a=%2B&a=x%20y&b=2&c=&d=&prefix=a%2Fb%2Bc"


def test_canonical_headers_trim_and_join_repeated_values() -> None:
    headers = sigv4.Headers(
        [("X-Amz-Meta-A", "  one   two  "), ("x-amz-meta-a", "three"), ("Host", "h")]
    )
    assert sigv4.canonical_headers(headers, ["host", "x-amz-meta-a"]) == (
        "host:h\nx-amz-meta-a:one two,three\n"
    )


def test_signing_keys_match_the_published_derivation_and_the_cache_is_bounded() -> None:
    # AWS general reference, "Examples of how to derive a signing key for Signature
    # Version 4": secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20150830, us-east-1, iam.
    scope = sigv4.CredentialScope("20150830", "us-east-1", "iam")
    expected = bytes.fromhex("c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9")
    assert sigv4.derive_signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", scope) == expected
    cache = sigv4.SigningKeyCache(entries_max=2)
    for day in ("20150830", "20150831", "20150901"):
        cache.get("secret", sigv4.CredentialScope(day, "us-east-1"))
    assert len(cache) == 2
    assert cache.get("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", scope) == expected


def test_amz_dates_round_trip_and_impossible_ones_are_refused() -> None:
    assert sigv4.format_amz_date(T) == "20260101T000000Z"
    assert sigv4.parse_amz_date("20260101T000000Z") == T
    for bad in ("20130230T000000Z", "2013524T000000Z", "20130524T000000", "20130524 000000Z"):
        assert sigv4.parse_amz_date(bad) is None


def test_request_helpers() -> None:
    request = sigv4.Request.from_target(
        "put", "/b/k?uploadId=a%2Bb+c&partNumber=2", [("HOST", "h")]
    )
    assert (request.method, request.path, request.host) == ("PUT", "/b/k", "h")
    assert sigv4.decoded_query(request) == [("uploadId", "a+b+c"), ("partNumber", "2")]
    assert request.target == "/b/k?uploadId=a%2Bb+c&partNumber=2"
    assert sigv4.stored_content_encoding("aws-chunked") is None
    assert sigv4.stored_content_encoding("aws-chunked, gzip") == "gzip"
    assert sigv4.stored_content_encoding(None) is None


# -- header auth: success and the error paths -----------------------------------------------


def test_a_signed_request_verifies_with_its_payload_mode() -> None:
    auth = verify(signed("PUT", "/b/k?x=1", payload_hash="UNSIGNED-PAYLOAD"))
    assert (auth.access_key, auth.payload_mode) == (AK, sigv4.PayloadMode.UNSIGNED)
    assert auth.chunk_context is None


def test_wrong_secret_is_signature_does_not_match() -> None:
    with pytest.raises(SignatureDoesNotMatch) as caught:
        verify(signed(secret="not-the-secret"))
    assert caught.value.status == 403
    assert caught.value.details["AWSAccessKeyId"] == AK
    assert caught.value.details["CanonicalRequest"].startswith("GET\n/bucket/key\n\nhost:")


def test_unknown_access_key_is_invalid_access_key_id() -> None:
    request = signed()
    other = authorization_of(request).replace(f"Credential={AK}/", "Credential=nobody/")
    with pytest.raises(InvalidAccessKeyId) as caught:
        verify(with_header(request, "authorization", other))
    assert caught.value.details == {"AWSAccessKeyId": "nobody"}


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: sigv4.Request("DELETE", r.path, r.query, r.headers),
        lambda r: sigv4.Request(r.method, "/bucket/key2", r.query, r.headers),
        lambda r: sigv4.Request(r.method, r.path, (("x", "1"),), r.headers),
        lambda r: with_header(r, "host", "elsewhere:9000"),
        lambda r: with_header(r, "x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
    ],
    ids=["method", "path", "query", "host", "payload-hash"],
)
def test_anything_signed_that_changes_breaks_the_signature(
    tamper: Callable[[sigv4.Request], sigv4.Request],
) -> None:
    verify(signed())
    with pytest.raises(SignatureDoesNotMatch):
        verify(tamper(signed()))


@pytest.mark.parametrize(
    ("offset_s", "ok"), [(0, True), (900, True), (-900, True), (901, False), (-901, False)]
)
def test_clock_skew_beyond_fifteen_minutes_is_refused(offset_s: int, ok: bool) -> None:
    request = signed()
    if ok:
        verify(request, now_s=T + offset_s)
        return
    with pytest.raises(RequestTimeTooSkewed) as caught:
        verify(request, now_s=T + offset_s)
    assert caught.value.details["RequestTime"] == "20260101T000000Z"
    assert caught.value.details["ServerTime"] == sigv4.format_amz_date(T + offset_s)


def replace_in_authorization(old: str, new: str) -> sigv4.Request:
    request = signed()
    value = authorization_of(request)
    assert old in value
    return with_header(request, "authorization", value.replace(old, new))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("/us-east-1/s3/aws4_request", "/us-east-1/s3"),  # too few scope parts
        ("/s3/aws4_request", "/ec2/aws4_request"),  # another service
        ("/aws4_request", "/aws5_request"),
        ("/20260101/", "/20260102/"),  # scope date is not x-amz-date's
        ("/20260101/", "/2026011/"),
        ("SignedHeaders=host;", "SignedHeaders="),  # host not signed
        ("SignedHeaders=host;", "SignedHeaders=Host;"),
        ("Signature=", "Signature=XYZ"),
        ("Signature=", "Sig="),
        (", Signature=", ", Signature=0, Signature="),
        (f"Credential={AK}", "Credential=" + "k" * 129),
    ],
)
def test_malformed_authorization_headers(old: str, new: str) -> None:
    with pytest.raises(AuthorizationHeaderMalformed) as caught:
        verify(replace_in_authorization(old, new))
    assert caught.value.status == 400


def test_a_region_other_than_the_expected_one_is_malformed() -> None:
    verify(signed(), region="us-east-1")
    with pytest.raises(AuthorizationHeaderMalformed) as caught:
        verify(signed(), region="eu-west-1")
    assert caught.value.details == {"Region": "eu-west-1"}


def test_signature_version_2_is_not_supported() -> None:
    request = with_header(signed(), "authorization", f"AWS {AK}:frJIUN8DYpKDtOLCwo//yllqDzg=")
    with pytest.raises(InvalidRequest):
        verify(request)
    v2_query = sigv4.Request.from_target(
        "GET", "/b/k?AWSAccessKeyId=AK&Expires=1&Signature=x", [("Host", HOST)]
    )
    with pytest.raises(InvalidRequest):
        sigv4.authenticate(v2_query, lookup, T)


def test_x_amz_content_sha256_is_required_and_must_be_known() -> None:
    with pytest.raises(InvalidRequest, match="x-amz-content-sha256"):
        verify(with_header(signed(), "x-amz-content-sha256", None))
    with pytest.raises(InvalidArgument):
        verify(signed(payload_hash="SOMETHING-ELSE"))
    with pytest.raises(InvalidArgument):
        verify(signed(payload_hash="ab" * 31))
    with pytest.raises(S3NotImplemented):
        verify(signed(payload_hash="STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"))


@pytest.mark.parametrize("date", [None, "yesterday", "20260101T000000"])
def test_a_missing_or_malformed_date_is_access_denied(date: str | None) -> None:
    with pytest.raises(AccessDenied, match="Date or x-amz-date"):
        verify(with_header(signed(), "x-amz-date", date))


def test_a_date_header_can_stand_in_for_x_amz_date() -> None:
    # Signed by hand from the primitives (the AWS examples pin those): the string to
    # sign uses the Date header's time in ISO 8601 basic form.
    request = sigv4.Request.from_target(
        "GET",
        "/b/k",
        [
            ("Host", HOST),
            ("Date", "Thu, 01 Jan 2026 00:00:00 GMT"),
            ("x-amz-content-sha256", ex.EMPTY_SHA256),
        ],
    )
    names = ["date", "host", "x-amz-content-sha256"]
    canonical = sigv4.canonical_request(
        "GET", "/b/k", "", sigv4.canonical_headers(request.headers, names), names, ex.EMPTY_SHA256
    )
    scope = sigv4.CredentialScope("20260101", "us-east-1")
    signature = sigv4.sign(
        sigv4.derive_signing_key(SK, scope),
        sigv4.string_to_sign("20260101T000000Z", scope, canonical),
    )
    value = f"AWS4-HMAC-SHA256 Credential={AK}/{scope},SignedHeaders={';'.join(names)},Signature={signature}"
    verify(with_header(request, "authorization", value), now_s=T + 60)
    with pytest.raises(RequestTimeTooSkewed):
        verify(with_header(request, "authorization", value), now_s=T + 3600)


def test_unsigned_x_amz_headers_are_access_denied() -> None:
    request = with_header(signed(), "x-amz-meta-late", "added after signing")
    with pytest.raises(AccessDenied) as caught:
        verify(request)
    assert caught.value.details == {"HeadersNotSigned": "x-amz-meta-late"}
    # Other headers may be added (proxies do).
    verify(with_header(signed(), "user-agent", "curl/8"))


def test_a_signed_header_missing_from_the_request_does_not_match() -> None:
    request = signed(headers=(("Content-Type", "text/plain"),))
    verify(request)
    with pytest.raises(SignatureDoesNotMatch, match="content-type"):
        verify(with_header(request, "content-type", None))


def test_streaming_modes_carry_the_seed_signature() -> None:
    request = signed("PUT", payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    auth = verify(request)
    assert auth.chunk_context is not None
    assert authorization_of(request).endswith(auth.chunk_context.seed_signature)
    assert auth.chunk_context.scope == "20260101/us-east-1/s3/aws4_request"


# -- query auth (presigned URLs) -----------------------------------------------------------


def presigned(
    expires_s: int = 3600,
    target: str = "/bucket/key",
    now_s: float = T,
    headers: tuple[tuple[str, str], ...] = (),
) -> sigv4.Request:
    path, _, query = target.partition("?")
    url = sigv4.presign_url(
        method="GET",
        endpoint=f"http://{HOST}",
        path=path,
        query=sigv4.parse_query(query),
        access_key=AK,
        secret_key=SK,
        region="us-east-1",
        now_s=now_s,
        expires_s=expires_s,
        headers=headers,
    )
    return sigv4.Request.from_target(
        "GET", url.removeprefix(f"http://{HOST}"), [("Host", HOST), *headers]
    )


def verify_presigned(request: sigv4.Request, now_s: float = T) -> sigv4.Authenticated:
    return sigv4.verify_presigned(request, lookup, now_s)


def with_query(request: sigv4.Request, name: str, value: str | None) -> sigv4.Request:
    query = [(n, v) for n, v in request.query if n != name]
    if value is not None:
        query.append((name, value))
    return sigv4.Request(request.method, request.path, tuple(query), request.headers)


def test_presigned_urls_live_exactly_for_their_lifetime() -> None:
    request = presigned(expires_s=600, target="/bucket/key?partNumber=1&uploadId=a%2Fb")
    for now_s in (T, T + 600, T - 900):
        assert verify_presigned(request, now_s).presigned
    with pytest.raises(AccessDenied, match="Request has expired") as caught:
        verify_presigned(request, T + 601)
    assert caught.value.status == 403
    assert caught.value.details["X-Amz-Expires"] == "600"
    assert caught.value.details["Expires"] == "20260101T001000Z"
    with pytest.raises(AccessDenied, match="not valid yet"):
        verify_presigned(request, T - 901)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Amz-Expires", "604801"),
        ("X-Amz-Expires", "-1"),
        ("X-Amz-Expires", "soon"),
        ("X-Amz-Date", "2026-01-01T00:00:00Z"),
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA1"),
        ("X-Amz-Credential", "nobody"),
        ("X-Amz-Credential", f"{AK}%2F20260102%2Fus-east-1%2Fs3%2Faws4_request"),
        ("X-Amz-SignedHeaders", "x-amz-date"),
        ("X-Amz-Signature", "not-hex"),
        ("X-Amz-Signature", None),
        ("X-Amz-Credential", None),
        ("X-Amz-Date", None),
        ("X-Amz-Expires", None),
        ("X-Amz-SignedHeaders", None),
        ("X-Amz-Algorithm", None),
    ],
)
def test_bad_query_parameters(name: str, value: str | None) -> None:
    with pytest.raises(AuthorizationQueryParametersError) as caught:
        verify_presigned(with_query(presigned(), name, value))
    assert caught.value.status == 400


def test_a_repeated_query_parameter_is_refused() -> None:
    request = presigned()
    doubled = sigv4.Request(
        request.method,
        request.path,
        (*request.query, ("X-Amz-Date", "20260101T000000Z")),
        request.headers,
    )
    with pytest.raises(AuthorizationQueryParametersError, match="more than once"):
        verify_presigned(doubled)


def test_a_week_is_the_longest_lifetime() -> None:
    request = presigned(expires_s=sigv4.PRESIGN_EXPIRES_MAX_S)
    verify_presigned(request, T + sigv4.PRESIGN_EXPIRES_MAX_S)


def test_presigned_failures_of_key_and_signature() -> None:
    request = presigned(target="/bucket/key?versionId=null")
    verify_presigned(request)
    with pytest.raises(SignatureDoesNotMatch):
        verify_presigned(with_query(request, "versionId", "other"))
    with pytest.raises(SignatureDoesNotMatch):
        verify_presigned(sigv4.Request("PUT", request.path, request.query, request.headers))
    other_key = with_query(
        request, "X-Amz-Credential", "nobody%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
    )
    with pytest.raises(InvalidAccessKeyId):
        verify_presigned(other_key)


def test_presigned_headers_are_signed_and_unsigned_x_amz_headers_refused() -> None:
    request = presigned(headers=(("x-amz-meta-owner", "me"),))
    verify_presigned(request)
    changed = sigv4.Request(
        request.method,
        request.path,
        request.query,
        request.headers.replace("x-amz-meta-owner", "you"),
    )
    with pytest.raises(SignatureDoesNotMatch):
        verify_presigned(changed)
    extra = sigv4.Request(
        request.method,
        request.path,
        request.query,
        request.headers.replace("x-amz-acl", "public-read"),
    )
    with pytest.raises(AccessDenied, match="not signed"):
        verify_presigned(extra)


def test_presigned_urls_cannot_carry_aws_chunked_bodies() -> None:
    request = with_query(presigned(), "X-Amz-Content-Sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    with pytest.raises(InvalidRequest):
        verify_presigned(request)


# -- dispatch ------------------------------------------------------------------------------


def test_authenticate_dispatches_on_where_the_signature_is() -> None:
    header = sigv4.authenticate(signed(), lookup, T)
    query = sigv4.authenticate(presigned(), lookup, T)
    assert header is not None and not header.presigned
    assert query is not None and query.presigned
    anonymous = sigv4.Request.from_target("GET", "/bucket/key", [("Host", HOST)])
    assert sigv4.authenticate(anonymous, lookup, T) is None


def test_both_auth_mechanisms_at_once_is_invalid_argument() -> None:
    request = presigned()
    both = with_header(request, "authorization", authorization_of(signed()))
    with pytest.raises(InvalidArgument, match="Only one auth mechanism"):
        sigv4.authenticate(both, lookup, T)


def test_every_verification_error_is_an_s3_error_with_a_code() -> None:
    for error in (SignatureDoesNotMatch(), AccessDenied("x"), RequestTimeTooSkewed()):
        assert isinstance(error, S3Error)
        assert error.code and error.message and error.status in (400, 403)
