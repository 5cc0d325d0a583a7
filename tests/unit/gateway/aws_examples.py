"""The published SigV4 examples for S3 (Amazon S3 API reference: "Signature Calculations
for the Authorization Header: Transferring Payload in a Single Chunk", "... in Multiple
Chunks", "... Including Trailing Headers", and "Authenticating Requests: Using Query
Parameters"), as data: the example credentials, time, requests and the signatures AWS
printed for them. Shared by the gateway tests; not a test module itself.
"""

from __future__ import annotations

from dataclasses import dataclass

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"
AMZ_DATE = "20130524T000000Z"
NOW_S = 1369353600.0  # 2013-05-24T00:00:00Z
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
VHOST = "examplebucket.s3.amazonaws.com"


def secrets(access_key: str) -> str | None:
    return SECRET_KEY if access_key == ACCESS_KEY else None


def authorization(signed_headers: str, signature: str) -> str:
    return (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20130524/{REGION}/s3/aws4_request,"
        f"SignedHeaders={signed_headers},Signature={signature}"
    )


@dataclass(frozen=True)
class HeaderExample:
    name: str
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    """As sent, without Authorization."""
    signed_headers: str
    signature: str
    canonical_request_sha256: str | None = None


HEADER_EXAMPLES = (
    HeaderExample(
        "get-object-range",
        "GET",
        "/test.txt",
        (
            ("Host", VHOST),
            ("Range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", AMZ_DATE),
        ),
        "host;range;x-amz-content-sha256;x-amz-date",
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972",
    ),
    HeaderExample(
        # The key is sent with a raw `$` but signed as %24: S3 encodes the path once.
        "put-object",
        "PUT",
        "/test$file.text",
        (
            ("Host", VHOST),
            ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-date", AMZ_DATE),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            # sha256("Welcome to Amazon S3.")
            (
                "x-amz-content-sha256",
                "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
            ),
        ),
        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
        "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d",
    ),
    HeaderExample(
        # A query parameter without a value is signed as `lifecycle=`.
        "get-bucket-lifecycle",
        "GET",
        "/?lifecycle",
        (("Host", VHOST), ("x-amz-content-sha256", EMPTY_SHA256), ("x-amz-date", AMZ_DATE)),
        "host;x-amz-content-sha256;x-amz-date",
        "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
        "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca",
    ),
    HeaderExample(
        # Parameters sorted by name in the canonical query.
        "list-objects",
        "GET",
        "/?max-keys=2&prefix=J",
        (("Host", VHOST), ("x-amz-content-sha256", EMPTY_SHA256), ("x-amz-date", AMZ_DATE)),
        "host;x-amz-content-sha256;x-amz-date",
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
    ),
)

PUT_OBJECT_BODY = b"Welcome to Amazon S3."

PRESIGNED_URL = (
    "https://examplebucket.s3.amazonaws.com/test.txt"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
)
PRESIGNED_TARGET = PRESIGNED_URL.removeprefix("https://" + VHOST)
PRESIGNED_EXPIRES_S = 86400

# -- chunked upload: 65 KiB of "a" in a 64 KiB and a 1 KiB chunk, then the final chunk --

CHUNKED_PAYLOAD = b"a" * 66560
CHUNK_SIZES = (65536, 1024, 0)
CHUNKED_HEADERS = (
    ("Host", "s3.amazonaws.com"),
    ("x-amz-date", AMZ_DATE),
    ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
    ("Content-Encoding", "aws-chunked"),
    ("x-amz-decoded-content-length", "66560"),
)
CHUNKED_TARGET = "/examplebucket/chunkObject.txt"

SIGNED_CHUNKED_HEADERS = (
    *CHUNKED_HEADERS,
    ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
    ("Content-Length", "66824"),
)
SIGNED_CHUNKED_SIGNED_HEADERS = (
    "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
    "x-amz-decoded-content-length;x-amz-storage-class"
)
SEED_SIGNATURE = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNK_SIGNATURES = (
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
)
SIGNED_CHUNKED_CONTENT_LENGTH = 66824

TRAILER_CHUNKED_HEADERS = (
    *CHUNKED_HEADERS,
    ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"),
    ("x-amz-trailer", "x-amz-checksum-crc32c"),
)
TRAILER_CHUNKED_SIGNED_HEADERS = (
    "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
    "x-amz-storage-class;x-amz-trailer"
)
TRAILER_SEED_SIGNATURE = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
TRAILER_CHUNK_SIGNATURES = (
    "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
    "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
    "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
)
TRAILER_CRC32C = "sOO8/Q=="
TRAILER_SIGNATURE = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"


def chunked_body(signatures: tuple[str, ...], trailer: bytes = b"\r\n") -> bytes:
    """The example body, built by hand: each chunk is `hex(size);chunk-signature=...`,
    CRLF, the data, CRLF; the final chunk has no data, then `trailer`."""
    parts = []
    for size, signature in zip(CHUNK_SIZES, signatures, strict=True):
        parts.append(f"{size:x};chunk-signature={signature}\r\n".encode())
        if size:
            parts.append(b"a" * size + b"\r\n")
    return b"".join(parts) + trailer


def trailer_body() -> bytes:
    """The trailer example as AWS prints it: an empty line after the final chunk, then
    the checksum and the trailer signature, and no empty line at the end."""
    return chunked_body(
        TRAILER_CHUNK_SIGNATURES,
        b"\r\nx-amz-checksum-crc32c:" + TRAILER_CRC32C.encode() + b"\r\n"
        b"x-amz-trailer-signature:" + TRAILER_SIGNATURE.encode() + b"\r\n",
    )
