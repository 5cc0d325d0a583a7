"""The S3 REST protocol, without the network: what a request means and what to answer.
Pure: no I/O, no clock (times are parameters, Unix milliseconds or seconds), no
randomness. Implements issue 5 §2 for the HTTP shell to call:

- `route`: (method, Host, raw path, query, headers) -> `Route` (operation, bucket,
  key), path-style (`/bucket/key`) and virtual-host style (`bucket.<base domain>`);
- `parse_range` / `content_range`: one `bytes=` range, resolved against the size;
- `evaluate_read_conditions` / `evaluate_write_conditions`: If-Match, If-None-Match,
  If-Modified-Since, If-Unmodified-Since, in RFC 7232 §6 order; `parse_http_date`;
- the XML documents S3 answers with (`render_*`) and the two request bodies it reads
  (`parse_complete_multipart_upload`, `parse_delete`).

Keys are decoded once from the path (`%XX` as UTF-8; `+` stays a plus sign in a path,
as in S3). XML bodies are parsed with expat and refused at the first DOCTYPE (so no
entity can be declared, let alone expanded), within a byte limit.
"""

from __future__ import annotations

import enum
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, unquote_to_bytes
from xml.parsers import expat

from atoll.gateway.errors import (
    InvalidArgument,
    InvalidPartOrder,
    InvalidRange,
    InvalidRequest,
    InvalidURI,
    KeyTooLongError,
    MalformedXML,
    MethodNotAllowed,
    NoSuchKey,
    S3Error,
    S3NotImplemented,
)

KEY_BYTES_MAX = 1024
DELETE_KEYS_MAX = 1000
PARTS_MAX = 10_000
DELETE_BODY_BYTES_MAX = 2 * 1024 * 1024
"""1000 keys of up to 1024 bytes each, with version ids and markup, fit well within."""
COMPLETE_BODY_BYTES_MAX = 4 * 1024 * 1024
"""10000 parts with an ETag and up to a few checksums each fit well within."""
XML_DEPTH_MAX = 8
S3_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'


# -- routing -------------------------------------------------------------------------------


class Operation(enum.Enum):
    LIST_BUCKETS = "ListBuckets"
    CREATE_BUCKET = "CreateBucket"
    DELETE_BUCKET = "DeleteBucket"
    HEAD_BUCKET = "HeadBucket"
    GET_BUCKET_LOCATION = "GetBucketLocation"
    PUT_OBJECT = "PutObject"
    GET_OBJECT = "GetObject"
    HEAD_OBJECT = "HeadObject"
    DELETE_OBJECT = "DeleteObject"
    DELETE_OBJECTS = "DeleteObjects"
    COPY_OBJECT = "CopyObject"
    LIST_OBJECTS = "ListObjects"
    LIST_OBJECTS_V2 = "ListObjectsV2"
    LIST_OBJECT_VERSIONS = "ListObjectVersions"
    CREATE_MULTIPART_UPLOAD = "CreateMultipartUpload"
    UPLOAD_PART = "UploadPart"
    UPLOAD_PART_COPY = "UploadPartCopy"
    COMPLETE_MULTIPART_UPLOAD = "CompleteMultipartUpload"
    ABORT_MULTIPART_UPLOAD = "AbortMultipartUpload"
    LIST_PARTS = "ListParts"
    LIST_MULTIPART_UPLOADS = "ListMultipartUploads"
    GET_OBJECT_TAGGING = "GetObjectTagging"


UNSUPPORTED_SUBRESOURCES = frozenset(
    {
        "accelerate", "acl", "analytics", "attributes", "cors", "encryption",
        "intelligent-tiering", "inventory", "legal-hold", "lifecycle", "logging",
        "metadataConfiguration", "metrics", "notification", "object-lock",
        "ownershipControls", "policy", "policyStatus", "publicAccessBlock", "renameObject",
        "replication", "requestPayment", "restore", "retention", "select", "session",
        "tagging", "torrent", "versioning", "website",
    }
)  # fmt: skip
"""Query names that select an S3 feature Atoll does not have: NotImplemented."""


@dataclass(frozen=True)
class Route:
    """What a request addresses. `query` holds the decoded query parameters (the first
    value of each name)."""

    operation: Operation
    bucket: str | None = None
    key: str | None = None
    query: Mapping[str, str] = field(default_factory=dict)


def decode_path_segment(raw: str) -> str:
    """`%XX` decoded once as UTF-8; `+` is a plus sign. InvalidURI if not UTF-8."""
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidURI() from None


def bucket_from_host(host: str, base_domain: str | None) -> str | None:
    """The bucket a virtual-host-style Host names (`bucket.<base_domain>[:port]`), or
    None for path style (the base domain itself, any other host, or no base domain)."""
    if not base_domain:
        return None
    name = host.strip().lower()
    if name.startswith("["):  # an IPv6 literal is never a virtual host
        return None
    name = name.rsplit(":", 1)[0] if ":" in name else name
    suffix = "." + base_domain.lower().strip(".")
    if name.endswith(suffix) and len(name) > len(suffix):
        return name[: -len(suffix)]
    return None


def split_path(raw_path: str, host_bucket: str | None) -> tuple[str | None, str | None]:
    """(bucket, key) from the raw path; the key is None for a bucket-level request."""
    if not raw_path.startswith("/"):
        raise InvalidURI()
    path = raw_path[1:]
    if host_bucket is not None:
        return host_bucket, (decode_path_segment(path) if path else None)
    if not path:
        return None, None
    bucket_raw, slash, key_raw = path.partition("/")
    bucket = decode_path_segment(bucket_raw)
    if not bucket:
        raise InvalidURI()
    return bucket, (decode_path_segment(key_raw) if slash and key_raw else None)


def route(
    method: str,
    host: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    *,
    base_domain: str | None = None,
) -> Route:
    """The operation a request asks for. `query` is decoded (name, value) pairs;
    `headers` have lower-case names. Raises NotImplemented for sub-resources Atoll
    lacks, MethodNotAllowed, KeyTooLong, InvalidURI, InvalidArgument."""
    params: dict[str, str] = {}
    for name, value in query:
        params.setdefault(name, value)
    bucket, key = split_path(raw_path, bucket_from_host(host, base_domain))
    # Objects have no tags; reading them answers an empty set (the AWS CLI reads the
    # tags of a source object before a multipart copy).
    tags = method.upper() == "GET" and key is not None and set(params) == {"tagging"}
    unsupported = sorted(UNSUPPORTED_SUBRESOURCES.intersection(params))
    if unsupported and not tags:
        raise S3NotImplemented(f"The ?{unsupported[0]} sub-resource is not implemented.")
    if key is not None and len(key.encode("utf-8")) > KEY_BYTES_MAX:
        raise KeyTooLongError(Size=str(len(key.encode("utf-8"))), MaxSizeAllowed="1024")
    method = method.upper()
    if tags:
        operation = Operation.GET_OBJECT_TAGGING
    elif bucket is None:
        operation = _service_operation(method)
    elif key is None:
        operation = _bucket_operation(method, params)
    else:
        operation = _object_operation(method, params, "x-amz-copy-source" in headers)
    return Route(operation, bucket, key, params)


def _service_operation(method: str) -> Operation:
    if method == "GET":
        return Operation.LIST_BUCKETS
    raise MethodNotAllowed(Method=method, ResourceType="SERVICE")


def _bucket_operation(method: str, params: Mapping[str, str]) -> Operation:
    if method == "GET":
        if "location" in params:
            return Operation.GET_BUCKET_LOCATION
        if "uploads" in params:
            return Operation.LIST_MULTIPART_UPLOADS
        if "versions" in params:
            return Operation.LIST_OBJECT_VERSIONS
        list_type = params.get("list-type")
        if list_type is None:
            return Operation.LIST_OBJECTS
        if list_type == "2":
            return Operation.LIST_OBJECTS_V2
        raise InvalidArgument("Invalid List Type specified in Request", ArgumentName="list-type")
    simple = {
        "PUT": Operation.CREATE_BUCKET,
        "DELETE": Operation.DELETE_BUCKET,
        "HEAD": Operation.HEAD_BUCKET,
    }
    if method in simple:
        return simple[method]
    if method == "POST":
        if "delete" in params:
            return Operation.DELETE_OBJECTS
        raise S3NotImplemented("POST object uploads (HTML forms) are not implemented.")
    raise MethodNotAllowed(Method=method, ResourceType="BUCKET")


def _object_operation(method: str, params: Mapping[str, str], copy: bool) -> Operation:
    upload = "uploadId" in params
    if method == "PUT":
        if upload or "partNumber" in params:
            if not (upload and "partNumber" in params):
                raise InvalidRequest("UploadPart needs both partNumber and uploadId.")
            return Operation.UPLOAD_PART_COPY if copy else Operation.UPLOAD_PART
        return Operation.COPY_OBJECT if copy else Operation.PUT_OBJECT
    if method == "GET":
        return Operation.LIST_PARTS if upload else Operation.GET_OBJECT
    if method == "HEAD":
        return Operation.HEAD_OBJECT
    if method == "DELETE":
        return Operation.ABORT_MULTIPART_UPLOAD if upload else Operation.DELETE_OBJECT
    if method == "POST":
        if "uploads" in params:
            return Operation.CREATE_MULTIPART_UPLOAD
        if upload:
            return Operation.COMPLETE_MULTIPART_UPLOAD
        raise S3NotImplemented("This POST on an object is not implemented.")
    raise MethodNotAllowed(Method=method, ResourceType="OBJECT")


def parse_copy_source(value: str) -> tuple[str, str, str | None]:
    """`x-amz-copy-source` (`[/]bucket/key[?versionId=v]`, URL-encoded) -> (bucket,
    key, version id or None). InvalidArgument when it names no bucket and key."""
    path, _, query = value.partition("?")
    bucket_raw, _, key_raw = path.lstrip("/").partition("/")
    version: str | None = None
    for pair in query.split("&") if query else ():
        name, _, version_raw = pair.partition("=")
        if name == "versionId":
            version = decode_path_segment(version_raw)
    try:
        bucket, key = decode_path_segment(bucket_raw), decode_path_segment(key_raw)
    except S3Error:
        bucket = key = ""
    if not bucket or not key:
        raise InvalidArgument("Copy Source must mention the source bucket and key: sourcebucket/sourcekey", ArgumentName="x-amz-copy-source")  # fmt: skip
    if len(key.encode("utf-8")) > KEY_BYTES_MAX:
        raise KeyTooLongError()
    return bucket, key, version


# -- Range ---------------------------------------------------------------------------------

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """The single byte range (first, last inclusive) a `Range` header asks for, or None
    for the whole object. Like S3: a header that is absent, not a `bytes=` range, or
    names several ranges (`bytes=0-1,5-6`: S3 answers 200 with the whole object) is
    ignored, as is a syntactically invalid one (`bytes=5-2`; RFC 9110 §14.2). A valid
    range that selects no byte of the object (first >= size, `bytes=-0`, any range of
    an empty object) raises InvalidRange (416)."""
    if value is None:
        return None
    match = _RANGE.fullmatch(value.strip())
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text:
        if not last_text:
            return None
        suffix = _position(last_text)
        if suffix == 0 or size == 0:
            raise InvalidRange(RangeRequested=value, ActualObjectSize=str(size))
        return max(0, size - suffix), size - 1
    first = _position(first_text)
    last = _position(last_text) if last_text else size - 1
    if last_text and last < first:
        return None
    if first >= size:
        raise InvalidRange(RangeRequested=value, ActualObjectSize=str(size))
    return first, min(last, size - 1)


def _position(digits: str) -> int:
    """A byte position; one too long to convert (Python refuses over 4300 digits) is
    larger than any object and is read as 2**63."""
    return int(digits) if len(digits) <= 19 else 2**63


def content_range(byte_range: tuple[int, int] | None, size: int) -> str:
    """The `Content-Range` value: `bytes first-last/size`, or `bytes */size` (for a
    416, when `byte_range` is None)."""
    if byte_range is None:
        return f"bytes */{size}"
    return f"bytes {byte_range[0]}-{byte_range[1]}/{size}"


# -- HTTP dates and conditional requests -----------------------------------------------------

_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}  # fmt: skip
_IMF_FIXDATE = re.compile(r"[A-Za-z]{3}, (\d{2}) ([A-Za-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT")
_RFC850 = re.compile(r"[A-Za-z]{6,9}, (\d{2})-([A-Za-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT")
_ASCTIME = re.compile(r"[A-Za-z]{3} ([A-Za-z]{3}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})")


def parse_http_date(value: str) -> int | None:
    """Unix seconds of an HTTP-date in any of RFC 9110 §5.6.7's three formats, or None
    if it is none of them (a condition with an invalid date is ignored). RFC 850's
    two-digit year is read as 1970-2069 (a fixed pivot: no clock)."""
    text = value.strip()
    if m := _IMF_FIXDATE.fullmatch(text):
        day, month, year, hh, mm, ss = m.groups()
    elif m := _RFC850.fullmatch(text):
        day, month, yy, hh, mm, ss = m.groups()
        year = str(1900 + int(yy) if int(yy) >= 70 else 2000 + int(yy))
    elif m := _ASCTIME.fullmatch(text):
        month, day, hh, mm, ss, year = m.groups()
    else:
        return None
    month_number = _MONTHS.get(month.lower())
    if month_number is None:
        return None
    try:
        moment = datetime(int(year), month_number, int(day), int(hh), int(mm), int(ss), tzinfo=UTC)
    except ValueError:
        return None
    return int(moment.timestamp())


def format_http_date(seconds: int) -> str:
    """IMF-fixdate, as in `Last-Modified`: `Thu, 26 Nov 2026 12:00:00 GMT`."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


class Condition(enum.Enum):
    PROCEED = "proceed"
    NOT_MODIFIED = "not-modified"  # 304, with the ETag and Last-Modified
    PRECONDITION_FAILED = "precondition-failed"  # 412 PreconditionFailed


def _etag_list(value: str) -> list[str] | None:
    """The entity tags of an If-Match / If-None-Match value, unquoted (None for `*`).
    Unquoted tags are accepted, as S3 accepts them; `W/` weakness is dropped (S3's
    ETags are all strong, and weak comparison is what If-None-Match uses)."""
    if value.strip() == "*":
        return None
    tags = []
    for part in value.split(","):
        tag = part.strip()
        tag = tag[2:] if tag.startswith("W/") else tag
        tags.append(tag.strip('"'))
    return [tag for tag in tags if tag]


def _matches(value: str, etag: str) -> bool:
    tags = _etag_list(value)
    return tags is None or etag.strip('"') in tags


def evaluate_read_conditions(
    headers: Mapping[str, str], etag: str, last_modified_s: int
) -> Condition:
    """GET/HEAD preconditions on an existing object (RFC 7232 §6, as S3 applies them):
    If-Match false -> 412; else If-Unmodified-Since (only without If-Match) false -> 412;
    If-None-Match matching -> 304; else If-Modified-Since (only without If-None-Match)
    not modified -> 304. Dates compare in whole seconds; invalid dates are ignored."""
    if_match = headers.get("if-match")
    if if_match is not None:
        if not _matches(if_match, etag):
            return Condition.PRECONDITION_FAILED
    else:
        since = _header_date(headers, "if-unmodified-since")
        if since is not None and last_modified_s > since:
            return Condition.PRECONDITION_FAILED
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        if _matches(if_none_match, etag):
            return Condition.NOT_MODIFIED
    else:
        since = _header_date(headers, "if-modified-since")
        if since is not None and last_modified_s <= since:
            return Condition.NOT_MODIFIED
    return Condition.PROCEED


def _header_date(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    return None if value is None else parse_http_date(value)


def evaluate_write_conditions(headers: Mapping[str, str], current_etag: str | None) -> Condition:
    """PutObject / CompleteMultipartUpload conditional writes. `current_etag` is the
    existing object's, None if there is none. `If-None-Match: *` fails (412) when the
    object exists; `If-Match: etag` fails when it differs and raises NoSuchKey (404)
    when there is no object. If-None-Match with anything but `*` is NotImplemented."""
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise S3NotImplemented("If-None-Match on a write supports only '*'.")
        if current_etag is not None:
            return Condition.PRECONDITION_FAILED
    if_match = headers.get("if-match")
    if if_match is not None:
        if current_etag is None:
            raise NoSuchKey()
        if not _matches(if_match, current_etag):
            return Condition.PRECONDITION_FAILED
    return Condition.PROCEED


# -- XML writing -------------------------------------------------------------------------------

_XML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;"}
_NEEDS_ESCAPE = re.compile(r'[&<>"\r\x00-\x08\x0b\x0c\x0e-\x1f]')


def xml_escape(text: str) -> str:
    """Text as XML character data. Control characters XML 1.0 cannot carry are written
    as `&#xN;` references, as S3 does; clients that cannot read them should ask for
    `encoding-type=url`."""
    return _NEEDS_ESCAPE.sub(lambda m: _XML_ESCAPES.get(m.group(), f"&#x{ord(m.group()):x};"), text)


def format_timestamp(ms: int) -> str:
    """S3's ISO 8601 form, millisecond precision: `2026-11-26T12:00:00.000Z`."""
    seconds, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


def quote_etag(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


Node = tuple[str, "str | int | bool | Sequence[Node] | None"]
"""An element: (name, text) or (name, children). None omits the element."""


def _write(node: Node, out: list[str]) -> None:
    name, content = node
    if content is None:
        return
    if isinstance(content, bool):
        out.append(f"<{name}>{'true' if content else 'false'}</{name}>")
    elif isinstance(content, (str, int)):
        out.append(f"<{name}>{xml_escape(str(content))}</{name}>")
    else:
        out.append(f"<{name}>")
        for child in content:
            _write(child, out)
        out.append(f"</{name}>")


def render_document(root: str, children: Sequence[Node], *, namespace: bool = True) -> bytes:
    """A complete document: declaration, then `root` (in S3's namespace unless told
    otherwise) holding `children`."""
    out = [XML_DECLARATION, f'<{root} xmlns="{S3_XMLNS}">' if namespace else f"<{root}>"]
    for child in children:
        _write(child, out)
    out.append(f"</{root}>")
    return "".join(out).encode("utf-8")


# -- documents -------------------------------------------------------------------------------


def render_error(error: S3Error, *, resource: str, request_id: str) -> bytes:
    """The error document: Code, Message, the error's details, Resource, RequestId."""
    children: list[Node] = [("Code", error.code), ("Message", error.message)]
    children += list(error.details.items())
    children += [("Resource", resource), ("RequestId", request_id)]
    return render_document("Error", children, namespace=False)


@dataclass(frozen=True)
class Owner:
    id: str
    display_name: str

    def node(self, name: str = "Owner") -> Node:
        return (name, [("ID", self.id), ("DisplayName", self.display_name)])


@dataclass(frozen=True)
class BucketEntry:
    name: str
    created_ms: int


def render_list_buckets(owner: Owner, buckets: Iterable[BucketEntry]) -> bytes:
    entries: list[Node] = [
        ("Bucket", [("Name", b.name), ("CreationDate", format_timestamp(b.created_ms))])
        for b in buckets
    ]
    return render_document("ListAllMyBucketsResult", [owner.node(), ("Buckets", entries)])


def render_empty_tagging() -> bytes:
    """GetObjectTagging of an object without tags."""
    return render_document("Tagging", [("TagSet", [])])


def render_location(region: str) -> bytes:
    """GetBucketLocation: the region as the element's text (empty for us-east-1)."""
    location = "" if region == "us-east-1" else xml_escape(region)
    return (
        f'{XML_DECLARATION}<LocationConstraint xmlns="{S3_XMLNS}">{location}</LocationConstraint>'
    ).encode()


@dataclass(frozen=True)
class ObjectEntry:
    key: str
    last_modified_ms: int
    etag: str
    size: int
    storage_class: str = "STANDARD"
    owner: Owner | None = None


@dataclass(frozen=True)
class ListPage:
    """One page of ListObjects / ListObjectsV2, as the listing produced it.
    `marker` is V1's Marker (or V2's StartAfter); `next_marker` V1's NextMarker (when a
    delimiter was given) or V2's NextContinuationToken."""

    bucket: str
    prefix: str
    delimiter: str | None
    max_keys: int
    is_truncated: bool
    contents: Sequence[ObjectEntry]
    common_prefixes: Sequence[str]
    marker: str = ""
    next_marker: str | None = None
    continuation_token: str | None = None
    encoding_type: str | None = None


def url_encode_key(text: str) -> str:
    """`encoding-type=url`: everything but RFC 3986 unreserved characters and `/` as
    UTF-8 `%XX` (botocore decodes it with `unquote_plus`, so spaces are `%20`, not
    `+`, and `+` is `%2B`)."""
    return quote(text, safe="/~")


def _enc(page_encoding: str | None, text: str | None) -> str | None:
    if text is None:
        return None
    return url_encode_key(text) if page_encoding == "url" else text


def _contents(entry: ObjectEntry, encoding: str | None, owner: bool) -> Node:
    children: list[Node] = [
        ("Key", _enc(encoding, entry.key)),
        ("LastModified", format_timestamp(entry.last_modified_ms)),
        ("ETag", quote_etag(entry.etag)),
        ("Size", entry.size),
    ]
    if owner and entry.owner is not None:
        children.append(entry.owner.node())
    children.append(("StorageClass", entry.storage_class))
    return ("Contents", children)


def _common_prefixes(page: ListPage) -> list[Node]:
    return [("CommonPrefixes", [("Prefix", _enc(page.encoding_type, p))]) for p in page.common_prefixes]  # fmt: skip


def render_list_objects(page: ListPage) -> bytes:
    """ListBucketResult, version 1."""
    e = page.encoding_type
    children: list[Node] = [
        ("Name", page.bucket),
        ("Prefix", _enc(e, page.prefix)),
        ("Marker", _enc(e, page.marker)),
        ("NextMarker", _enc(e, page.next_marker) if page.is_truncated else None),
        ("MaxKeys", page.max_keys),
        ("Delimiter", _enc(e, page.delimiter)),
        ("IsTruncated", page.is_truncated),
        ("EncodingType", e),
    ]
    children += [_contents(c, e, True) for c in page.contents]
    children += _common_prefixes(page)
    return render_document("ListBucketResult", children)


def render_list_objects_v2(page: ListPage, *, fetch_owner: bool = False) -> bytes:
    """ListBucketResult, version 2 (`marker` is StartAfter, `next_marker` the
    NextContinuationToken)."""
    e = page.encoding_type
    children: list[Node] = [
        ("Name", page.bucket),
        ("Prefix", _enc(e, page.prefix)),
        ("StartAfter", _enc(e, page.marker) if page.marker else None),
        ("ContinuationToken", page.continuation_token),
        ("NextContinuationToken", page.next_marker if page.is_truncated else None),
        ("KeyCount", len(page.contents) + len(page.common_prefixes)),
        ("MaxKeys", page.max_keys),
        ("Delimiter", _enc(e, page.delimiter)),
        ("IsTruncated", page.is_truncated),
        ("EncodingType", e),
    ]
    children += [_contents(c, e, fetch_owner) for c in page.contents]
    children += _common_prefixes(page)
    return render_document("ListBucketResult", children)


def render_list_versions(
    page: ListPage, *, next_key_marker: str | None = None, owner: Owner | None = None
) -> bytes:
    """ListVersionsResult for an unversioned bucket: every object is its only, latest
    version, VersionId `null`. `marker` is KeyMarker."""
    e = page.encoding_type
    children: list[Node] = [
        ("Name", page.bucket),
        ("Prefix", _enc(e, page.prefix)),
        ("KeyMarker", _enc(e, page.marker)),
        ("VersionIdMarker", ""),
        ("NextKeyMarker", _enc(e, next_key_marker) if page.is_truncated else None),
        ("NextVersionIdMarker", "null" if page.is_truncated and next_key_marker else None),
        ("MaxKeys", page.max_keys),
        ("Delimiter", _enc(e, page.delimiter)),
        ("IsTruncated", page.is_truncated),
        ("EncodingType", e),
    ]
    for entry in page.contents:
        version: list[Node] = [
            ("Key", _enc(e, entry.key)),
            ("VersionId", "null"),
            ("IsLatest", True),
            ("LastModified", format_timestamp(entry.last_modified_ms)),
            ("ETag", quote_etag(entry.etag)),
            ("Size", entry.size),
        ]
        version_owner = entry.owner or owner
        if version_owner is not None:
            version.append(version_owner.node())
        version.append(("StorageClass", entry.storage_class))
        children.append(("Version", version))
    children += _common_prefixes(page)
    return render_document("ListVersionsResult", children)


def render_initiate_multipart_upload(bucket: str, key: str, upload_id: str) -> bytes:
    return render_document(
        "InitiateMultipartUploadResult",
        [("Bucket", bucket), ("Key", key), ("UploadId", upload_id)],
    )


def render_complete_multipart_upload(location: str, bucket: str, key: str, etag: str) -> bytes:
    return render_document(
        "CompleteMultipartUploadResult",
        [("Location", location), ("Bucket", bucket), ("Key", key), ("ETag", quote_etag(etag))],
    )


def render_copy_result(etag: str, last_modified_ms: int, *, part: bool = False) -> bytes:
    """CopyObjectResult, or CopyPartResult for UploadPartCopy."""
    return render_document(
        "CopyPartResult" if part else "CopyObjectResult",
        [("LastModified", format_timestamp(last_modified_ms)), ("ETag", quote_etag(etag))],
    )


@dataclass(frozen=True)
class PartEntry:
    part_number: int
    last_modified_ms: int
    etag: str
    size: int


@dataclass(frozen=True)
class PartsPage:
    bucket: str
    key: str
    upload_id: str
    owner: Owner
    part_number_marker: int
    next_part_number_marker: int
    max_parts: int
    is_truncated: bool
    parts: Sequence[PartEntry]
    storage_class: str = "STANDARD"


def render_list_parts(page: PartsPage) -> bytes:
    children: list[Node] = [
        ("Bucket", page.bucket),
        ("Key", page.key),
        ("UploadId", page.upload_id),
        page.owner.node("Initiator"),
        page.owner.node(),
        ("StorageClass", page.storage_class),
        ("PartNumberMarker", page.part_number_marker),
        ("NextPartNumberMarker", page.next_part_number_marker),
        ("MaxParts", page.max_parts),
        ("IsTruncated", page.is_truncated),
    ]
    for part in page.parts:
        part_node: list[Node] = [
            ("PartNumber", part.part_number),
            ("LastModified", format_timestamp(part.last_modified_ms)),
            ("ETag", quote_etag(part.etag)),
            ("Size", part.size),
        ]
        children.append(("Part", part_node))
    return render_document("ListPartsResult", children)


@dataclass(frozen=True)
class UploadEntry:
    key: str
    upload_id: str
    initiated_ms: int
    owner: Owner
    storage_class: str = "STANDARD"


@dataclass(frozen=True)
class UploadsPage:
    bucket: str
    prefix: str
    delimiter: str | None
    key_marker: str
    upload_id_marker: str
    next_key_marker: str
    next_upload_id_marker: str
    max_uploads: int
    is_truncated: bool
    uploads: Sequence[UploadEntry]
    common_prefixes: Sequence[str]
    encoding_type: str | None = None


def render_list_multipart_uploads(page: UploadsPage) -> bytes:
    e = page.encoding_type
    children: list[Node] = [
        ("Bucket", page.bucket),
        ("KeyMarker", _enc(e, page.key_marker)),
        ("UploadIdMarker", page.upload_id_marker),
        ("NextKeyMarker", _enc(e, page.next_key_marker)),
        ("NextUploadIdMarker", page.next_upload_id_marker),
        ("Prefix", _enc(e, page.prefix)),
        ("Delimiter", _enc(e, page.delimiter)),
        ("MaxUploads", page.max_uploads),
        ("IsTruncated", page.is_truncated),
        ("EncodingType", e),
    ]
    for upload in page.uploads:
        upload_node: list[Node] = [
            ("Key", _enc(e, upload.key)),
            ("UploadId", upload.upload_id),
            upload.owner.node("Initiator"),
            upload.owner.node(),
            ("StorageClass", upload.storage_class),
            ("Initiated", format_timestamp(upload.initiated_ms)),
        ]
        children.append(("Upload", upload_node))
    children += [("CommonPrefixes", [("Prefix", _enc(e, p))]) for p in page.common_prefixes]
    return render_document("ListMultipartUploadsResult", children)


@dataclass(frozen=True)
class DeleteFailure:
    key: str
    code: str
    message: str
    version_id: str | None = None


def render_delete_result(
    deleted: Iterable[tuple[str, str | None]],
    errors: Iterable[DeleteFailure],
    *,
    quiet: bool = False,
) -> bytes:
    """DeleteResult: `deleted` (key, version id) are listed unless `quiet`; errors always."""
    children: list[Node] = []
    if not quiet:
        children += [("Deleted", [("Key", k), ("VersionId", v)]) for k, v in deleted]
    for failure in errors:
        error_node: list[Node] = [
            ("Key", failure.key),
            ("VersionId", failure.version_id),
            ("Code", failure.code),
            ("Message", failure.message),
        ]
        children.append(("Error", error_node))
    return render_document("DeleteResult", children)


# -- XML request bodies -----------------------------------------------------------------------


@dataclass
class _Element:
    name: str
    children: list[_Element] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def child_text(self, name: str) -> str | None:
        for child in self.children:
            if child.name == name:
                return "".join(child.text)
        return None


def parse_xml(body: bytes, *, bytes_max: int) -> _Element:
    """A small element tree of `body`: local names only (any namespace dropped), text
    kept. MalformedXML if larger than `bytes_max`, not well-formed, deeper than
    XML_DEPTH_MAX, or carrying a DOCTYPE (which would let it declare entities)."""
    if len(body) > bytes_max:
        raise MalformedXML()
    parser = expat.ParserCreate(namespace_separator=" ")
    stack: list[_Element] = []
    roots: list[_Element] = []

    def refuse(*_: object) -> None:
        raise MalformedXML("DOCTYPE and entity declarations are not allowed.")

    def start(name: str, _attrs: dict[str, str]) -> None:
        if len(stack) >= XML_DEPTH_MAX:
            raise MalformedXML()
        element = _Element(name.rsplit(" ", 1)[-1])
        (stack[-1].children if stack else roots).append(element)
        stack.append(element)

    def end(_name: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if stack:
            stack[-1].text.append(data)

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(body, True)
    except expat.ExpatError:
        raise MalformedXML() from None
    if len(roots) != 1:
        raise MalformedXML()
    return roots[0]


_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class CompletedPart:
    part_number: int
    etag: str  # unquoted


def parse_complete_multipart_upload(body: bytes) -> list[CompletedPart]:
    """CompleteMultipartUpload: its parts, in order. MalformedXML for anything off
    (no parts, more than PARTS_MAX, a part without a number 1..10000 or an ETag);
    InvalidPartOrder unless part numbers strictly ascend."""
    root = parse_xml(body, bytes_max=COMPLETE_BODY_BYTES_MAX)
    if root.name != "CompleteMultipartUpload":
        raise MalformedXML()
    parts: list[CompletedPart] = []
    for element in root.children:
        if element.name != "Part":
            continue
        if len(parts) >= PARTS_MAX:
            raise MalformedXML()
        number_text, etag = element.child_text("PartNumber"), element.child_text("ETag")
        if number_text is None or etag is None or not _DIGITS.fullmatch(number_text.strip()):
            raise MalformedXML()
        number_text = number_text.strip()
        number = int(number_text) if len(number_text) <= 6 else PARTS_MAX + 1
        if not 1 <= number <= PARTS_MAX:
            raise InvalidArgument("Part number must be an integer between 1 and 10000, inclusive", ArgumentName="partNumber")  # fmt: skip
        parts.append(CompletedPart(number, etag.strip().strip('"')))
    if not parts:
        raise MalformedXML()
    for previous, current in itertools.pairwise(parts):
        if current.part_number <= previous.part_number:
            raise InvalidPartOrder()
    return parts


@dataclass(frozen=True)
class DeleteRequest:
    quiet: bool
    objects: list[tuple[str, str | None]]  # (key, version id)


def parse_delete(body: bytes) -> DeleteRequest:
    """DeleteObjects' `<Delete>`: Quiet and 1..1000 objects (Key, optional VersionId).
    MalformedXML otherwise; KeyTooLong for a key over 1024 bytes."""
    root = parse_xml(body, bytes_max=DELETE_BODY_BYTES_MAX)
    if root.name != "Delete":
        raise MalformedXML()
    quiet_text = (root.child_text("Quiet") or "false").strip().lower()
    if quiet_text not in ("true", "false"):
        raise MalformedXML()
    objects: list[tuple[str, str | None]] = []
    for element in root.children:
        if element.name != "Object":
            continue
        if len(objects) >= DELETE_KEYS_MAX:
            raise MalformedXML()
        key = element.child_text("Key")
        if not key:
            raise MalformedXML()
        if len(key.encode("utf-8")) > KEY_BYTES_MAX:
            raise KeyTooLongError()
        objects.append((key, element.child_text("VersionId")))
    if not objects:
        raise MalformedXML()
    return DeleteRequest(quiet_text == "true", objects)
